/**
 * Refusals against OpenSSL 3.5 (Node 26), both directions: each failure ends the handshake with
 * the alert OpenSSL sends in the same situation, and OpenSSL reports the alert qsign sent.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { TlsError, TlsHandshakeError } from "../../src/tls/alert.ts";
import type { CertifiedKey, TlsServerConfig } from "../../src/tls/config.ts";
import { tempDir } from "../support/env.ts";
import { Peer, type PeerTlsOptions } from "./support/peer.ts";
import { issueTestLeaf, makePki, revokeAndCrl, type TestPki } from "./support/pki.ts";
import { EchoServer, qsignEcho } from "./support/qsign.ts";

const HOUR = 3600 * 1000;

/** Fixtures: the PKI every case uses, a second one nobody trusts, and the odd leaves. */
async function fixtures(dir: string) {
  const [pki, stranger] = await Promise.all([
    makePki(`${dir}/pki`, "mldsa65"),
    makePki(`${dir}/stranger`, "mldsa65"),
  ]);
  const expired = await issueTestLeaf(pki, "client", {
    now: new Date(Date.now() - 48 * HOUR),
    ttlSeconds: 3600,
  });
  const revoked = await issueTestLeaf(pki, "client");
  const crl = await revokeAndCrl(pki, revoked.serial);
  const serverPurpose = await issueTestLeaf(pki, "server", { cn: "not-a-client.qsign.local" });
  return { pki, stranger, expired, revoked, crl, serverPurpose };
}

/** The qsign side's failure: from the handshake, or from the first read after it. */
async function qsignFailure(
  port: number,
  pki: TestPki,
  certificate: CertifiedKey | undefined,
  extra: { serverName?: string; trustAnchors?: Uint8Array[] } = {},
): Promise<TlsError> {
  try {
    await qsignEcho(port, {
      serverName: extra.serverName ?? "localhost",
      trustAnchors: extra.trustAnchors ?? [pki.rootDer],
      certificate,
    }, new Uint8Array(100));
  } catch (e) {
    if (e instanceof TlsError) return e;
    throw e;
  }
  throw new Error("the connection unexpectedly worked");
}

Deno.test("qsign server refuses bad clients with OpenSSL's alerts", async (t) => {
  await using dir = await tempDir();
  const f = await fixtures(dir.path);
  await using peer = new Peer();
  const base: TlsServerConfig = {
    certificates: [f.pki.server],
    clientAuth: "require",
    trustAnchors: [f.pki.rootDer],
    crls: [f.crl.der],
  };
  const client = (cert?: { certPem: string; keyPem: string }): PeerTlsOptions => ({
    ca: f.pki.rootPem,
    cert: cert?.certPem,
    key: cert?.keyPem,
    servername: "localhost",
  });
  const cases: [string, PeerTlsOptions, string, string][] = [
    [
      "no client certificate",
      client(),
      "certificate_required",
      "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED",
    ],
    [
      "client certificate from an unknown CA",
      client({ certPem: f.stranger.clientCertPem, keyPem: f.stranger.clientKeyPem }),
      "unknown_ca",
      "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA",
    ],
    [
      "expired client certificate",
      client(f.expired),
      "certificate_expired",
      "ERR_SSL_SSL/TLS_ALERT_CERTIFICATE_EXPIRED",
    ],
    [
      "revoked client certificate",
      client(f.revoked),
      "certificate_revoked",
      "ERR_SSL_SSL/TLS_ALERT_CERTIFICATE_REVOKED",
    ],
    [
      "server certificate used as a client certificate",
      client(f.serverPurpose),
      "unsupported_certificate",
      "ERR_SSL_SSL/TLS_ALERT_UNSUPPORTED_CERTIFICATE",
    ],
  ];
  for (const [name, options, alert, code] of cases) {
    await t.step(name, async () => {
      await using server = new EchoServer(base);
      const result = await peer.connect(server.port, options);
      const [outcome] = await server.waitFor(1);
      ok("error" in outcome, `handshake should fail: ${JSON.stringify(result)}`);
      equal(outcome.error.alert, alert);
      equal(outcome.error.sent, true);
      equal(result.code, code, JSON.stringify(result));
    });
  }

  await t.step("classical-only client without allowClassical", async () => {
    await using server = new EchoServer(base);
    const result = await peer.connect(server.port, {
      ...client({ certPem: f.pki.clientCertPem, keyPem: f.pki.clientKeyPem }),
      groups: ["x25519", "secp256r1"],
    });
    const [outcome] = await server.waitFor(1);
    ok("error" in outcome);
    ok(outcome.error instanceof TlsHandshakeError);
    equal(outcome.error.alert, "insufficient_security");
    deepEqual(outcome.error.clientOffer?.groups, ["x25519", "secp256r1"]);
    equal(outcome.error.clientOffer?.pq, false);
    equal(result.code, "ERR_SSL_TLSV1_ALERT_INSUFFICIENT_SECURITY");
  });
});

