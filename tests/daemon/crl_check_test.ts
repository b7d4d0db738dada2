/**
 * `--crl-check` on both ends: with `chain` every certificate below the root needs its issuer's
 * CRL, so the intermediate CA's CRL alone (which covers the leaf) is not enough and the handshake
 * is refused with unknown_ca; with the Root CA's CRL too (`qsign pki crl --ca root`, covering the
 * intermediates) it succeeds. The default, `available`, checks against whatever CRLs are given.
 */
import { equal, match, ok } from "node:assert/strict";
import { TlsError } from "../../src/tls/alert.ts";
import { runQsign, tempDir } from "../support/env.ts";
import { clientArgs, Daemon, exchange, makePki, qsignClient, serveArgs } from "./support.ts";

const REPLY = /QSIGN 서버 응답 \[세션 #\d+\]: 메시지 수신 완료 \(5 바이트\)/;

/** The demo exchange from an in-process qsign client; the TLS failure when it is refused. */
async function tryExchange(
  ...client: Parameters<typeof qsignClient>
): Promise<string | TlsError> {
  try {
    const tls = await qsignClient(...client);
    try {
      return await exchange(tls, "hello");
    } finally {
      await tls.close();
    }
  } catch (e) {
    // TLS 1.3 clients finish before the server has judged their chain: the alert may come
    // with the handshake or with the first read.
    if (e instanceof TlsError) return e;
    throw e;
  }
}

Deno.test("--crl-check chain needs the Root CA's CRL too, on qsign serve and qsign connect", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  const crl = (ca: string) => `${dir.path}/${ca}-ca.crl`;
  const made = await Promise.all(
    ["root", "server", "client"].map((ca) =>
      runQsign(["pki", "crl", "--dir", pki.dir, "--ca", ca, "--out", crl(ca)])
    ),
  );
  for (const result of made) equal(result.code, 0, result.stderr);

  // The daemon's CRL file holds the Client CA's CRL only, at first.
  const daemonCrls = `${dir.path}/daemon-crls.pem`;
  await Deno.copyFile(crl("client"), daemonCrls);
  await using daemon = await Daemon.start(
    serveArgs(pki, ["--crl", daemonCrls, "--crl-check", "chain"]),
  );
  const port = daemon.port();

  const refused = await tryExchange(pki, port);
  ok(refused instanceof TlsError, `expected a refusal, got ${refused}`);
  equal(refused.alert, "unknown_ca");
  const failed = await daemon.waitFor((e) => e.event === "handshake_failed");
  equal(failed.alert, "unknown_ca");
  match(String(failed.reason), /crl missing: no CRL from CN=QSIGN Root CA/);

  // Both CRLs: the chain is fully checked and admitted.
  await Deno.writeTextFile(
    daemonCrls,
    (await Deno.readTextFile(crl("client"))) + (await Deno.readTextFile(crl("root"))),
  );
  daemon.signal("SIGHUP");
  await daemon.waitFor((e) => e.event === "reload_ok");
  match(String(await tryExchange(pki, port)), REPLY);

  // qsign connect checks the server's chain the same way.
  const connect = (...extra: string[]) =>
    runQsign([
      "connect",
      `127.0.0.1:${port}`,
      ...clientArgs(pki),
      "--crl",
      crl("server"),
      "--send",
      "hello",
      ...extra,
    ]);
  const [leafOnly, available, withRoot] = await Promise.all([
    connect("--crl-check", "chain"),
    connect(),
    connect("--crl-check", "chain", "--crl", crl("root")),
  ]);
  equal(leafOnly.code, 1, leafOnly.stdout);
  match(leafOnly.stderr, /sent alert unknown_ca \(crl missing: no CRL from CN=QSIGN Root CA/);
  equal(available.code, 0, available.stderr);
  match(available.stdout, REPLY);
  equal(withRoot.code, 0, withRoot.stderr);
  match(withRoot.stdout, REPLY);
});
