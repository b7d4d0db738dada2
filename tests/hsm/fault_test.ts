/**
 * The token disappears while the signer is in use and comes back. SoftHSM2 keeps its tokens as
 * files under `directories.tokendir`; moving that directory away (leaving an empty one) is what
 * a vanished token looks like to it: the key handle turns invalid (CKR_OBJECT_HANDLE_INVALID),
 * C_GetTokenInfo fails (CKR_GENERAL_ERROR), and only a C_Finalize/C_Initialize finds the token
 * again once the directory is back — the same recovery Luna needs after losing its HSM.
 */
import { equal, ok, rejects } from "node:assert/strict";
import { ecdsaDerToRaw } from "../../src/crypto/der.ts";
import { reportHsmHealth } from "../../src/hsm/health.ts";
import { HsmError } from "../../src/hsm/module.ts";
import { HsmStatusEvent } from "../../src/hsm/pool.ts";
import { openHsmSigner } from "../../src/hsm/signer.ts";
import { metrics } from "../../src/observe/metrics.ts";
import { setLogSink } from "../../src/observe/log.ts";
import { checkReadiness } from "../../src/observe/readiness.ts";
import { createTestToken, generateKeys, MODULE, PIN } from "./softhsm.ts";

const ECDSA_P384_SHA384 = 0x0503;

/** Polls `condition` every 20 ms for at most `ms`; fails naming `what` if it never holds. */
async function until(condition: () => boolean, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** `qtls_hsm_connected` as Prometheus scrapes it from the exposition. */
async function gaugeValue(): Promise<number> {
  const { body } = await metrics.exposition();
  return Number(/^qtls_hsm_connected (\S+)$/m.exec(body)![1]);
}

Deno.test("the HSM pool reports a vanished token and reconnects by itself", async (t) => {
  await using token = await createTestToken("fault");
  await generateKeys(token, [{ type: "ec-p384", label: "server", id: "01" }]);
  const away = `${token.dir}/tokens-away`;
  const vanish = async () => {
    await Deno.rename(token.tokenDir, away);
    await Deno.mkdir(token.tokenDir);
  };
  const restore = async () => {
    await Deno.remove(token.tokenDir, { recursive: true });
    await Deno.rename(away, token.tokenDir);
  };

  const hsm = await openHsmSigner({
    module: MODULE,
    token: token.label,
    keyLabel: "server",
    pin: "env:QSIGN_TEST_PIN",
    sessions: 4,
    reconnectDelayMs: { initial: 50, max: 400 },
    healthCheckIntervalMs: 100,
  });
  const auditLines: string[] = [];
  const previousSink = setLogSink((line) => auditLines.push(line));
  const unreport = reportHsmHealth(hsm.pool);
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

  try {
    await t.step("signs while the token is there; ready and gauge at 1", async () => {
      ok(await signAndVerify("before"));
      ok((await checkReadiness()).ok);
      equal(await gaugeValue(), 1);
    });

    await t.step(
      "token gone: signs fail with HsmError, connected drops, readiness says why",
      async () => {
        await vanish();
        const inFlight = Array.from({ length: 8 }, (_, i) => signAndVerify(`during ${i}`));
        const results = await Promise.allSettled(inFlight);
        ok(results.every((r) => r.status === "rejected" && r.reason instanceof HsmError));
        equal(hsm.pool.connected, false);
        equal(events[0]?.connected, false);
        ok(events[0].error instanceof HsmError);

        await rejects(signAndVerify("while disconnected"), (e: unknown) => {
          ok(e instanceof HsmError);
          ok(e.message.includes("the HSM is disconnected, reconnecting"), e.message);
          return true;
        });
        const readiness = await checkReadiness();
        equal(readiness.ok, false);
        ok(
          readiness.failures.some((f) => f.startsWith('hsm: token "fault"')),
          readiness.failures.join(),
        );
        equal(await gaugeValue(), 0);
        // Reconnection attempts reinitialise the module and find no such token in the empty dir.
        await until(
          () => hsm.pool.status().error?.includes('no initialised token "fault"') ?? false,
          "a failed reconnection attempt",
        );
      },
    );

    await t.step("token back: the same pool reconnects and signs again", async () => {
      await restore();
      await until(() => hsm.pool.connected, "reconnection");
      equal(events.at(-1)?.connected, true);
      ok(await signAndVerify("after"));
      ok((await checkReadiness()).ok);
      equal(await gaugeValue(), 1);
      const audited = auditLines.map((line) => JSON.parse(line));
      equal(audited[0].event, "hsm_disconnected");
      ok(audited[0].error.includes("CKR_"), audited[0].error);
      equal(audited.at(-1).event, "hsm_connected");
      ok(!auditLines.join().includes(PIN), "the PIN never reaches the audit log");
    });

    await t.step("without traffic, the health check notices the loss and the return", async () => {
      const before = events.length;
      await vanish();
      await until(() => !hsm.pool.connected, "the health check to notice");
      equal(events[before].connected, false);
      await restore();
      await until(() => hsm.pool.connected, "reconnection");
      ok(await signAndVerify("after the second outage"));
    });
  } finally {
    setLogSink(previousSink);
    unreport();
    await hsm.close();
  }
});