Deno.test("qsign client against OpenSSL's refusals, and refusing OpenSSL", async (t) => {
  await using dir = await tempDir();
  const f = await fixtures(dir.path);
  await using peer = new Peer();
  const serverOptions = {
    ca: f.pki.rootPem,
    cert: f.pki.serverCertPem,
    key: f.pki.serverKeyPem,
    requestCert: true,
    crl: f.crl.pem,
  };
  const strict = await peer.listen(serverOptions);

  await t.step("OpenSSL refuses: no client certificate", async () => {
    const error = await qsignFailure(strict.port, f.pki, undefined);
    equal(error.alert, "certificate_required", error.message);
    equal(error.sent, false);
    const events = await peer.events(strict.server);
    equal(events.at(-1)?.code, "ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE");
  });

  // Node checks the client chain after the handshake and drops the connection without an
  // alert; OpenSSL's verdict is read from the socket (authorizationError).
  // (Revocation is proven the other way round above: OpenSSL 3.5 reports UNABLE_TO_GET_CRL for
  // the ML-DSA-signed CRL that qsign's verifier and OpenSSL 3.0's CLI both accept.)
  const lenient = await peer.listen({
    ...serverOptions,
    crl: undefined,
    rejectUnauthorized: false,
  });
  const refusedByOpenSsl: [string, CertifiedKey, string, typeof lenient][] = [
    [
      "client certificate from an unknown CA",
      f.stranger.client,
      "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
      lenient,
    ],
    ["expired client certificate", f.expired.key, "CERT_HAS_EXPIRED", lenient],
    [
      "server certificate used as a client certificate",
      f.serverPurpose.key,
      "INVALID_PURPOSE",
      lenient,
    ],
  ];
  for (const [name, certificate, verdict, server] of refusedByOpenSsl) {
    await t.step(`OpenSSL refuses: ${name}`, async () => {
      const error = await qsignFailure(server.port, f.pki, certificate);
      equal(error.alert, "connection_closed", error.message);
      const events = await peer.events(server.server);
      deepEqual(events.map((e) => `${e.event} ${e.code}`), [`unauthorized ${verdict}`]);
    });
  }

  const refusedByQsign: [
    string,
    { serverName?: string; trustAnchors?: Uint8Array[] },
    string,
    string,
  ][] = [
    [
      "server name mismatch",
      { serverName: "wrong.example.org" },
      "bad_certificate",
      "ERR_SSL_SSL/TLS_ALERT_BAD_CERTIFICATE",
    ],
    [
      "server certificate from an unknown CA",
      { trustAnchors: [f.stranger.rootDer] },
      "unknown_ca",
      "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA",
    ],
  ];
  for (const [name, extra, alert, code] of refusedByQsign) {
    await t.step(`qsign refuses: ${name}`, async () => {
      const error = await qsignFailure(strict.port, f.pki, f.pki.client, extra);
      ok(error instanceof TlsHandshakeError);
      equal(error.alert, alert, error.message);
      equal(error.sent, true);
      const events = await peer.events(strict.server);
      equal(events.at(-1)?.code, code, JSON.stringify(events));
    });
  }
  await peer.closeServer(strict.server);
  await peer.closeServer(lenient.server);
});
