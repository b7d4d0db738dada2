/**
 * Resumption re-establishes the authentication a full handshake would give now (resumption.ts,
 * pki/recheck.ts), over real sockets between qsign's client and server: a ticket is declined
 * (a full handshake follows, which then refuses) once its client chain is revoked, expired or
 * under an anchor no longer trusted, on another service, past the maximum age, or without the
 * certificate an access policy needs; nothing from a ticket is used before its binder verifies.
 */
import "reflect-metadata";
import { equal, match, ok } from "node:assert/strict";
import type * as x509 from "@peculiar/x509";
import { createCrl } from "../../src/pki/certificate.ts";
import type { LoadedPrivateKey } from "../../src/pki/keys.ts";
import type { CertifiedKey, TlsClientConfig, TlsServerConfig } from "../../src/tls/config.ts";
import { TlsError } from "../../src/tls/alert.ts";
import { MemorySessionCache, TicketKeys } from "../../src/tls/tickets.ts";
import { FileSigner, KEY_KIND_OF_ALGORITHM } from "../../src/tls/signers.ts";
import { CLIENT_AUTH, DAY, type Issued, make } from "../pki/helpers.ts";
import { tempDir } from "../support/env.ts";
import { makePki } from "./support/pki.ts";
import { EchoServer, type Outcome, qsignEcho } from "./support/qsign.ts";

const hello = new TextEncoder().encode("resume me");

/** A client CA of its own: root → intermediate → leaf, each in a test's hands. */
interface ClientChain {
  root: Issued;
  intermediate: Issued;
  leaf: Issued;
  key: CertifiedKey;
}

async function clientChain(
  options: { intermediateNotAfter?: Date; leafNotAfter?: Date; subject?: string } = {},
): Promise<ClientChain> {
  const root = await make({ subject: "CN=Resumption Test Root, O=QSIGN Test", ca: {} });
  const intermediate = await make({
    subject: "CN=Resumption Test Client CA, O=QSIGN Test",
    issuer: root,
    ca: { pathLength: 0 },
    notAfter: options.intermediateNotAfter,
  });
  const leaf = await make({
    subject: options.subject ?? "CN=client-a.qsign.test, OU=payments",
    issuer: intermediate,
    eku: [CLIENT_AUTH],
    sans: ["DNS:client-a.qsign.test"],
    notAfter: options.leafNotAfter,
  });
  const loaded = leaf.key as LoadedPrivateKey;
  const signer = await FileSigner.fromPkcs8(
    loaded.pkcs8,
    KEY_KIND_OF_ALGORITHM[loaded.keyAlgorithm],
    "test",
  );
  return { root, intermediate, leaf, key: { chain: [leaf.der, intermediate.der], signer } };
}

