/**
 * The interoperability matrix against OpenSSL 3.5 (Node 26), mutual authentication, both
 * directions: every group × signature scheme {mldsa44, mldsa65, mldsa87, ecdsa_secp384r1_sha384,
 * rsa_pss_rsae_sha256, ed25519, rsa_pss_pss_sha256, rsa_pss_pss_sha384} (chains from the
 * project's own CA; rsa_pss_pss_* with id-RSASSA-PSS keys) × the three cipher suites.
 * One peer process serves every case; each direction gets one server per scheme. The whole matrix
 * runs once per crypto provider (libcrypto, native WebCrypto, noble), chosen as QSIGN_CRYPTO does.
 */
import { deepEqual } from "node:assert/strict";
import type { KeyAlgorithm } from "../../src/pki/keys.ts";
import { CIPHER_SUITES } from "../../src/tls/cipher_suites.ts";
import { GROUPS } from "../../src/tls/groups.ts";
import { tempDir, withCryptoSelection } from "../support/env.ts";
import { Peer } from "./support/peer.ts";
import { makePki, mutualTlsClient, mutualTlsServer, type TestPki } from "./support/pki.ts";
import { EchoServer, qsignEcho } from "./support/qsign.ts";

const SCHEMES: [KeyAlgorithm, string][] = [
  ["mldsa44", "mldsa44"],
  ["mldsa65", "mldsa65"],
  ["mldsa87", "mldsa87"],
  ["ecdsa-p384", "ecdsa_secp384r1_sha384"],
  ["rsa-3072", "rsa_pss_rsae_sha256"],
  ["ed25519", "ed25519"],
  ["rsa-pss-3072", "rsa_pss_pss_sha256"],
  ["rsa-pss-3072", "rsa_pss_pss_sha384"],
];
const GROUP_NAMES = GROUPS.map((g) => g.name);
const SUITE_NAMES = CIPHER_SUITES.map((s) => s.name);

/** What one case negotiated, in a form where a mismatch reads clearly in the failure. */
function expectation(group: string, suite: string, scheme: string) {
  return `${group} ${suite} ${scheme} echo`;
}

for (const provider of ["libcrypto", "native", "noble"]) {
  Deno.test(
    `interop matrix (${provider}): groups × signature schemes × suites, both directions`,
    (t) => withCryptoSelection(provider, () => matrix(t)),
  );
}

async function matrix(t: Deno.TestContext): Promise<void> {
  await using dir = await tempDir();
  const algs = [...new Set(SCHEMES.map(([alg]) => alg))];
  const made = new Map(
    await Promise.all(
      algs.map(async (alg) => [alg, await makePki(`${dir.path}/${alg}`, alg)] as const),
    ),
  );
  const pkis: [TestPki, string][] = SCHEMES.map(([alg, scheme]) => [made.get(alg)!, scheme]);
  await using peer = new Peer();
  const payload = crypto.getRandomValues(new Uint8Array(2048));

  for (const [pki, scheme] of pkis) {
    await t.step(`qsign client → OpenSSL server, ${scheme}`, async () => {
      const { server, port } = await peer.listen({
        ca: pki.rootPem,
        cert: pki.serverCertPem,
        key: pki.serverKeyPem,
        groups: GROUP_NAMES,
        sigalgs: [scheme],
        requestCert: true,
      });
      const expected: string[] = [];
      const got: string[] = [];
      for (const group of GROUP_NAMES) {
        for (const suite of SUITE_NAMES) {
          expected.push(expectation(group, suite, scheme));
          try {
            const { info, echo } = await qsignEcho(port, {
              ...mutualTlsClient(pki),
              groups: [group],
              allowClassical: true,
              cipherSuites: [suite],
            }, payload);
            const same = echo.length === payload.length && echo.every((b, i) => b === payload[i]);
            got.push(
              `${info.group} ${info.cipherSuite} ${info.peerSignatureScheme}${same ? " echo" : ""}`,
            );
          } catch (e) {
            got.push(`${group} ${suite} failed: ${(e as Error).message}`);
          }
        }
      }
      const events = await peer.events(server);
      await peer.closeServer(server);
      deepEqual(got, expected);
      deepEqual(
        events.map((e) => `${e.event} ${e.peerSubject}`),
        expected.map(() => "secure qtls-client.qsign.local"),
      );
    });

    await t.step(`OpenSSL client → qsign server, ${scheme}`, async () => {
      await using server = new EchoServer({
        ...mutualTlsServer(pki),
        groups: GROUP_NAMES,
        allowClassical: true,
      });
      const expected: string[] = [];
      const got: string[] = [];
      for (const group of GROUP_NAMES) {
        for (const suite of SUITE_NAMES) {
          expected.push(expectation(group, suite, scheme));
          const r = await peer.connect(server.port, {
            ca: pki.rootPem,
            cert: pki.clientCertPem,
            key: pki.clientKeyPem,
            groups: [group],
            ciphersuites: suite,
            sigalgs: [scheme],
            servername: "localhost",
          }, { sendBytes: 2048 });
          const outcome = (await server.waitFor(got.length + 1))[got.length];
          if (!r.ok || !("info" in outcome)) {
            got.push(
              `${group} ${suite} failed: ${r.code} / ${"error" in outcome && outcome.error}`,
            );
            continue;
          }
          const { info } = outcome;
          got.push(
            `${info.group} ${r.cipher} ${info.peerSignatureScheme}${r.echoed ? " echo" : ""}`,
          );
        }
      }
      deepEqual(got, expected);
    });
  }
}
