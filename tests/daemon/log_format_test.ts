/**
 * `--log-format text`: the audit events as `time LEVEL event key=value…` lines for a terminal,
 * one line each, values quoted where they are not a bare word; JSON stays the default.
 */
import { equal, match, ok } from "node:assert/strict";
import { audit, setLogFormat, setLogSink } from "../../src/observe/log.ts";
import { DENO, QSIGN_RUN_FLAGS, runQsign, tempDir } from "../support/env.ts";
import { makePki, serveArgs } from "./support.ts";

Deno.test("--log-format text writes one key=value line per event", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  const child = new Deno.Command(DENO, {
    args: [...QSIGN_RUN_FLAGS, "serve", ...serveArgs(pki, ["--log-format", "text"])],
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const lines: string[] = [];
  try {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const deadline = setTimeout(() => child.kill("SIGKILL"), 30_000);
    let text = "";
    while (!/ ready/.test(text)) {
      const { done, value } = await reader.read();
      if (done) break;
      text += value;
    }
    clearTimeout(deadline);
    lines.push(...text.split("\n").filter(Boolean));
    await reader.cancel();
  } finally {
    child.kill("SIGTERM");
    await child.status;
  }
  const listening = lines.find((l) => / listening /.test(l));
  ok(listening, lines.join("\n"));
  match(
    listening,
    /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO {2}listening service=default address=127\.0\.0\.1:\d+/,
  );
  for (const line of lines) ok(!line.startsWith("{"), `not JSON: ${line}`);
});

Deno.test("text lines quote values that are not a bare word, so each stays one word", () => {
  const written: string[] = [];
  const previous = setLogSink((line) => written.push(line));
  setLogFormat("text");
  try {
    audit.warn("handshake_failed", {
      peer: "[::1]:443",
      error: 'sent alert unknown_ca (no "trusted" issuer)\nsecond line',
      count: 3,
      pin: "1234",
    });
  } finally {
    setLogFormat("json");
    setLogSink(previous);
  }
  equal(written.length, 1);
  match(
    written[0],
    /Z WARN {2}handshake_failed peer="\[::1\]:443" error="sent alert unknown_ca \(no \\"trusted\\" issuer\)\\nsecond line" count=3 pin="\[redacted\]"$/,
  );
});

Deno.test("an unknown --log-format is a usage error naming the choices", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  const out = await runQsign([
    "serve",
    ...serveArgs(pki, ["--log-format", "xml", "--check-config"]),
  ]);
  equal(out.code, 2);
  match(out.stderr, /json/);
  match(out.stderr, /text/);
});