/** A CRL by `issuer` revoking `revoked` (none: an empty CRL). */
async function crlOf(issuer: Issued, ...revoked: x509.X509Certificate[]): Promise<Uint8Array> {
  const now = Date.now();
  const crl = await createCrl({
    issuer: issuer.cert,
    signer: issuer.key,
    thisUpdate: new Date(now - 60_000),
    nextUpdate: new Date(now + DAY),
    crlNumber: 1,
    entries: revoked.map((c) => ({ serial: c.serialNumber, revokedAt: new Date(now - 1000) })),
  });
  return new Uint8Array(crl.rawData);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("resumption re-checks the authentication a ticket stands for", async (t) => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`, "mldsa65");
  const chain = await clientChain();

  const serverConfig = (extra: Partial<TlsServerConfig> = {}): TlsServerConfig => ({
    certificates: [pki.server],
    clientAuth: "require",
    trustAnchors: [chain.root.der],
    tickets: TicketKeys.random(),
    ...extra,
  });
  const clientConfig = (
    sessionCache: MemorySessionCache,
    extra: Partial<TlsClientConfig> = {},
  ): TlsClientConfig => ({
    serverName: "localhost",
    trustAnchors: [pki.rootDer],
    certificate: chain.key,
    sessionCache,
    ...extra,
  });
  /** One connection to `server`; its server-side outcome. */
  const visit = async (
    server: EchoServer,
    cache: MemorySessionCache,
    extra: Partial<TlsClientConfig> = {},
  ): Promise<Outcome> => {
    const before = server.outcomes.length;
    try {
      await qsignEcho(server.port, clientConfig(cache, extra), hello);
    } catch (e) {
      ok(e instanceof TlsError, String(e));
    }
    return (await server.waitFor(before + 1))[before];
  };
  const info = (o: Outcome) => {
    ok("info" in o, `handshake failed: ${"error" in o ? o.error.message : ""}`);
    return o.info;
  };
  const failure = (o: Outcome) => {
    ok("error" in o, "the handshake should have failed");
    return o.error;
  };

  await t.step("an mTLS ticket resumes on another server holding the same ticket key", async () => {
    const tickets = TicketKeys.random();
    await using a = new EchoServer(serverConfig({ tickets }));
    await using b = new EchoServer(serverConfig({ tickets }));
    const cache = new MemorySessionCache();
    const full = info(await visit(a, cache));
    equal(full.resumed, false);
    equal(full.peerIdentity?.cn[0], "client-a.qsign.test");
    cache.put(`localhost:${b.port}`, cache.take(`localhost:${a.port}`)!);
    const resumed = info(await visit(b, cache));
    equal(resumed.resumed, true, resumed.resumptionDeclined);
    // The identity comes from the ticket: the same fields, fingerprint included.
    equal(resumed.peerIdentity?.subject, full.peerIdentity?.subject);
    equal(resumed.peerIdentity?.fingerprint, full.peerIdentity?.fingerprint);
    equal(resumed.peerIdentity?.ou[0], "payments");
    equal(resumed.peerIdentity?.dns[0], "client-a.qsign.test");
    equal(resumed.peerCertificates.length, 0);
  });

  await t.step("a client certificate revoked by a new CRL no longer resumes", async () => {
    await using server = new EchoServer(serverConfig({ crls: [await crlOf(chain.intermediate)] }));
    const cache = new MemorySessionCache();
    equal(info(await visit(server, cache)).resumed, false);
    equal(info(await visit(server, cache)).resumed, true);
    // A reload brings a CRL listing the leaf: a new array, as the daemon's reload makes. The
    // ticket is declined, and the full handshake that follows refuses the chain.
    server.config.crls = [await crlOf(chain.intermediate, chain.leaf.cert)];
    equal(failure(await visit(server, cache)).alert, "certificate_revoked");
  });

  await t.step("an intermediate revoked by the root's CRL no longer resumes", async () => {
    await using server = new EchoServer(serverConfig());
    const cache = new MemorySessionCache();
    equal(info(await visit(server, cache)).resumed, false);
    server.config.crls = [await crlOf(chain.root, chain.intermediate.cert)];
    equal(failure(await visit(server, cache)).alert, "certificate_revoked");
  });

  await t.step("crl_check chain: a CRL gone missing declines the ticket", async () => {
    const crls = [await crlOf(chain.root), await crlOf(chain.intermediate)];
    await using server = new EchoServer(serverConfig({ crls, crlCheck: "chain" }));
    const cache = new MemorySessionCache();
    equal(info(await visit(server, cache)).resumed, false);
    equal(info(await visit(server, cache)).resumed, true);
    server.config.crls = [crls[1]];
    equal(failure(await visit(server, cache)).alert, "unknown_ca");
  });

  await t.step("an expired intermediate no longer resumes", async () => {
    const shortLived = await clientChain({ intermediateNotAfter: new Date(Date.now() + 4000) });
    await using server = new EchoServer(serverConfig({ trustAnchors: [shortLived.root.der] }));
    const cache = new MemorySessionCache();
    const extra = { certificate: shortLived.key };
    equal(info(await visit(server, cache, extra)).resumed, false);
    equal(info(await visit(server, cache, extra)).resumed, true);
    await sleep(Math.max(0, shortLived.intermediate.cert.notAfter.getTime() - Date.now()) + 1200);
    equal(failure(await visit(server, cache, extra)).alert, "certificate_expired");
  });

  await t.step("a trust anchor removed on reload no longer resumes", async () => {
    const other = await clientChain();
    await using server = new EchoServer(
      serverConfig({ trustAnchors: [chain.root.der, other.root.der] }),
    );
    const cache = new MemorySessionCache();
    equal(info(await visit(server, cache)).resumed, false);
    server.config.trustAnchors = [other.root.der];
    equal(failure(await visit(server, cache)).alert, "unknown_ca");
  });

  await t.step("a ticket from service A is refused on service B", async () => {
    const tickets = TicketKeys.random();
    await using a = new EchoServer(serverConfig({ tickets, sessionBinding: "service A" }));
    await using b = new EchoServer(serverConfig({ tickets, sessionBinding: "service B" }));
    const cache = new MemorySessionCache();
    equal(info(await visit(a, cache)).resumed, false);
    cache.put(`localhost:${b.port}`, cache.take(`localhost:${a.port}`)!);
    const atB = info(await visit(b, cache));
    equal(atB.resumed, false);
    match(atB.resumptionDeclined ?? "", /another service or trust configuration/);
    // Same for a service that differs in its trust policy only.
    await using pq = new EchoServer(
      serverConfig({ tickets, sessionBinding: "service A", requirePqAuth: true }),
    );
    equal(info(await visit(a, cache)).resumed, false);
    cache.put(`localhost:${pq.port}`, cache.take(`localhost:${a.port}`)!);
    match(info(await visit(pq, cache)).resumptionDeclined ?? "", /another service/);
  });

  await t.step("resumption stops at the maximum age of the original authentication", async () => {
    await using server = new EchoServer(serverConfig({ resumptionMaxAgeSeconds: 6 }));
    const cache = new MemorySessionCache();
    const key = `localhost:${server.port}`;
    const full = info(await visit(server, cache));
    const fullAt = Date.now() - full.timings.handshakeMs;
    equal(full.resumed, false);
    await sleep(2000);
    equal(info(await visit(server, cache)).resumed, true);
    // The ticket issued on the resumed connection keeps the original authentication time: its
    // lifetime ends with the maximum age, not 6 s after this resumption.
    const renewed = cache.take(key)!;
    ok(renewed.lifetimeSeconds <= 5, `lifetime ${renewed.lifetimeSeconds}`);
    ok(renewed.receivedMs + renewed.lifetimeSeconds * 1000 <= fullAt + 6000 + 1000);
    // Offered anyway after the maximum age (the client ignoring the lifetime): declined.
    cache.put(key, { ...renewed, lifetimeSeconds: 3600 });
    await sleep(Math.max(0, fullAt + 6500 - Date.now()));
    const late = info(await visit(server, cache));
    equal(late.resumed, false);
    ok(late.resumptionDeclined, "a reason is given");
  });

  await t.step(
    "a lower --resumption-max-age on reload applies to tickets already out",
    async () => {
      await using server = new EchoServer(serverConfig());
      const cache = new MemorySessionCache();
      equal(info(await visit(server, cache)).resumed, false);
      await sleep(1500);
      server.config.resumptionMaxAgeSeconds = 1;
      const late = info(await visit(server, cache));
      equal(late.resumed, false);
      match(late.resumptionDeclined ?? "", /older than the resumption maximum age/);
    },
  );

  await t.step("client_auth request with an access policy: no certificate, no entry", async () => {
    const tickets = TicketKeys.random();
    const admitted = (peer: { cn: string[] }) => peer.cn.includes("client-a.qsign.test");
    await using open = new EchoServer(
      serverConfig({ tickets, clientAuth: "request", sessionBinding: "svc" }),
    );
    await using guarded = new EchoServer(
      serverConfig({
        tickets,
        clientAuth: "request",
        sessionBinding: "svc",
        accessPolicy: admitted,
      }),
    );
    const cache = new MemorySessionCache();
    const anonymous = { certificate: undefined };
    equal(failure(await visit(guarded, cache, anonymous)).alert, "certificate_required");
    equal(info(await visit(guarded, cache)).peerIdentity?.cn[0], "client-a.qsign.test");
    // An anonymous ticket (same keys and binding) does not get past the policy either.
    equal(info(await visit(open, cache, anonymous)).peerIdentity, undefined);
    cache.put(`localhost:${guarded.port}`, cache.take(`localhost:${open.port}`)!);
    equal(failure(await visit(guarded, cache, anonymous)).alert, "certificate_required");
  });

  await t.step("an access policy changed on reload is applied on resumption", async () => {
    let allowed = "client-a.qsign.test";
    await using server = new EchoServer(
      serverConfig({ accessPolicy: (peer) => peer.cn.includes(allowed) || "not on the list" }),
    );
    const cache = new MemorySessionCache();
    equal(info(await visit(server, cache)).resumed, false);
    equal(info(await visit(server, cache)).resumed, true);
    allowed = "someone-else";
    equal(failure(await visit(server, cache)).alert, "access_denied");
  });

  await t.step("an expired-leaf ticket with a wrong binder injects no identity", async () => {
    const brief = await clientChain({ leafNotAfter: new Date(Date.now() + 4000) });
    await using server = new EchoServer(
      serverConfig({ clientAuth: "request", trustAnchors: [brief.root.der] }),
    );
    const cache = new MemorySessionCache();
    const key = `localhost:${server.port}`;
    const full = info(await visit(server, cache, { certificate: brief.key }));
    equal(full.peerIdentity?.cn[0], "client-a.qsign.test");
    const stolen = cache.take(key)!;
    await sleep(Math.max(0, brief.leaf.cert.notAfter.getTime() - Date.now()) + 1200);
    // The ticket without its PSK: the binder cannot verify. No certificate of our own.
    cache.put(key, { ...stolen, psk: crypto.getRandomValues(new Uint8Array(stolen.psk.length)) });
    const outcome = await visit(server, cache, { certificate: undefined });
    equal(failure(outcome).alert, "decrypt_error");
    ok(server.outcomes.every((o) => !("info" in o) || o.info === full), "no other session");
    // With the right binder, the expired leaf's ticket is declined: an anonymous session.
    cache.put(key, stolen);
    const honest = info(await visit(server, cache, { certificate: undefined }));
    equal(honest.resumed, false);
    equal(honest.peerIdentity, undefined);
    match(honest.resumptionDeclined ?? "", /expired/);
  });

  await t.step("a chain whose facts are too large to seal gets no ticket, and works", async () => {
    const huge = await clientChain({ subject: `CN=client-a.qsign.test, OU=${"x".repeat(9000)}` });
    await using server = new EchoServer(serverConfig({ trustAnchors: [huge.root.der] }));
    const cache = new MemorySessionCache();
    const full = info(await visit(server, cache, { certificate: huge.key }));
    equal(full.peerIdentity?.ou[0].length, 9000);
    equal(cache.size, 0);
  });

  await t.step("ticket size for an ML-DSA-65 mutual-TLS chain", async () => {
    await using server = new EchoServer(serverConfig());
    const cache = new MemorySessionCache();
    equal(info(await visit(server, cache)).resumed, false);
    const ticket = cache.take(`localhost:${server.port}`)!.ticket;
    console.log(`ticket: ${ticket.length} bytes (leaf + intermediate, ML-DSA-65)`);
    // Far below what OpenSSL (Node's 10 KB session limit, with the server's own ML-DSA
    // certificate in the session), BoringSSL and rustls keep.
    ok(ticket.length < 2048, `${ticket.length} bytes`);
  });
});
