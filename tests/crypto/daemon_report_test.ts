/**
 * The running daemon says which provider serves which primitive: a banner line on stderr and a
 * `crypto` object in /status, for the default (auto: libcrypto here) and an explicit choice.
 */
import { deepEqual, equal, match } from "node:assert/strict";
import { describeCryptoProvider, nativeProvider } from "../../src/crypto/index.ts";
import { tempDir } from "../support/env.ts";
import {
  Daemon,
  httpGet,
  makePki,
  sampleValue,
  scrapeMetrics,
  serveArgs,
} from "../daemon/support.ts";
import { libcrypto } from "./providers.ts";

for (
  const [selection, provider] of [["auto", libcrypto], ["native", nativeProvider]] as const
) {
  Deno.test(`qsign serve with QSIGN_CRYPTO=${selection} reports the ${provider.name} provider`, async () => {
    await using dir = await tempDir();
    const pki = await makePki(`${dir.path}/pki`);
    await using daemon = await Daemon.start(serveArgs(pki), { env: { QSIGN_CRYPTO: selection } });
    const status = JSON.parse(
      (await httpGet(`http://127.0.0.1:${daemon.metricsPort}/status`)).body,
    );
    equal(status.crypto.provider, provider.name);
    deepEqual(status.crypto.primitives, describeCryptoProvider(provider).primitives);
    match(daemon.stderr, new RegExp(`^  crypto: ${provider.name}\\b`, "m"));
    const samples = await scrapeMetrics(daemon);
    for (
      const [primitive, backend] of Object.entries(describeCryptoProvider(provider).primitives)
    ) {
      equal(sampleValue(samples, "qtls_crypto_backend_info", { primitive, backend }), 1);
    }
  });
}
