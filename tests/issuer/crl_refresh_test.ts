/**
 * CRLs cannot expire unnoticed: the daemon publishes `qtls_crl_next_update_seconds` and the CRLs
 * in `/status`, `/readyz` fails naming an expired CRL (after `crl_grace`), `--check-config`
 * refuses an expired CRL and warns of one close to expiry, and `qsign renew` refreshes `[[crl]]`
 * files (re-signed by the embedded CA, or fetched from a distribution point on 127.0.0.1 and
 * accepted only when signed by the issuer, current and not older), which the daemon reloads.
 */
import { deepEqual, equal, match, ok } from "node:assert/strict";
import "reflect-metadata";
import { X509Crl } from "@peculiar/x509";
import { generateCrl, PKI_FILES } from "../../src/pki/ca.ts";
import { pemEncode } from "../../src/pki/pem.ts";
import { runQsign, tempDir } from "../support/env.ts";
import {
  Daemon,
  exchange,
  httpGet,
  makePki,
  type Pki,
  qsignClient,
  sampleValue,
  scrapeMetrics,
} from "../daemon/support.ts";

const DAY_MS = 24 * 3600 * 1000;

/** Writes a CRL of the PKI's `profile` CA that was issued `agoMs` ago with `days` validity. */
async function writeCrl(
  pki: Pki,
  path: string,
  options: { profile?: "client" | "server" | "root"; agoMs?: number; days?: number } = {},
): Promise<X509Crl> {
  const der = await generateCrl({
    dir: pki.dir,
    profile: options.profile ?? "client",
    days: options.days ?? 7,
    now: new Date(Date.now() - (options.agoMs ?? 0)),
  });
  await Deno.writeTextFile(path, pemEncode("X509 CRL", der));
  return new X509Crl(der.slice());
}

/** A qsign.toml: one echo service checking client leaves against `crl`, plus `extra`. */
async function writeConfig(dir: string, pki: Pki, crl: string, extra = ""): Promise<string> {
  const file = `${dir}/qsign.toml`;
  await Deno.writeTextFile(
    file,
    `metrics_listen = "127.0.0.1:0"

[renewal]
ca_dir = "${pki.dir}"

[[service]]
name = "edge"
listen = "127.0.0.1:0"
cert = "${pki.serverCert}"
key = "${pki.serverKey}"
ca = "${pki.root}"
crl = "${crl}"
crl_check = "leaf"
${extra}`,
  );
  return file;
}

const seconds = (date: Date) => Math.floor(date.getTime() / 1000);

Deno.test("a CRL close to expiry: metric, /status, --check-config warning; qsign renew re-signs it", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  const crlPath = `${dir.path}/client-ca.crl`;
  // Issued 6 days and 23 hours ago for 7 days: an hour left.
  const old = await writeCrl(pki, crlPath, { agoMs: 7 * DAY_MS - 3600_000 });
  const config = await writeConfig(
    dir.path,
    pki,
    crlPath,
    `\n[[crl]]\nfile = "${crlPath}"\nca = "client"\ndays = 7\n`,
  );

  const checked = await runQsign(["serve", "--config", config, "--check-config"]);
  equal(checked.code, 0, checked.stderr);
  match(
    checked.stderr,
    new RegExp(`warning: service edge: ${crlPath}: the CRL of .*CN=.* expires`),
  );
  match(checked.stderr, /qsign renew/);

  await using daemon = await Daemon.start(["--config", config]);
  const metrics = await scrapeMetrics(daemon);
  equal(
    sampleValue(metrics, "qtls_crl_next_update_seconds", { service: "edge", crl: crlPath }),
    seconds(old.nextUpdate!),
  );
  const status = JSON.parse((await httpGet(`http://127.0.0.1:${daemon.metricsPort}/status`)).body);
  deepEqual(status.services[0].crls, [{
    file: crlPath,
    issuer: old.issuer,
    this_update: old.thisUpdate.toISOString(),
    next_update: old.nextUpdate!.toISOString(),
  }]);

  const planned = await runQsign(["renew", "--config", config, "--dry-run"]);
  equal(planned.code, 0, planned.stderr);
  const plan = JSON.parse(planned.stdout.trim().split("\n").at(-1)!);
  deepEqual([plan.crl, plan.result, plan.reason], [crlPath, "due", "expiring"]);
  equal(plan.next_update, old.nextUpdate!.toISOString());
  equal(
    await Deno.readTextFile(crlPath),
    pemEncode("X509 CRL", new Uint8Array(old.rawData)),
    "--dry-run writes nothing",
  );

  const renewed = await runQsign(["renew", "--config", config]);
  equal(renewed.code, 0, renewed.stderr);
  const line = JSON.parse(renewed.stdout.trim().split("\n").at(-1)!);
  deepEqual([line.crl, line.source, line.result, line.reason], [
    crlPath,
    "local",
    "refreshed",
    "expiring",
  ]);
  const fresh = new X509Crl(await Deno.readTextFile(crlPath));
  equal(line.next_update, fresh.nextUpdate!.toISOString());
  ok(fresh.nextUpdate!.getTime() - Date.now() > 6 * DAY_MS, "valid for another 7 days");

  // No pid file: the daemon's watch sees the rename and reloads the CRL.
  await daemon.waitFor((e) => e.event === "reload_ok");
  equal(
    sampleValue(await scrapeMetrics(daemon), "qtls_crl_next_update_seconds", { service: "edge" }),
    seconds(fresh.nextUpdate!),
  );
  const tls = await qsignClient(pki, daemon.port());
  match(await exchange(tls, "hi"), /세션 #1/);
  await tls.close();

  // A second run finds it fresh and leaves it alone.
  const again = await runQsign(["renew", "--config", config]);
  equal(again.code, 0, again.stderr);
  equal(JSON.parse(again.stdout.trim().split("\n").at(-1)!).result, "fresh");
  equal(await Deno.readTextFile(crlPath), pemEncode("X509 CRL", new Uint8Array(fresh.rawData)));
});

