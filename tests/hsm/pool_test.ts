/**
 * The session pool's own watch on the token: with no signing traffic at all, its health check
 * notices a vanished token, and reconnection brings the same pool back. (What a daemon's
 * handshakes, `/readyz`, `qtls_hsm_connected` and audit log do meanwhile is proven against
 * `qsign serve --hsm` in tests/daemon/hsm_serve_test.ts.)
 *
 * SoftHSM2 keeps its tokens as files under `directories.tokendir`; moving that directory away,
 * leaving an empty one, is what a vanished token looks like to it: C_GetTokenInfo fails and
 * only a C_Finalize/C_Initialize finds the token again once the directory is back.
 */
import { equal, ok, rejects } from "node:assert/strict";
import { ecdsaDerToRaw } from "../../src/crypto/der.ts";
import { HsmError } from "../../src/hsm/module.ts";
import { HsmStatusEvent } from "../../src/hsm/pool.ts";
import { openHsmSigner } from "../../src/hsm/signer.ts";
import { createTestToken, generateKeys, MODULE } from "./softhsm.ts";

const ECDSA_P384_SHA384 = 0x0503;

/** Polls `condition` every 20 ms for at most `ms`; fails naming `what` if it never holds. */
async function until(condition: () => boolean, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

Deno.test("without traffic, the pool's health check notices a vanished token", async () => {
  await using token = await createTestToken("pool");
  await generateKeys(token, [{ type: "ec-p384", label: "server", id: "01" }]);
  const hsm = await openHsmSigner({
    module: MODULE,
    token: token.label,
    keyLabel: "server",
    pin: "env:QSIGN_TEST_PIN",
    sessions: 2,
    reconnectDelayMs: { initial: 50, max: 400 },
    healthCheckIntervalMs: 100,
  });
  const events: HsmStatusEvent[] = [];
  hsm.pool.addEventListener("change", (e) => events.push(e as HsmStatusEvent));
  const publicKey = await crypto.subtle.importKey(
    "spki",
    new Uint8Array(await hsm.signer.publicKeySpki()),
    { name: "ECDSA", namedCurve: "P-384" },
    false,
    ["verify"],
  );
  const signAndVerify = async (text: string) => {
    const message = new TextEncoder().encode(text);
    const signature = await hsm.signer.sign(ECDSA_P384_SHA384, message);
    return await crypto.subtle.verify(
      { name: "ECDSA", hash: "SHA-384" },
      publicKey,
      new Uint8Array(ecdsaDerToRaw(signature, 48)),
      message,
    );
  };
  const away = `${token.dir}/tokens-away`;
  try {
    ok(await signAndVerify("before"));
    await Deno.rename(token.tokenDir, away);
    await Deno.mkdir(token.tokenDir);
    await until(() => !hsm.pool.connected, "the health check to notice");
    equal(events[0].connected, false);
    ok(events[0].error instanceof HsmError && events[0].error.code?.startsWith("CKR_"));
    await rejects(signAndVerify("while away"), /the HSM is disconnected, reconnecting/);
    // Reconnection attempts reinitialise the module and find no such token in the empty dir.
    await until(
      () => hsm.pool.status().error?.includes('no initialised token "pool"') ?? false,
      "a failed reconnection attempt",
    );

    await Deno.remove(token.tokenDir, { recursive: true });
    await Deno.rename(away, token.tokenDir);
    await until(() => hsm.pool.connected, "reconnection");
    equal(events.at(-1)?.connected, true);
    ok(await signAndVerify("after"));
  } finally {
    await hsm.close();
  }
});
