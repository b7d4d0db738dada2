/**
 * Refusals against OpenSSL 3.5 (Node 26), both directions: each failure ends the handshake with
 * the alert OpenSSL sends in the same situation, and OpenSSL reports the alert qsign sent.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { TlsError, TlsHandshakeError } from "../../src/tls/alert.ts";
import type { CertifiedKey, TlsClientConfig, TlsServerConfig } from "../../src/tls/config.ts";
import { tempDir } from "../support/env.ts";
import { Peer, type PeerTlsOptions } from "./support/peer.ts";
import {
  caSerial,
  issueTestLeaf,
  makePki,
  publishCrls,
  revoke,
  type TestPki,
} from "./support/pki.ts";
import { EchoServer, qsignEcho } from "./support/qsign.ts";

const HOUR = 3600 * 1000;

/**
 * Fixtures: the PKI every case uses (with a revoked client leaf and a revoked server leaf), a
 * second one nobody trusts, a third whose Client intermediate CA is revoked, and the odd leaves.
 * CRLs are published as `qsign pki crl --ca root|server|client` does.
 */
async function fixtures(dir: string) {
  const [pki, stranger, revokedCa] = await Promise.all([
    makePki(`${dir}/pki`, "mldsa65"),
    makePki(`${dir}/stranger`, "mldsa65"),
    makePki(`${dir}/revoked-ca`, "mldsa65"),
  ]);
  const expired = await issueTestLeaf(pki, "client", {
    now: new Date(Date.now() - 48 * HOUR),
    ttlSeconds: 3600,
  });
  const revoked = await issueTestLeaf(pki, "client");
  const revokedServer = await issueTestLeaf(pki, "server", {
    cn: "revoked-server.qsign.local",
    sans: ["DNS:localhost"],
  });
  await revoke(pki, revoked.serial, revokedServer.serial);
  await revoke(revokedCa, await caSerial(revokedCa, "client"));
  const serverPurpose = await issueTestLeaf(pki, "server", { cn: "not-a-client.qsign.local" });
  return {
    pki,
    stranger,
    revokedCa,
    expired,
    revoked,
    revokedServer,
    serverPurpose,
    crls: await publishCrls(pki),
    revokedCaCrls: await publishCrls(revokedCa),
  };
}

