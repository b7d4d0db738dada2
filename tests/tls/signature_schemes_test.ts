/**
 * TlsClientConfig.signatureSchemes: the client's signature_algorithms, and through them the
 * scheme the server signs with, against qsign (a server holding ML-DSA-65 and ECDSA P-384
 * chains) and OpenSSL 3.5; bad names are configuration errors before anything is sent.
 */
import { deepEqual, equal, ok, rejects, throws } from "node:assert/strict";
import { ConfigError } from "../../src/errors.ts";
import { TlsHandshakeError } from "../../src/tls/alert.ts";
import { connectTls } from "../../src/tls/conn.ts";
import type { TlsClientConfig } from "../../src/tls/config.ts";
import { offeredSchemes, resolveSchemes, schemeName } from "../../src/tls/sigschemes.ts";
import { tempDir } from "../support/env.ts";
import { Peer } from "./support/peer.ts";
import { makePki } from "./support/pki.ts";
import { EchoServer, qsignEcho } from "./support/qsign.ts";

Deno.test("resolveSchemes: the names in their order; unknown, certificate-only, classical-under-PQ refused", () => {
  deepEqual(resolveSchemes(undefined, false), offeredSchemes(false));
  deepEqual(resolveSchemes([], true), offeredSchemes(true));
  deepEqual(
    resolveSchemes(["ecdsa_secp384r1_sha384", "MLDSA65", "ecdsa_secp384r1_sha384"], false)
      .map(schemeName),
    ["ecdsa_secp384r1_sha384", "mldsa65"],
  );
  throws(() => resolveSchemes(["mldsa66"], false), /unknown signature scheme mldsa66/);
  throws(() => resolveSchemes(["rsa_pkcs1_sha256"], false), /signs certificates only/);
  throws(() => resolveSchemes(["mldsa65", "ed25519"], true), /ed25519 is classical/);
});

Deno.test("signatureSchemes decide what the server signs with", async (t) => {
  await using dir = await tempDir();
  const [pki, ecdsa] = await Promise.all([
    makePki(`${dir.path}/mldsa`, "mldsa65"),
    makePki(`${dir.path}/ecdsa`, "ecdsa-p384"),
  ]);
  const trustAnchors = [pki.rootDer, ecdsa.rootDer];
  await using server = new EchoServer({
    certificates: [pki.server, ecdsa.server],
    clientAuth: "require",
    trustAnchors,
  });
  const client = (signatureSchemes?: string[], extra: Partial<TlsClientConfig> = {}) => ({
    serverName: "localhost",
    trustAnchors,
    certificate: pki.client,
    signatureSchemes,
    ...extra,
  });
  const hello = new TextEncoder().encode("Hello, Q-TLS!");

  await t.step(
    "qsign server: the first offered scheme it can make, in the client's order",
    async () => {
      const cases: [string[] | undefined, string][] = [
        [undefined, "mldsa65"],
        [["ecdsa_secp384r1_sha384"], "ecdsa_secp384r1_sha384"],
        [["ecdsa_secp384r1_sha384", "mldsa65"], "ecdsa_secp384r1_sha384"],
        [["mldsa87", "mldsa65", "ecdsa_secp384r1_sha384"], "mldsa65"],
      ];
      for (const [schemes, expected] of cases) {
        const before = server.outcomes.length;
        const { info, echo } = await qsignEcho(server.port, client(schemes), hello);
        deepEqual(echo, hello);
        equal(info.peerSignatureScheme, expected, JSON.stringify(schemes));
        const [outcome] = (await server.waitFor(before + 1)).slice(before);
        ok("info" in outcome);
        deepEqual(
          outcome.info.clientOffer?.signatureSchemes,
          schemes ?? offeredSchemes(false).map(schemeName),
        );
      }
    },
  );

  await t.step("OpenSSL server with only an ML-DSA chain refuses an ECDSA-only offer", async () => {
    await using peer = new Peer();
    const node = await peer.listen({
      ca: pki.rootPem,
      cert: pki.serverCertPem,
      key: pki.serverKeyPem,
      requestCert: true,
    });
    const { info } = await qsignEcho(node.port, client(["mldsa44", "mldsa65"]), hello);
    equal(info.peerSignatureScheme, "mldsa65");
    const error = await qsignEcho(node.port, client(["ecdsa_secp384r1_sha384"]), hello)
      .then(() => undefined, (e) => e);
    ok(error instanceof TlsHandshakeError, String(error));
    equal(error.alert, "handshake_failure");
    equal(error.sent, false, "OpenSSL sent it");
    await peer.closeServer(node.server);
  });

  await t.step("unusable names are a ConfigError before any byte is sent", async () => {
    const before = server.outcomes.length;
    for (
      const [schemes, extra] of [
        [["rsa_pkcs1_sha256"], {}],
        [["nonsense"], {}],
        [["ecdsa_secp384r1_sha384"], { requirePqAuth: true }],
      ] as [string[], Partial<TlsClientConfig>][]
    ) {
      const tcp = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
      await rejects(connectTls(tcp, client(schemes, extra)), (e: unknown) => {
        ok(e instanceof ConfigError);
        equal(e.field, "signatureSchemes");
        return true;
      });
    }
    // Each connection the server accepted ended without a ClientHello.
    const outcomes = (await server.waitFor(before + 3)).slice(before);
    deepEqual(
      outcomes.map((o) => "error" in o && o.error.alert),
      ["connection_closed", "connection_closed", "connection_closed"],
    );
  });
});
