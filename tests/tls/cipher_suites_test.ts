/**
 * Cipher-suite preference: the default puts first the AEAD this build computes fastest (AES-GCM
 * through libcrypto, ChaCha20-Poly1305 with the WebCrypto and JavaScript providers), and
 * `cipher_suites` / `--cipher-suites` set the order, against OpenSSL 3.5 clients and servers.
 */
import { equal, match } from "node:assert/strict";
import { defaultSuiteOrder } from "../../src/tls/cipher_suites.ts";
import { runQsign, tempDir, withCryptoSelection } from "../support/env.ts";
import {
  clientArgs,
  Daemon,
  makePki,
  PEER_ECHO_CLIENT,
  runPeer,
  serveArgs,
} from "../daemon/support.ts";

Deno.test("the default order leads with the AEAD the provider computes fastest", async () => {
  const names = async (provider: string) => {
    let order: string[] = [];
    await withCryptoSelection(provider, () => {
      order = defaultSuiteOrder().map((s) => s.name);
    });
    return order;
  };
  equal((await names("libcrypto"))[0], "TLS_AES_256_GCM_SHA384");
  equal((await names("native"))[0], "TLS_CHACHA20_POLY1305_SHA256");
  equal((await names("noble"))[0], "TLS_CHACHA20_POLY1305_SHA256");
  for (const provider of ["libcrypto", "native", "noble"]) {
    equal((await names(provider)).length, 3);
  }
});

Deno.test("qsign serve picks its own preference from what an OpenSSL 3.5 client offers", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  for (
    const [extra, env, expected] of [
      [[], { QSIGN_CRYPTO: "libcrypto" }, "TLS_AES_256_GCM_SHA384"],
      [[], { QSIGN_CRYPTO: "native" }, "TLS_CHACHA20_POLY1305_SHA256"],
      [["--cipher-suites", "TLS_AES_128_GCM_SHA256"], {}, "TLS_AES_128_GCM_SHA256"],
    ] as const
  ) {
    await using daemon = await Daemon.start(serveArgs(pki, [...extra]), { env });
    const result = await runPeer(PEER_ECHO_CLIENT, [
      String(daemon.port()),
      pki.root,
      pki.clientCert,
      pki.clientKey,
      "which suite?",
    ]) as { cipher: string };
    equal(result.cipher, expected, `${JSON.stringify(env)} ${extra.join(" ")}`);
    const handshake = await daemon.waitFor((e) => e.event === "handshake_ok");
    equal(handshake.cipher, expected);
  }
});

Deno.test("qsign connect --cipher-suites offers only those, and a wrong name is a usage error", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  await using daemon = await Daemon.start(serveArgs(pki));
  const connected = await runQsign([
    "connect",
    `127.0.0.1:${daemon.port()}`,
    ...clientArgs(pki),
    ...["--cipher-suites", "TLS_CHACHA20_POLY1305_SHA256", "--send", "hi"],
  ]);
  equal(connected.code, 0, connected.stderr);
  const handshake = await daemon.waitFor((e) => e.event === "handshake_ok");
  equal(handshake.cipher, "TLS_CHACHA20_POLY1305_SHA256");

  const wrong = await runQsign([
    "connect",
    `127.0.0.1:${daemon.port()}`,
    ...clientArgs(pki),
    ...["--cipher-suites", "TLS_AES_256_CCM_SHA384", "--send", "hi"],
  ]);
  equal(wrong.code, 2);
  match(wrong.stderr, /--cipher-suites: unknown cipher suite TLS_AES_256_CCM_SHA384/);
  const serve = await runQsign([
    "serve",
    ...serveArgs(pki, ["--cipher-suites", "TLS_NULL", "--check-config"]),
  ]);
  equal(serve.code, 2);
  match(serve.stderr, /cipher_suites|--cipher-suites/);
});
