/**
 * The default Q-TLS handshake against OpenSSL 3.5 (Node 26) in both directions, with mutual
 * authentication: SecP384r1MLKEM1024, ML-DSA-65, TLS_AES_256_GCM_SHA384. Plus qsign↔qsign.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { tempDir } from "../support/env.ts";
import { Peer } from "./support/peer.ts";
import { makePki, mutualTlsClient, mutualTlsServer } from "./support/pki.ts";
import { EchoServer, qsignEcho } from "./support/qsign.ts";

Deno.test("default Q-TLS handshake interoperates with OpenSSL 3.5 both ways", async (t) => {
  await using dir = await tempDir();
  const pki = await makePki(dir.path, "mldsa65");
  await using peer = new Peer();
  const payload = crypto.getRandomValues(new Uint8Array(5000));

  await t.step("OpenSSL client → qsign server", async () => {
    await using server = new EchoServer(mutualTlsServer(pki));
    const result = await peer.connect(server.port, {
      ca: pki.rootPem,
      cert: pki.clientCertPem,
      key: pki.clientKeyPem,
      groups: ["SecP384r1MLKEM1024"],
      servername: "localhost",
    }, { sendBytes: 5000 });
    equal(result.ok, true, JSON.stringify(result));
    equal(result.echoed, true);
    equal(result.protocol, "TLSv1.3");
    equal(result.cipher, "TLS_AES_256_GCM_SHA384");
    const [outcome] = await server.waitFor(1);
    ok("info" in outcome, String("error" in outcome && outcome.error));
    equal(outcome.info.group, "SecP384r1MLKEM1024");
    equal(outcome.info.cipherSuite, "TLS_AES_256_GCM_SHA384");
    equal(outcome.info.signatureScheme, "mldsa65");
    equal(outcome.info.peerSignatureScheme, "mldsa65");
    equal(outcome.info.peerLeaf?.subjectField("CN")[0], "qtls-client.qsign.local");
    equal(outcome.info.serverName, "localhost");
  });

  await t.step("qsign client → OpenSSL server", async () => {
    const { server, port } = await peer.listen({
      ca: pki.rootPem,
      cert: pki.serverCertPem,
      key: pki.serverKeyPem,
      groups: ["SecP384r1MLKEM1024"],
      requestCert: true,
    });
    const { info, echo } = await qsignEcho(port, mutualTlsClient(pki), payload);
    deepEqual(echo, payload);
    equal(info.group, "SecP384r1MLKEM1024");
    equal(info.cipherSuite, "TLS_AES_256_GCM_SHA384");
    equal(info.peerSignatureScheme, "mldsa65");
    equal(info.signatureScheme, "mldsa65");
    const events = await peer.events(server);
    equal(events[0]?.event, "secure", JSON.stringify(events));
    equal(events[0].peerSubject, "qtls-client.qsign.local");
    await peer.closeServer(server);
  });

  await t.step("qsign client → qsign server", async () => {
    await using server = new EchoServer(mutualTlsServer(pki));
    const { info, echo } = await qsignEcho(server.port, mutualTlsClient(pki), payload);
    deepEqual(echo, payload);
    equal(info.group, "SecP384r1MLKEM1024");
    const [outcome] = await server.waitFor(1);
    ok("info" in outcome);
    equal(outcome.info.peerSignatureScheme, "mldsa65");
  });
});

Deno.test("composite ML-DSA-65 + ECDSA-P384 between qsign peers; requirePqAuth", async (t) => {
  await using dir = await tempDir();
  const [composite, ecdsa] = await Promise.all([
    makePki(`${dir.path}/composite`, "mldsa65-ecdsa-p384"),
    makePki(`${dir.path}/ecdsa`, "ecdsa-p384"),
  ]);
  const payload = new TextEncoder().encode("Hello, Q-TLS!");

  await t.step("composite certificates and CertificateVerify both ways", async () => {
    await using server = new EchoServer({
      ...mutualTlsServer(composite),
      requirePqAuth: true,
    });
    const { info, echo } = await qsignEcho(server.port, {
      ...mutualTlsClient(composite),
      requirePqAuth: true,
    }, payload);
    deepEqual(echo, payload);
    equal(info.peerSignatureScheme, "mldsa65_ecdsa_secp384r1_sha384");
    equal(info.signatureScheme, "mldsa65_ecdsa_secp384r1_sha384");
  });

  await t.step("requirePqAuth refuses a classical client chain", async () => {
    await using server = new EchoServer({
      certificates: [composite.server],
      clientAuth: "require",
      trustAnchors: [composite.rootDer, ecdsa.rootDer],
      requirePqAuth: true,
    });
    await qsignEcho(server.port, {
      serverName: "localhost",
      trustAnchors: [composite.rootDer],
      certificate: ecdsa.client,
    }, payload).catch(() => {});
    const [outcome] = await server.waitFor(1);
    ok("error" in outcome);
    // The classical client cannot sign with any scheme offered, so it sends no certificate.
    equal(outcome.error.alert, "certificate_required");
  });

  await t.step("requirePqAuth refuses a classical server", async () => {
    await using server = new EchoServer({
      certificates: [ecdsa.server],
      clientAuth: "none",
      trustAnchors: [ecdsa.rootDer],
    });
    const error = await qsignEcho(server.port, {
      serverName: "localhost",
      trustAnchors: [ecdsa.rootDer],
      requirePqAuth: true,
    }, payload).then(() => undefined, (e) => e);
    equal(error?.alert, "handshake_failure");
    equal(error?.sent, false);
  });
});
