/**
 * The interactive `qsign connect` against `qsign serve`: the server's close is reported at once
 * (while the prompt waits), Ctrl-C ends with close_notify, Ctrl-D ends the prompt line, `--lang
 * en`, and a server refusing the client's certificate is said in words instead of "connection
 * established" followed by an alert.
 */
import { equal, match, ok } from "node:assert/strict";
import { clientArgs, Daemon, makePki, serveArgs } from "./support.ts";
import { DENO, QSIGN_RUN_FLAGS, runQsign, tempDir } from "../support/env.ts";

/** `qsign connect ARGS` with a pipe for stdin, and its stdout collected as it comes. */
class Client {
  stdout = "";
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #pump: Promise<void>;
  readonly #stderr: Promise<string>;

  constructor(args: string[]) {
    const child = new Deno.Command(DENO, {
      args: [...QSIGN_RUN_FLAGS, "connect", ...args],
      env: { NO_COLOR: "1" },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#child = child;
    this.#writer = child.stdin.getWriter();
    this.#pump = (async () => {
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        this.stdout += chunk;
      }
    })();
    this.#stderr = new Response(child.stderr).text();
  }

  /** Waits (bounded) until stdout matches. */
  async waitFor(pattern: RegExp, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test(this.stdout)) {
      if (Date.now() > deadline) throw new Error(`no ${pattern} in: ${this.stdout}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  type(text: string): Promise<void> {
    return this.#writer.write(new TextEncoder().encode(text));
  }

  endInput(): Promise<void> {
    return this.#writer.close();
  }

  signal(signal: Deno.Signal): void {
    this.#child.kill(signal);
  }

  async exit(): Promise<{ code: number; stdout: string; stderr: string }> {
    const status = await this.#child.status;
    await this.#pump;
    await this.#writer.close().catch(() => {});
    return { code: status.code, stdout: this.stdout, stderr: await this.#stderr };
  }
}

Deno.test("interactive connect: server close at once, Ctrl-C close_notify, Ctrl-D, --lang en", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`, "ecdsa-p256");
  await using daemon = await Daemon.start(serveArgs(pki, ["--idle-timeout", "2s"]));
  const client = [`127.0.0.1:${daemon.port()}`, ...clientArgs(pki)];

  // The server closes an idle connection while the prompt waits: said at once, no input needed.
  const idle = new Client(client);
  await idle.waitFor(/메시지> $/);
  await idle.waitFor(/서버가 연결을 닫았습니다/);
  const idleEnd = await idle.exit();
  equal(idleEnd.code, 0, idleEnd.stderr);
  match(idleEnd.stdout, /메시지> \n서버가 연결을 닫았습니다/);

  // Ctrl-C: close_notify, so the server logs a clean close, not a connection error.
  const interrupted = new Client([...client, "--lang", "en"]);
  await interrupted.waitFor(/message> $/);
  match(interrupted.stdout, /^Q-TLS connection established: 127\.0\.0\.1:\d+/);
  await interrupted.type("hello\n");
  await interrupted.waitFor(/← .*\nmessage> $/);
  const errorsBefore = daemon.events.filter((e) => e.event === "connection_error").length;
  const closedBefore = daemon.events.filter((e) => e.event === "closed").length;
  interrupted.signal("SIGINT");
  const interruptedEnd = await interrupted.exit();
  equal(interruptedEnd.code, 130, interruptedEnd.stderr);
  match(interruptedEnd.stdout, /message> \nclosing the connection \(close_notify sent\)\n$/);
  await daemon.waitFor(() =>
    daemon.events.filter((e) => e.event === "closed").length > closedBefore
  );
  equal(daemon.events.filter((e) => e.event === "connection_error").length, errorsBefore);

  // Ctrl-D at the prompt ends its line before qsign exits.
  const eof = new Client(client);
  await eof.waitFor(/메시지> $/);
  await eof.endInput();
  const eofEnd = await eof.exit();
  equal(eofEnd.code, 0, eofEnd.stderr);
  ok(eofEnd.stdout.endsWith("메시지> \n"), JSON.stringify(eofEnd.stdout));
});

Deno.test("a server refusing the client certificate is said in words, before any 'connected'", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`, "ecdsa-p256");
  await using daemon = await Daemon.start(serveArgs(pki, ["--require-pq-auth"]));
  const server = `127.0.0.1:${daemon.port()}`;
  const refused = await runQsign(["connect", server, ...clientArgs(pki), "--send", "hi"]);
  equal(refused.code, 1);
  ok(!/연결 완료|established/.test(refused.stdout), refused.stdout);
  match(
    refused.stderr,
    /^qsign: the client certificate .*client\.crt \(CN=qtls-client\.qsign\.local, O=QSIGN, ECDSA P-256 key\) was not sent: the server asked for signature schemes its key cannot make.*require_pq_auth/,
  );
  equal(refused.stderr.trim().split("\n").length, 1);

  const none = await runQsign([
    "connect",
    server,
    "--servername",
    "localhost",
    "--ca",
    pki.root,
    "--send",
    "hi",
  ]);
  equal(none.code, 1);
  match(none.stderr, /requires a client certificate and none was given: give one with --cert/);

  await using strict = await Daemon.start(serveArgs(pki, ["--allow-cn", "someone-else"]));
  const denied = await runQsign([
    "connect",
    `127.0.0.1:${strict.port()}`,
    ...clientArgs(pki),
    "--send",
    "hi",
  ]);
  equal(denied.code, 1);
  ok(!/연결 완료/.test(denied.stdout), denied.stdout);
  match(
    denied.stderr,
    /did not accept the client certificate .*access policy.*alert access_denied/,
  );
});
