/**
 * The shipped log configuration with the real parts: Debian's rsyslogd runs
 * deploy/rsyslog/qtls.conf on a test socket, and a real qsign audit line, sent under the unit's
 * SyslogIdentifier, lands intact in the audit file and decoded in the fields file. Filebeat is
 * not packaged for Debian, so its configuration is checked for what it must agree on with the
 * rsyslog one.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { parse as parseYaml } from "yaml";
import { type AuditEvent, clientArgs, Daemon, makePki, serveArgs } from "../daemon/support.ts";
import { ROOT, runQsign, tempDir } from "../support/env.ts";

const SHIPPED = `${ROOT}/deploy/rsyslog/qtls.conf`;
const SHIPPED_LOG_DIR = "/var/log/qsign/";
const IDENTIFIER = "qsign-qtls";

/** rsyslogd with the shipped rules, reading a test socket and writing under `dir`/out. */
async function rsyslogConfig(dir: string): Promise<{ main: string; socket: string; out: string }> {
  const shipped = await Deno.readTextFile(SHIPPED);
  ok(shipped.includes(SHIPPED_LOG_DIR), `${SHIPPED} writes under ${SHIPPED_LOG_DIR}`);
  const out = `${dir}/out/`;
  await Deno.mkdir(`${dir}/work`, { recursive: true });
  await Deno.writeTextFile(`${dir}/qtls.conf`, shipped.replaceAll(SHIPPED_LOG_DIR, out));
  const socket = `${dir}/log.sock`;
  const main = `${dir}/rsyslog.conf`;
  await Deno.writeTextFile(
    main,
    [
      `global(workDirectory="${dir}/work")`,
      `module(load="imuxsock" SysSock.Use="off")`,
      `input(type="imuxsock" Socket="${socket}")`,
      `include(file="${dir}/qtls.conf")`,
    ].join("\n") + "\n",
  );
  return { main, socket, out };
}

async function run(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdin: "null" }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  ok(out.success, `${cmd} ${args.join(" ")}:\n${text}`);
  return text;
}

/** A real handshake_ok line from a running daemon. */
async function auditLine(dir: string): Promise<AuditEvent> {
  const pki = await makePki(`${dir}/pki`);
  await using daemon = await Daemon.start(serveArgs(pki));
  const client = await runQsign([
    "connect",
    `127.0.0.1:${daemon.port()}`,
    ...clientArgs(pki),
    ...["--send", "hello syslog"],
  ]);
  equal(client.code, 0, client.stderr);
  return await daemon.waitFor((e) => e.event === "handshake_ok");
}

async function waitForFile(path: string, timeoutMs = 10_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const text = await Deno.readTextFile(path).catch(() => "");
    if (text.includes("\n")) return text;
    if (Date.now() > deadline) throw new Error(`${path} not written within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

Deno.test("rsyslogd -N1 validates the shipped qtls.conf", async () => {
  await using dir = await tempDir("qsign-rsyslog-check-");
  const { main } = await rsyslogConfig(dir.path);
  const text = await run("rsyslogd", ["-N1", "-f", main]);
  ok(!/error/i.test(text), text);
});

Deno.test("a qsign audit line reaches the audit file intact and the fields file decoded", async () => {
  await using dir = await tempDir("qsign-rsyslog-");
  const event = await auditLine(dir.path);
  // qsign writes compact JSON, one object a line: this is the line as it left the daemon.
  const line = JSON.stringify(event);
  const { main, socket, out } = await rsyslogConfig(dir.path);
  const rsyslogd = new Deno.Command("rsyslogd", {
    args: ["-n", "-f", main, "-i", `${dir.path}/rsyslogd.pid`],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  try {
    const deadline = Date.now() + 10_000;
    while (!(await Deno.stat(socket).catch(() => undefined))) {
      ok(Date.now() < deadline, "rsyslogd created its socket");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    // Another program's line must not reach qsign's files.
    await run("logger", ["-u", socket, "-t", "other-daemon", "--", '{"event":"not qsign"}']);
    await run("logger", ["-u", socket, "-t", IDENTIFIER, "--size", "65536", "--", line]);

    const audit = await waitForFile(`${out}qtls.log`);
    equal(audit, line + "\n");
    const fields = JSON.parse(await waitForFile(`${out}qtls-fields.json`));
    deepEqual(fields.qsign, event);
    equal(typeof fields.received, "string");
  } finally {
    rsyslogd.kill("SIGTERM");
    await rsyslogd.output();
  }
});

Deno.test("Filebeat reads the file rsyslog writes and decodes qsign's fields", async () => {
  const rsyslog = await Deno.readTextFile(SHIPPED);
  const filebeat = parseYaml(await Deno.readTextFile(`${ROOT}/deploy/filebeat/filebeat.yml`));
  const [input] = filebeat["filebeat.inputs"];
  const auditFile = /file="([^"]+qtls\.log)"/.exec(rsyslog)?.[1];
  ok(auditFile, "the rsyslog config writes an audit file");
  deepEqual(input.paths, [auditFile]);
  equal(input.parsers[0].ndjson.target, "qsign");
  const timestamp = filebeat.processors.find((p: Record<string, unknown>) => p.timestamp);
  equal(timestamp.timestamp.field, "qsign.ts");
});

Deno.test("the unit names its log lines as the rsyslog rules expect", async () => {
  const unit = await Deno.readTextFile(`${ROOT}/systemd/qsign-qtls.service`);
  ok(unit.includes(`SyslogIdentifier=${IDENTIFIER}`), "qsign-qtls.service sets SyslogIdentifier");
  ok((await Deno.readTextFile(SHIPPED)).includes(`$programname == "${IDENTIFIER}"`));
});
