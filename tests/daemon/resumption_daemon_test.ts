/**
 * Resumption through `qsign serve`: a client certificate revoked by a CRL the daemon reloads no
 * longer resumes, and a ticket whose binder does not verify puts no identity into the audit log
 * or the PROXY v2 header the backend receives.
 */
import { equal, match, ok } from "node:assert/strict";
import { openConnection } from "../../src/daemon/client.ts";
import { generateCrl, revokeCertificate } from "../../src/pki/ca.ts";
import { pemEncode } from "../../src/pki/pem.ts";
import { TlsError } from "../../src/tls/alert.ts";
import type { TlsClientConfig } from "../../src/tls/config.ts";
import { tempDir } from "../support/env.ts";
import { Daemon, exchange, issue, makePki, qsignClientConfig, serveArgs } from "./support.ts";

/** One conversation on `port` with `config`; its handshake facts, or the error. */
async function visit(port: number, config: TlsClientConfig) {
  try {
    const tls = await openConnection({ hostname: "127.0.0.1", port }, config);
    await exchange(tls, "hello");
    await tls.close();
    return { info: tls.info };
  } catch (e) {
    ok(e instanceof TlsError, String(e));
    return { error: e };
  }
}

Deno.test("a client certificate revoked by a reloaded CRL no longer resumes", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  const client = await issue(pki, "client", "revoked-soon.qsign.local", "soon", {
    sans: ["DNS:revoked-soon.qsign.local"],
  });
  const crlFile = `${dir.path}/client.crl`;
  const writeCrl = async () =>
    await Deno.writeTextFile(
      crlFile,
      pemEncode("X509 CRL", await generateCrl({ dir: pki.dir, profile: "client" })),
    );
  await writeCrl();
  await using daemon = await Daemon.start(serveArgs(pki, ["--crl", crlFile]));
  const port = daemon.port();
  const config = await qsignClientConfig(pki, port, client);

  equal((await visit(port, config)).info?.resumed, false);
  equal((await visit(port, config)).info?.resumed, true);

  await revokeCertificate({ dir: pki.dir, serial: client.serial });
  await writeCrl();
  daemon.signal("SIGHUP");
  await daemon.waitFor((e) => e.event === "reload_ok");

  const after = await visit(port, config);
  ok(after.error, "the revoked client got in");
  const failed = await daemon.waitFor((e) => e.event === "handshake_failed");
  equal(failed.alert, "certificate_revoked");
  const ok_ = daemon.events.filter((e) => e.event === "handshake_ok");
  equal(ok_.length, 2, "no session after the revocation");
});

Deno.test("a wrong binder on an expired-leaf ticket injects no identity", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  // Long enough to outlast the daemon's start and the full handshake on a loaded machine.
  const client = await issue(pki, "client", "stale.qsign.local", "stale", {
    ttlSeconds: 15,
    sans: ["DNS:stale.qsign.local"],
  });

  // A backend that records each PROXY v2 header and answers.
  const backend = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const headers: string[] = [];
  const serving = (async () => {
    for await (const conn of backend) {
      const buffer = new Uint8Array(4096);
      let received = 0;
      const view = new DataView(buffer.buffer);
      while (received < 16 || received < 16 + view.getUint16(14)) {
        const n = await conn.read(buffer.subarray(received)).catch(() => null);
        if (n === null) break;
        received += n;
      }
      headers.push(new TextDecoder("latin1").decode(buffer.subarray(0, received)));
      await conn.write(new TextEncoder().encode("reply")).catch(() => {});
      conn.close();
    }
  })();
  try {
    await using daemon = await Daemon.start(
      serveArgs(pki, [
        "--client-auth",
        "request",
        "--mode",
        "proxy",
        "--target",
        `127.0.0.1:${backend.addr.port}`,
        "--proxy-protocol",
      ]),
    );
    const port = daemon.port();
    const withCert = await qsignClientConfig(pki, port, client);
    const full = await visit(port, withCert);
    equal(full.info?.resumed, false);
    const first = await daemon.waitFor((e) => e.event === "handshake_ok");
    equal(first.client_subject, "CN=stale.qsign.local, O=QSIGN");
    ok(headers[0]?.includes("stale.qsign.local"), "the backend saw the identity once");

    const key = `localhost:${port}`;
    const stolen = withCert.sessionCache!.take(key)!;
    // Until the leaf has expired.
    const expired = client.notAfter.getTime() + 1500 - Date.now();
    await new Promise((r) => setTimeout(r, Math.max(0, expired)));

    // The ticket without its PSK (so a wrong binder) and no certificate of our own.
    const anonymous = await qsignClientConfig(pki, port, { withCertificate: false });
    anonymous.sessionCache!.put(key, {
      ...stolen,
      psk: crypto.getRandomValues(new Uint8Array(stolen.psk.length)),
    });
    const forged = await visit(port, anonymous);
    ok(forged.error, "a wrong binder must not complete a handshake");
    const failed = await daemon.waitFor((e) => e.event === "handshake_failed");
    equal(failed.alert, "decrypt_error");

    // The honest holder of the expired leaf's ticket: declined, an anonymous session.
    anonymous.sessionCache!.put(key, stolen);
    const honest = await visit(port, anonymous);
    equal(honest.info?.resumed, false);
    const events = await daemon.waitForCount((e) => e.event === "handshake_ok", 2);
    equal(events[1].client_subject, undefined);
    match(String(events[1].resumption_declined), /expired/);

    await daemon.waitFor(() => headers.length >= 2);
    equal(headers.length, 2, "one backend connection per completed handshake");
    ok(!headers[1].includes("stale.qsign.local"), "no identity in the PROXY header");
    // No log line after the first presents the stale leaf as the client (the reason a ticket
    // was declined may name the certificate that failed its re-check).
    for (const e of daemon.events) {
      if (e === first) continue;
      const { resumption_declined: _reason, ...fields } = e;
      ok(!JSON.stringify(fields).includes("stale.qsign.local"), JSON.stringify(e));
    }
  } finally {
    backend.close();
    await serving.catch(() => {});
  }
});

Deno.test("--resumption-max-age bounds the tickets the daemon issues", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  await using daemon = await Daemon.start(serveArgs(pki, ["--resumption-max-age", "3s"]));
  const port = daemon.port();
  const config = await qsignClientConfig(pki, port);
  equal((await visit(port, config)).info?.resumed, false);
  const ticket = config.sessionCache!.take(`localhost:${port}`);
  ok(ticket, "a ticket was issued");
  ok(ticket.lifetimeSeconds <= 3, `lifetime ${ticket.lifetimeSeconds} s`);
});