Deno.test("an expired CRL: --check-config fails, /readyz 503 names it (after crl_grace), renew fixes it", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  const crlPath = `${dir.path}/client-ca.crl`;
  const expired = await writeCrl(pki, crlPath, { agoMs: 8 * DAY_MS });
  const config = await writeConfig(
    dir.path,
    pki,
    crlPath,
    `\n[[crl]]\nfile = "${crlPath}"\nca = "client"\n`,
  );

  const checked = await runQsign(["serve", "--config", config, "--check-config"]);
  equal(checked.code, 2, checked.stderr);
  match(
    checked.stderr,
    new RegExp(`${crlPath}: the CRL of .* expired at ${expired.nextUpdate!.toISOString()}`),
  );
  ok(!checked.stdout.includes("configuration OK"), checked.stdout);

  await using daemon = await Daemon.start(["--config", config]);
  const readyz = `http://127.0.0.1:${daemon.metricsPort}/readyz`;
  const notReady = await httpGet(readyz);
  equal(notReady.status, 503);
  match(notReady.body, new RegExp(`crls: service edge: CRL ${crlPath} \\(.*\\) expired at`));
  // Every client whose leaf needs that CRL is refused meanwhile.
  let reply = "";
  try {
    const tls = await qsignClient(pki, daemon.port());
    try {
      reply = await exchange(tls, "x");
    } finally {
      await tls.close().catch(() => {});
    }
  } catch {
    // Refused with an alert, as expected.
  }
  ok(!reply.includes("QSIGN"), `a client was admitted against an expired CRL: ${reply}`);
  await daemon.waitFor((e) => e.event === "handshake_failed");

  const renewed = await runQsign(["renew", "--config", config]);
  equal(renewed.code, 0, renewed.stderr);
  equal(JSON.parse(renewed.stdout.trim().split("\n").at(-1)!).result, "refreshed");
  await daemon.waitFor((e) => e.event === "reload_ok");
  deepEqual(await httpGet(readyz), { status: 200, body: "ready\n" });
  await stopped(daemon);

  // With a grace longer than it is overdue, readiness holds.
  await writeCrl(pki, crlPath, { agoMs: 7 * DAY_MS + 60_000 });
  const graced = await writeConfig(dir.path, pki, crlPath, `crl_grace = "1h"\n`);
  await using lenient = await Daemon.start(["--config", graced]);
  equal((await httpGet(`http://127.0.0.1:${lenient.metricsPort}/readyz`)).status, 200);
});

async function stopped(daemon: Daemon): Promise<void> {
  equal((await daemon.stop()).code, 0);
}

