/**
 * The demo of the original QSIGN example, end to end: `qsign connect` (one message, and the
 * interactive prompt) against `qsign serve`, many clients at once, and an OpenSSL 3.5 client
 * sending `Hello, Q-TLS!` and reading the Korean reply.
 */
import { deepEqual, equal, match, ok, rejects } from "node:assert/strict";
import { runQsign, tempDir } from "../support/env.ts";
import {
  clientArgs,
  Daemon,
  exchange,
  issue,
  makePki,
  PEER_ECHO_CLIENT,
  qsignClient,
  runPeer,
  serveArgs,
} from "./support.ts";

Deno.test("qsign connect --send and the interactive prompt against qsign serve", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  await using daemon = await Daemon.start(serveArgs(pki));
  match(daemon.stderr, /port \d+ .*echo mode/);
  match(daemon.stderr, /HSM: off/);
  match(daemon.stderr, /client auth: require/);
  match(daemon.stderr, /groups: SecP384r1MLKEM1024, X25519MLKEM768/);
  match(daemon.stderr, /signature schemes: mldsa65 \(ours\)/);
  const client = [`127.0.0.1:${daemon.port()}`, ...clientArgs(pki)];

  const message = "안녕하세요, Q-TLS";
  const bytes = new TextEncoder().encode(message).length;
  const one = await runQsign(["connect", ...client, "--send", message]);
  equal(one.code, 0, one.stderr);
  match(one.stdout, /^Q-TLS 연결 완료: 127\.0\.0\.1:\d+ \(handshake [\d.]+ ms\)$/m);
  match(
    one.stdout,
    /TLSv1\.3 TLS_AES_256_GCM_SHA384, group SecP384r1MLKEM1024, server signature mldsa65/,
  );
  ok(one.stdout.includes(`→ ${message} (${bytes} 바이트)`), one.stdout);
  ok(
    one.stdout.includes(`← QSIGN 서버 응답 [세션 #1]: 메시지 수신 완료 (${bytes} 바이트)`),
    one.stdout,
  );

  const interactive = await runQsign(["connect", ...client], {
    stdin: "first\nsecond message\nquit\nnever sent\n",
  });
  equal(interactive.code, 0, interactive.stderr);
  equal(interactive.stdout.split("메시지> ").length - 1, 3);
  ok(interactive.stdout.includes("← QSIGN 서버 응답 [세션 #2]: 메시지 수신 완료 (5 바이트)"));
  ok(interactive.stdout.includes("← QSIGN 서버 응답 [세션 #2]: 메시지 수신 완료 (14 바이트)"));
  ok(!interactive.stdout.includes("never sent"));
  await daemon.waitFor((e) => e.event === "closed" && e.session === 2);
});

Deno.test("many clients at once each get their own session number; --lang en replies in English", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  await using daemon = await Daemon.start(serveArgs(pki, ["--lang", "en"]));
  const clients = 8;
  const replies = await Promise.all(
    Array.from({ length: clients }, async (_, i) => {
      const tls = await qsignClient(pki, daemon.port());
      const reply = await exchange(tls, "x".repeat(i + 1));
      await tls.close();
      return reply;
    }),
  );
  const sessions = replies.map((r, i) => {
    const m = /^QSIGN server reply \[session #(\d+)\]: message received \((\d+) bytes\)\n$/.exec(r);
    ok(m, r);
    equal(Number(m[2]), i + 1);
    return Number(m[1]);
  });
  deepEqual(sessions.toSorted((a, b) => a - b), Array.from({ length: clients }, (_, i) => i + 1));
});

Deno.test("an OpenSSL 3.5 client sends Hello, Q-TLS! and reads the Korean reply", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  await using daemon = await Daemon.start(serveArgs(pki));
  const result = await runPeer(PEER_ECHO_CLIENT, [
    String(daemon.port()),
    pki.root,
    pki.clientCert,
    pki.clientKey,
    "Hello, Q-TLS!",
  ]) as { protocol: string; reply: string };
  equal(result.protocol, "TLSv1.3");
  equal(result.reply, "QSIGN 서버 응답 [세션 #1]: 메시지 수신 완료 (13 바이트)\n");
  const handshake = await daemon.waitFor((e) => e.event === "handshake_ok");
  equal(handshake.group, "SecP384r1MLKEM1024");
  match(String(handshake.client_subject), /CN=qtls-client\.qsign\.local/);
});

Deno.test("--allow-cn admits the named client and refuses others with access_denied", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  const other = await issue(pki, "client", "intruder.qsign.local", "intruder");
  await using daemon = await Daemon.start(
    serveArgs(pki, ["--allow-cn", "qtls-client.qsign.local"]),
  );
  const admitted = await qsignClient(pki, daemon.port());
  equal(await exchange(admitted, "ok"), "QSIGN 서버 응답 [세션 #1]: 메시지 수신 완료 (2 바이트)\n");
  await admitted.close();
  await rejects(async () => {
    const refused = await qsignClient(pki, daemon.port(), other);
    await exchange(refused, "let me in");
  });
  const failure = await daemon.waitFor((e) => e.event === "handshake_failed");
  equal(failure.alert, "access_denied");
  match(String(failure.reason), /CN=intruder\.qsign\.local/);
});