/** The qsign side's failure: from the handshake, or from the first read after it. */
async function qsignFailure(
  port: number,
  pki: TestPki,
  certificate: CertifiedKey | undefined,
  extra: Partial<TlsClientConfig> = {},
): Promise<TlsError> {
  try {
    await qsignEcho(port, {
      serverName: "localhost",
      trustAnchors: [pki.rootDer],
      certificate,
      ...extra,
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
  // Revocation checked for the whole chain, as OpenSSL does with Node's `crl` option.
  const base: TlsServerConfig = {
    certificates: [f.pki.server],
    clientAuth: "require",
    trustAnchors: [f.pki.rootDer],
    crls: [f.crls.root.der, f.crls.client.der],
    crlCheck: "chain",
  };
  const client = (cert?: { certPem: string; keyPem: string }): PeerTlsOptions => ({
    ca: f.pki.rootPem,
    cert: cert?.certPem,
    key: cert?.keyPem,
    servername: "localhost",
  });
  const good = client({ certPem: f.pki.clientCertPem, keyPem: f.pki.clientKeyPem });
  const cases: {
    name: string;
    options: PeerTlsOptions;
    config?: Partial<TlsServerConfig>;
    alert: string;
    code: string;
  }[] = [
    {
      name: "no client certificate",
      options: client(),
      alert: "certificate_required",
      code: "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED",
    },
    {
      name: "client certificate from an unknown CA",
      options: client({ certPem: f.stranger.clientCertPem, keyPem: f.stranger.clientKeyPem }),
      alert: "unknown_ca",
      code: "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA",
    },
    {
      name: "expired client certificate",
      options: client(f.expired),
      alert: "certificate_expired",
      code: "ERR_SSL_SSL/TLS_ALERT_CERTIFICATE_EXPIRED",
    },
    {
      name: "revoked client certificate",
      options: client(f.revoked),
      alert: "certificate_revoked",
      code: "ERR_SSL_SSL/TLS_ALERT_CERTIFICATE_REVOKED",
    },
    {
      name: "client certificate under a revoked intermediate CA",
      options: {
        ...client({ certPem: f.revokedCa.clientCertPem, keyPem: f.revokedCa.clientKeyPem }),
        ca: f.revokedCa.rootPem,
      },
      config: {
        certificates: [f.revokedCa.server],
        trustAnchors: [f.revokedCa.rootDer],
        crls: [f.revokedCaCrls.root.der, f.revokedCaCrls.client.der],
      },
      alert: "certificate_revoked",
      code: "ERR_SSL_SSL/TLS_ALERT_CERTIFICATE_REVOKED",
    },
    {
      // What OpenSSL calls UNABLE_TO_GET_CRL, and answers with the same alert.
      name: "chain CRL check without the Root CA's CRL",
      options: good,
      config: { crls: [f.crls.client.der] },
      alert: "unknown_ca",
      code: "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA",
    },
    {
      name: "server certificate used as a client certificate",
      options: client(f.serverPurpose),
      alert: "unsupported_certificate",
      code: "ERR_SSL_SSL/TLS_ALERT_UNSUPPORTED_CERTIFICATE",
    },
  ];
  for (const { name, options, config, alert, code } of cases) {
    await t.step(name, async () => {
      await using server = new EchoServer({ ...base, ...config });
      const result = await peer.connect(server.port, options);
      const [outcome] = await server.waitFor(1);
      ok("error" in outcome, `handshake should fail: ${JSON.stringify(result)}`);
      equal(outcome.error.alert, alert, outcome.error.message);
      equal(outcome.error.sent, true);
      equal(result.code, code, JSON.stringify(result));
    });
  }

  await t.step("the same chain CRL check admits a client that is not revoked", async () => {
    await using server = new EchoServer(base);
    const result = await peer.connect(server.port, good);
    equal(result.ok, true, JSON.stringify(result));
    equal(result.echoed, true);
  });

  await t.step("classical-only client without allowClassical", async () => {
    await using server = new EchoServer(base);
    const result = await peer.connect(server.port, {
      ...good,
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
  const lenient = await peer.listen({ ...serverOptions, rejectUnauthorized: false });
  // Node's `crl` option turns on X509_V_FLAG_CRL_CHECK_ALL: every certificate below the root
  // needs its issuer's CRL, so the Root CA's CRL (for the intermediates) must be there too.
  const revocationChecking = await peer.listen({
    ...serverOptions,
    rejectUnauthorized: false,
    crl: [f.crls.root.pem, f.crls.client.pem],
  });
  const leafCrlOnly = await peer.listen({
    ...serverOptions,
    rejectUnauthorized: false,
    crl: [f.crls.client.pem],
  });
  const revokedIntermediate = await peer.listen({
    ca: f.revokedCa.rootPem,
    cert: f.revokedCa.serverCertPem,
    key: f.revokedCa.serverKeyPem,
    requestCert: true,
    rejectUnauthorized: false,
    crl: [f.revokedCaCrls.root.pem, f.revokedCaCrls.client.pem],
  });
  const refusedByOpenSsl: [string, CertifiedKey, string, typeof lenient, TestPki?][] = [
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
    ["revoked client certificate", f.revoked.key, "CERT_REVOKED", revocationChecking],
    [
      "client certificate under a revoked intermediate CA",
      f.revokedCa.client,
      "CERT_REVOKED",
      revokedIntermediate,
      f.revokedCa,
    ],
    [
      "no CRL from the Root CA for the intermediate",
      f.pki.client,
      "UNABLE_TO_GET_CRL",
      leafCrlOnly,
    ],
  ];
  for (const [name, certificate, verdict, server, pki] of refusedByOpenSsl) {
    await t.step(`OpenSSL refuses: ${name}`, async () => {
      const error = await qsignFailure(server.port, pki ?? f.pki, certificate);
      equal(error.alert, "connection_closed", error.message);
      const events = await peer.events(server.server);
      deepEqual(events.map((e) => `${e.event} ${e.code}`), [`unauthorized ${verdict}`]);
    });
  }

  await t.step("OpenSSL admits a client that is not revoked, with the same CRLs", async () => {
    const payload = new TextEncoder().encode("still trusted");
    const { echo } = await qsignEcho(revocationChecking.port, {
      serverName: "localhost",
      trustAnchors: [f.pki.rootDer],
      certificate: f.pki.client,
    }, payload);
    deepEqual(echo, payload);
    const events = await peer.events(revocationChecking.server);
    deepEqual(events.map((e) => e.event), ["secure"]);
  });

  const revokedServer = await peer.listen({
    ...serverOptions,
    cert: f.revokedServer.certPem,
    key: f.revokedServer.keyPem,
  });
  const refusedByQsign: [string, Partial<TlsClientConfig>, typeof strict, string, string][] = [
    [
      "server name mismatch",
      { serverName: "wrong.example.org" },
      strict,
      "bad_certificate",
      "ERR_SSL_SSL/TLS_ALERT_BAD_CERTIFICATE",
    ],
    [
      "server certificate from an unknown CA",
      { trustAnchors: [f.stranger.rootDer] },
      strict,
      "unknown_ca",
      "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA",
    ],
    [
      "revoked server certificate",
      { crls: [f.crls.root.der, f.crls.server.der], crlCheck: "chain" },
      revokedServer,
      "certificate_revoked",
      "ERR_SSL_SSL/TLS_ALERT_CERTIFICATE_REVOKED",
    ],
  ];
  for (const [name, extra, server, alert, code] of refusedByQsign) {
    await t.step(`qsign refuses: ${name}`, async () => {
      const error = await qsignFailure(server.port, f.pki, f.pki.client, extra);
      ok(error instanceof TlsHandshakeError);
      equal(error.alert, alert, error.message);
      equal(error.sent, true);
      const events = await peer.events(server.server);
      equal(events.at(-1)?.code, code, JSON.stringify(events));
    });
  }
  for (const server of [strict, lenient, revocationChecking, leafCrlOnly, revokedIntermediate]) {
    await peer.closeServer(server.server);
  }
  await peer.closeServer(revokedServer.server);
});
