/**
 * The production flow at the TLS level, on SoftHSM2: key pairs generated in the token, CSRs
 * signed in the token, certificates from the embedded ML-DSA CA, then mutual TLS 1.3 whose
 * CertificateVerify is signed inside the token — against OpenSSL 3.5 (Node 26) both ways,
 * under 32 concurrent handshakes through a pool of 4 sessions, and as the ECDSA half of a
 * composite ML-DSA-65 + ECDSA-P384 key, qsign to qsign.
 */
import "reflect-metadata";
import { deepEqual, equal, ok } from "node:assert/strict";
import { ml_dsa65 } from "@noble/post-quantum/ml-dsa.js";
import {
  COMPOSITE_MLDSA65_ECDSA_P384_OID,
  compositePublicKeySpki,
  compositeSign,
  mldsa65SeedSigner,
} from "../../src/crypto/composite.ts";
import { createTokenCsr, parseSans, parseSubject } from "../../src/hsm/csr.ts";
import { openHsmSigner, type OpenHsmSignerOptions } from "../../src/hsm/signer.ts";
import { issueLeaf } from "../../src/pki/ca.ts";
import { createCertificateRequest } from "../../src/pki/certificate.ts";
import { CompositeSigner } from "../../src/tls/signers.ts";
import { tempDir } from "../support/env.ts";
import { Peer } from "../tls/support/peer.ts";
import { makePki } from "../tls/support/pki.ts";
import { EchoServer, qsignEcho } from "../tls/support/qsign.ts";
import { createTestToken, generateKeys, MODULE } from "./softhsm.ts";

const P384_POINT_LENGTH = 97;

Deno.test("TLS 1.3 with keys that never leave SoftHSM2", async (t) => {
  await using dir = await tempDir();
  await using token = await createTestToken("tls");
  await generateKeys(token, [
    { type: "ec-p384", label: "server", id: "01" },
    { type: "ec-p384", label: "client", id: "02" },
  ]);
  const pki = await makePki(dir.path, "mldsa65");
  const hsmOptions: OpenHsmSignerOptions = {
    module: MODULE,
    token: token.label,
    pin: "env:QSIGN_TEST_PIN",
    sessions: 4,
    healthCheckIntervalMs: 0,
  };
  const server = await openHsmSigner({ ...hsmOptions, keyLabel: "server" });
  const client = await openHsmSigner({ ...hsmOptions, keyLabel: "client" });
  await using peer = new Peer();
  const payload = crypto.getRandomValues(new Uint8Array(3000));

  try {
    // The production flow: CSR signed in the token, certificate from the embedded CA.
    const certify = async (
      hsm: typeof server,
      profile: "server" | "client",
      cn: string,
    ) => {
      const csr = await createTokenCsr(hsm.signer, {
        subject: parseSubject(`/C=KR/O=QSIGN/CN=${cn}`),
        sans: parseSans([cn]),
      });
      const issued = await issueLeaf({
        dir: pki.dir,
        profile,
        cn,
        csrDer: new Uint8Array(csr.rawData),
      });
      return { chain: issued.chain, signer: hsm.signer };
    };
    const serverKey = await certify(server, "server", "localhost");
    const clientKey = await certify(client, "client", "hsm-client.qsign.local");

    await t.step("OpenSSL 3.5 client ↔ qsign server whose key is in the token", async () => {
      await using echo = new EchoServer({
        certificates: [serverKey],
        clientAuth: "require",
        trustAnchors: [pki.rootDer],
      });
      const result = await peer.connect(echo.port, {
        ca: pki.rootPem,
        cert: pki.clientCertPem,
        key: pki.clientKeyPem,
        groups: ["SecP384r1MLKEM1024"],
        servername: "localhost",
      }, { sendBytes: 3000 });
      equal(result.ok, true, JSON.stringify(result));
      equal(result.echoed, true);
      const [outcome] = await echo.waitFor(1);
      ok("info" in outcome, String("error" in outcome && outcome.error));
      equal(outcome.info.signatureScheme, "ecdsa_secp384r1_sha384");
      equal(outcome.info.peerSignatureScheme, "mldsa65");
      equal(outcome.info.group, "SecP384r1MLKEM1024");
    });

    await t.step("qsign client with its key in the token ↔ OpenSSL 3.5 server", async () => {
      const { server: peerServer, port } = await peer.listen({
        ca: pki.rootPem,
        cert: pki.serverCertPem,
        key: pki.serverKeyPem,
        requestCert: true,
      });
      const { info, echo } = await qsignEcho(port, {
        serverName: "localhost",
        trustAnchors: [pki.rootDer],
        certificate: clientKey,
      }, payload);
      deepEqual(echo, payload);
      equal(info.signatureScheme, "ecdsa_secp384r1_sha384");
      const events = await peer.events(peerServer);
      equal(events[0]?.event, "secure", JSON.stringify(events));
      equal(events[0].peerSubject, "hsm-client.qsign.local");
      await peer.closeServer(peerServer);
    });

    await t.step("32 simultaneous handshakes through a pool of 4 sessions", async () => {
      await using echo = new EchoServer({
        certificates: [serverKey],
        clientAuth: "require",
        trustAnchors: [pki.rootDer],
      });
      const results = await Promise.all(
        Array.from({ length: 32 }, () =>
          qsignEcho(echo.port, {
            serverName: "localhost",
            trustAnchors: [pki.rootDer],
            certificate: pki.client,
          }, payload)),
      );
      equal(results.filter((r) => r.echo.length === payload.length).length, 32);
      const outcomes = await echo.waitFor(32);
      equal(outcomes.filter((o) => "info" in o).length, 32);
      equal(server.pool.status().size, 4);
    });

    await t.step("composite ML-DSA-65 + ECDSA-P384 with the ECDSA half in the token", async () => {
      const seed = crypto.getRandomValues(new Uint8Array(32));
      const mldsaPublic = ml_dsa65.keygen(seed).publicKey;
      const tokenSpki = await server.signer.publicKeySpki();
      const ecPoint = tokenSpki.subarray(tokenSpki.length - P384_POINT_LENGTH);
      const mldsaHalf = mldsa65SeedSigner(seed);
      const csr = await createCertificateRequest({
        subject: "CN=localhost, O=QSIGN",
        signer: {
          algorithm: { name: COMPOSITE_MLDSA65_ECDSA_P384_OID },
          spki: compositePublicKeySpki(mldsaPublic, ecPoint),
          sign: (tbs) => compositeSign(mldsaHalf, (m) => server.signer.sign(0x0503, m), tbs),
        },
      });
      const issued = await issueLeaf({
        dir: pki.dir,
        profile: "server",
        cn: "localhost",
        csrDer: new Uint8Array(csr.rawData),
      });
      const signer = new CompositeSigner(
        mldsaHalf,
        server.signer,
        `composite: ML-DSA-65 in memory, ECDSA-P384 ${server.signer.description}`,
      );
      await using echo = new EchoServer({
        certificates: [{ chain: issued.chain, signer }],
        clientAuth: "require",
        trustAnchors: [pki.rootDer],
      });
      const { info, echo: echoed } = await qsignEcho(echo.port, {
        serverName: "localhost",
        trustAnchors: [pki.rootDer],
        certificate: pki.client,
      }, payload);
      deepEqual(echoed, payload);
      equal(info.peerSignatureScheme, "mldsa65_ecdsa_secp384r1_sha384");
    });
  } finally {
    await server.close();
    await client.close();
  }
});