/** A distribution point on 127.0.0.1 answering whatever `body()` gives (or its status). */
function distributionPoint(body: () => Uint8Array | number) {
  const listening = Promise.withResolvers<number>();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: ({ port }) => listening.resolve(port),
  }, () => {
    const answer = body();
    return typeof answer === "number"
      ? new Response("no", { status: answer })
      : new Response(answer as Uint8Array<ArrayBuffer>, {
        headers: { "content-type": "application/pkix-crl" },
      });
  });
  return { server, port: listening.promise };
}

Deno.test("a fetched CRL replaces the file only when signed by the issuer, current and newer", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  const crlPath = `${dir.path}/client-ca.crl`;
  const issuer = `${pki.dir}/${PKI_FILES.clientCaCert}`;
  const original = await writeCrl(pki, crlPath, { agoMs: 7 * DAY_MS - 3600_000 });
  const originalText = await Deno.readTextFile(crlPath);
  let served: Uint8Array | number = 404;
  const point = distributionPoint(() => served);
  const port = await point.port;
  try {
    const config = await writeConfig(
      dir.path,
      pki,
      crlPath,
      `\n[[crl]]\nname = "client-ca"\nfile = "${crlPath}"\n` +
        `url = "http://127.0.0.1:${port}/client-ca.crl"\nissuer = "${issuer}"\n`,
    );
    const run = async () => {
      const result = await runQsign(["renew", "--config", config]);
      return { ...result, line: JSON.parse(result.stdout.trim().split("\n").at(-1)!) };
    };
    const der = async (options: Parameters<typeof writeCrl>[2]) => {
      const scratch = `${dir.path}/scratch.crl`;
      return new Uint8Array((await writeCrl(pki, scratch, options)).rawData);
    };

    const refused: [string, Uint8Array | number, RegExp][] = [
      ["HTTP 404", 404, /HTTP 404/],
      ["not a CRL", new TextEncoder().encode("hello"), /not a CRL|no X509 CRL/],
      ["signed by another CA", await der({ profile: "server" }), /not signed by a certificate in/],
      ["expired", await der({ agoMs: 8 * DAY_MS }), /expired at/],
      [
        "older than the file",
        await der({ agoMs: 7 * DAY_MS - 1800_000, days: 8 }),
        /is older than/,
      ],
    ];
    for (const [what, body, expected] of refused) {
      served = body;
      const { code, line } = await run();
      equal(code, 1, what);
      equal(line.crl, "client-ca");
      equal(line.result, "failed", what);
      match(line.error, expected, what);
      equal(line.next_update, original.nextUpdate!.toISOString(), what);
      equal(await Deno.readTextFile(crlPath), originalText, `${what}: the file is kept`);
    }

    // DER, as distribution points serve it: accepted, written as PEM.
    const good = await der({});
    served = good;
    const { code, line, stderr } = await run();
    equal(code, 0, stderr);
    deepEqual([line.source, line.result, line.reason], ["url", "refreshed", "expiring"]);
    equal(await Deno.readTextFile(crlPath), pemEncode("X509 CRL", good));
  } finally {
    await point.server.shutdown();
  }
});

Deno.test("[[crl]] tables: ca or url, issuer with url, ca_dir with ca", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  const crlPath = `${dir.path}/c.crl`;
  await writeCrl(pki, crlPath);
  const cases: [string, RegExp][] = [
    [`[[crl]]\nfile = "${crlPath}"\n`, /crl\[0\]: give either ca .* or url/],
    [
      `[[crl]]\nfile = "${crlPath}"\nca = "client"\nurl = "http://127.0.0.1/x"\n`,
      /crl\[0\]: give either ca/,
    ],
    [`[[crl]]\nfile = "${crlPath}"\nurl = "http://127.0.0.1/x"\n`, /crl\[0\]\.issuer: is required/],
    [`[[crl]]\nfile = "${crlPath}"\nurl = "ftp://x/y"\nissuer = "a"\n`, /crl\[0\]\.url: must be/],
    [`[[crl]]\nfile = "${crlPath}"\nca = "intermediate"\n`, /crl\[0\]\.ca: must be one of/],
  ];
  for (const [table, expected] of cases) {
    const config = await writeConfig(dir.path, pki, crlPath, `\n${table}`);
    const result = await runQsign(["renew", "--config", config]);
    equal(result.code, 2, `${table}\n${result.stderr}`);
    match(result.stderr, expected);
  }
});
