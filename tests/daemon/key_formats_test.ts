/**
 * `qsign serve` and `qsign connect` take the key formats OpenSSL users have: a SEC1 key, an
 * encrypted PKCS#8 key with `--key-passphrase`, and a PKCS#12 bundle as both --cert and --key.
 */
import { equal, match } from "node:assert/strict";
import { clientArgs, Daemon, makePki, serveArgs } from "./support.ts";
import { runQsign, tempDir } from "../support/env.ts";

const PASS = "s3cret passphrase";

async function openssl(args: string[], cwd: string): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd, stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
}

Deno.test("serve with a SEC1 key and connect with an encrypted key, then both from PKCS#12", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`, "ecdsa-p256");
  const d = pki.dir;
  await openssl(["ec", "-in", pki.serverKey, "-out", "server.sec1"], d);
  await openssl([
    "pkcs8",
    "-topk8",
    "-v2",
    "aes-256-cbc",
    "-in",
    pki.clientKey,
    "-passout",
    `pass:${PASS}`,
    "-out",
    "client.enc",
  ], d);
  match(await Deno.readTextFile(`${d}/server.sec1`), /BEGIN EC PRIVATE KEY/);
  const env = { KEY_PASS: PASS };
  {
    await using daemon = await Daemon.start(
      serveArgs(pki, [], { cert: pki.serverCert, key: `${d}/server.sec1` }),
    );
    const client = [
      `127.0.0.1:${daemon.port()}`,
      ...clientArgs(pki, { cert: pki.clientCert, key: `${d}/client.enc` }),
    ];
    const without = await runQsign(["connect", ...client, "--send", "x"]);
    equal(without.code, 2);
    match(
      without.stderr,
      /client\.enc: is an encrypted private key: give its passphrase with key_passphrase/,
    );
    const one = await runQsign(
      ["connect", ...client, "--key-passphrase", "env:KEY_PASS", "--send", "hello"],
      { env },
    );
    equal(one.code, 0, one.stderr);
    match(one.stdout, /hello/);
  }
  // One PKCS#12 bundle holding key, leaf and intermediate: --cert and --key both name it.
  await openssl([
    "pkcs12",
    "-export",
    "-inkey",
    pki.serverKey,
    "-in",
    pki.serverCert,
    "-passout",
    `pass:${PASS}`,
    "-out",
    "server.p12",
  ], d);
  const p12 = `${d}/server.p12`;
  const check = await runQsign(
    [
      "serve",
      ...serveArgs(pki, ["--key-passphrase", "env:KEY_PASS", "--check-config"], {
        cert: p12,
        key: p12,
      }),
    ],
    { env },
  );
  equal(check.code, 0, check.stderr);
  match(check.stdout, /CN=qtls-server\.qsign\.local/);
  await using daemon = await Daemon.start(
    serveArgs(pki, ["--key-passphrase", "env:KEY_PASS"], { cert: p12, key: p12 }),
    { env },
  );
  const one = await runQsign([
    "connect",
    `127.0.0.1:${daemon.port()}`,
    ...clientArgs(pki),
    "--send",
    "p12",
  ]);
  equal(one.code, 0, one.stderr);
  match(one.stdout, /p12/);
});
