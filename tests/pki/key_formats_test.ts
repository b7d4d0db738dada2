/**
 * Key files as OpenSSL (the system's 3.0) and other tools write them load unchanged: PKCS#8,
 * SEC1, PKCS#1, encrypted PKCS#8 (PBKDF2 and scrypt), PKCS#12; what stays refused is named with
 * the command that converts it. Keys qsign encrypts are read back by OpenSSL 3.5 (Node 26) and
 * the system's OpenSSL.
 */
import "reflect-metadata";
import { deepEqual, equal, match, ok, rejects } from "node:assert/strict";
import {
  encryptedPrivateKeyPem,
  generateKeyPair,
  KeyFileError,
  parsePrivateKey,
  readPrivateKeyFile,
  writePrivateKeyFile,
} from "../../src/pki/keys.ts";
import { decodeKeyFile, PBKDF2_ITERATIONS } from "../../src/pki/key_formats.ts";
import { pemDecodeAll } from "../../src/pki/pem.ts";
import { PEER_NODE, tempDir } from "../support/env.ts";

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const PASS = "correct horse battery staple";
const passphrase = () => Promise.resolve(PASS);

async function openssl(args: string[], cwd: string): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd, stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(`openssl ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** The public key OpenSSL derives from a key file, as SPKI DER (hex). */
async function opensslSpki(path: string, cwd: string, pass?: string): Promise<string> {
  const out = await new Deno.Command("openssl", {
    args: [
      "pkey",
      "-in",
      path,
      "-pubout",
      "-outform",
      "DER",
      ...(pass ? ["-passin", `pass:${pass}`] : []),
    ],
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  return hex(out.stdout);
}

const GENERATED: { name: string; block: string; make: string[][]; pass?: string }[] = [
  {
    name: "openssl genpkey EC P-256",
    block: "PRIVATE KEY",
    make: [["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "k"]],
  },
  {
    name: "openssl ecparam -genkey P-384 (EC PARAMETERS + EC PRIVATE KEY)",
    block: "EC PRIVATE KEY",
    make: [["ecparam", "-genkey", "-name", "secp384r1", "-out", "k"]],
  },
  {
    name: "openssl ecparam -genkey -noout P-256",
    block: "EC PRIVATE KEY",
    make: [["ecparam", "-genkey", "-noout", "-name", "prime256v1", "-out", "k"]],
  },
  {
    name: "openssl genrsa -traditional (PKCS#1)",
    block: "RSA PRIVATE KEY",
    make: [["genrsa", "-traditional", "-out", "k", "2048"]],
  },
  {
    name: "openssl req -newkey rsa:2048 -nodes",
    block: "PRIVATE KEY",
    make: [[
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "k",
      "-subj",
      "/CN=x",
      "-out",
      "csr",
    ]],
  },
  {
    name: "openssl req -newkey ec P-384 -nodes",
    block: "PRIVATE KEY",
    make: [[
      "req",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-384",
      "-nodes",
      "-keyout",
      "k",
      "-subj",
      "/CN=x",
      "-out",
      "csr",
    ]],
  },
  {
    name: "openssl genpkey ed25519",
    block: "PRIVATE KEY",
    make: [["genpkey", "-algorithm", "ed25519", "-out", "k"]],
  },
  {
    name: "openssl genpkey -aes-256-cbc (PBES2, PBKDF2-HMAC-SHA256)",
    block: "ENCRYPTED PRIVATE KEY",
    pass: PASS,
    make: [[
      "genpkey",
      "-algorithm",
      "EC",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-aes-256-cbc",
      "-pass",
      `pass:${PASS}`,
      "-out",
      "k",
    ]],
  },
  {
    name: "openssl req -newkey with a passphrase (PBES2)",
    block: "ENCRYPTED PRIVATE KEY",
    pass: PASS,
    make: [[
      "req",
      "-newkey",
      "rsa:2048",
      "-passout",
      `pass:${PASS}`,
      "-keyout",
      "k",
      "-subj",
      "/CN=x",
      "-out",
      "csr",
    ]],
  },
  {
    name: "openssl pkcs8 -topk8 -scrypt",
    block: "ENCRYPTED PRIVATE KEY",
    pass: PASS,
    make: [
      ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", "plain"],
      ["pkcs8", "-topk8", "-scrypt", "-in", "plain", "-passout", `pass:${PASS}`, "-out", "k"],
    ],
  },
  {
    name: "openssl pkcs8 -topk8 -v2 aes-128-cbc -v2prf hmacWithSHA512, DER",
    block: "DER",
    pass: PASS,
    make: [
      ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "plain"],
      [
        "pkcs8",
        "-topk8",
        "-v2",
        "aes-128-cbc",
        "-v2prf",
        "hmacWithSHA512",
        "-in",
        "plain",
        "-passout",
        `pass:${PASS}`,
        "-outform",
        "DER",
        "-out",
        "k",
      ],
    ],
  },
];

for (const g of GENERATED) {
  Deno.test(`${g.name}: loads unchanged, the same key OpenSSL sees`, async () => {
    await using dir = await tempDir();
    for (const args of g.make) await openssl(args, dir.path);
    const path = `${dir.path}/k`;
    if (g.block !== "DER") {
      match(await Deno.readTextFile(path), new RegExp(`-----BEGIN ${g.block}-----`));
    }
    const key = await readPrivateKeyFile(path, g.pass ? passphrase : undefined);
    equal(hex(key.spki), await opensslSpki(path, dir.path, g.pass));
    // It signs.
    ok((await key.sign(new Uint8Array([1, 2, 3]))).length > 0);
  });
}

Deno.test("an encrypted key without a passphrase, or with a wrong one, is refused naming the file", async () => {
  await using dir = await tempDir();
  await openssl(GENERATED[7].make[0], dir.path);
  const path = `${dir.path}/k`;
  await rejects(
    readPrivateKeyFile(path),
    (e: KeyFileError) =>
      e.exitCode === 2 && e.message.startsWith(path) && /passphrase/.test(e.message),
  );
  await rejects(
    readPrivateKeyFile(path, () => Promise.resolve("wrong")),
    (e: KeyFileError) => e instanceof KeyFileError && /wrong passphrase/.test(e.message),
  );
});

Deno.test("a PKCS#12 bundle (openssl pkcs12 -export) gives its key and its chain, leaf first", async () => {
  await using dir = await tempDir();
  const d = dir.path;
  await openssl([
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    "ca.key",
    "-subj",
    "/CN=P12 CA",
    "-days",
    "2",
    "-out",
    "ca.crt",
  ], d);
  await openssl([
    "req",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    "leaf.key",
    "-subj",
    "/CN=leaf",
    "-out",
    "leaf.csr",
  ], d);
  await openssl([
    "x509",
    "-req",
    "-in",
    "leaf.csr",
    "-CA",
    "ca.crt",
    "-CAkey",
    "ca.key",
    "-days",
    "1",
    "-out",
    "leaf.crt",
  ], d);
  await openssl([
    "pkcs12",
    "-export",
    "-inkey",
    "leaf.key",
    "-in",
    "leaf.crt",
    "-certfile",
    "ca.crt",
    "-passout",
    `pass:${PASS}`,
    "-out",
    "b.p12",
  ], d);
  const bytes = await Deno.readFile(`${d}/b.p12`);
  const decoded = await decodeKeyFile(bytes, "b.p12", passphrase);
  equal(decoded.format, "PKCS#12");
  const leaf = pemDecodeAll(await Deno.readTextFile(`${d}/leaf.crt`))[0];
  const ca = pemDecodeAll(await Deno.readTextFile(`${d}/ca.crt`))[0];
  deepEqual(decoded.certificates.map(hex), [hex(leaf), hex(ca)]);
  const key = await readPrivateKeyFile(`${d}/b.p12`, passphrase);
  equal(hex(key.spki), await opensslSpki("leaf.key", d));
  // The MAC is checked: a wrong passphrase is refused before anything is decrypted.
  await rejects(
    decodeKeyFile(bytes, "b.p12", () => Promise.resolve("wrong")),
    (e: Error) => /MAC does not verify/.test(e.message),
  );
  // A legacy (3DES) bundle is named, with the command that re-exports it.
  await openssl([
    "pkcs12",
    "-export",
    "-keypbe",
    "PBE-SHA1-3DES",
    "-certpbe",
    "PBE-SHA1-3DES",
    "-inkey",
    "leaf.key",
    "-in",
    "leaf.crt",
    "-passout",
    `pass:${PASS}`,
    "-out",
    "old.p12",
  ], d);
  await rejects(
    readPrivateKeyFile(`${d}/old.p12`, passphrase),
    (e: Error) => /legacy PKCS#12/.test(e.message) && /openssl pkcs12 -export/.test(e.message),
  );
});

Deno.test("still-refused formats name the block found and the converting command", async () => {
  await using dir = await tempDir();
  const d = dir.path;
  await openssl([
    "genrsa",
    "-traditional",
    "-aes256",
    "-passout",
    `pass:${PASS}`,
    "-out",
    "legacy.key",
    "2048",
  ], d);
  await rejects(
    readPrivateKeyFile(`${d}/legacy.key`, passphrase),
    (e: Error) =>
      /"RSA PRIVATE KEY"/.test(e.message) && /DEK-Info/.test(e.message) &&
      /openssl pkcs8 -topk8/.test(e.message),
  );
  await Deno.writeTextFile(
    `${d}/ssh.key`,
    "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
  );
  await rejects(
    readPrivateKeyFile(`${d}/ssh.key`),
    (e: Error) =>
      /"OPENSSH PRIVATE KEY"/.test(e.message) && /ssh-keygen -p -m PKCS8/.test(e.message),
  );
  await openssl([
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    "k",
    "-subj",
    "/CN=x",
    "-days",
    "1",
    "-out",
    "c.crt",
  ], d);
  await rejects(
    readPrivateKeyFile(`${d}/c.crt`),
    (e: Error) =>
      /"CERTIFICATE"/.test(e.message) && /openssl pkcs8 -topk8 -nocrypt/.test(e.message),
  );
  await openssl([
    "pkcs8",
    "-topk8",
    "-v1",
    "PBE-SHA1-3DES",
    "-in",
    "k",
    "-passout",
    `pass:${PASS}`,
    "-out",
    "v1.key",
  ], d);
  await rejects(
    readPrivateKeyFile(`${d}/v1.key`, passphrase),
    (e: Error) => /old scheme/.test(e.message) && /-v2 aes-256-cbc/.test(e.message),
  );
});

Deno.test("a key qsign encrypts (PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC) is read by OpenSSL 3.5 and 3.0", async () => {
  await using dir = await tempDir();
  const key = await generateKeyPair("ecdsa-p384");
  const path = `${dir.path}/ca.key`;
  await writePrivateKeyFile(path, key, PASS);
  equal((await Deno.stat(path)).mode! & 0o777, 0o600);
  const text = await Deno.readTextFile(path);
  ok(text.startsWith("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"));
  // The parameters OpenSSL reports: PBES2, PBKDF2 with SHA-256 and our count, AES-256-CBC.
  const parsed = await new Deno.Command("openssl", {
    args: ["asn1parse", "-in", path],
    stdout: "piped",
  }).output();
  const asn1 = new TextDecoder().decode(parsed.stdout);
  for (const word of ["PBES2", "PBKDF2", "hmacWithSHA256", "aes-256-cbc"]) {
    match(asn1, new RegExp(word));
  }
  match(asn1, new RegExp(`INTEGER\\s*:0*${PBKDF2_ITERATIONS.toString(16).toUpperCase()}`));
  equal(await opensslSpki(path, dir.path, PASS), hex(key.spki));
  // Node 26 (OpenSSL 3.5).
  const script = `const c=require("node:crypto");const fs=require("node:fs");` +
    `const k=c.createPrivateKey({key:fs.readFileSync(process.argv[1]),passphrase:process.argv[2]});` +
    `process.stdout.write(c.createPublicKey(k).export({type:"spki",format:"der"}).toString("hex"))`;
  const node = await new Deno.Command(PEER_NODE, {
    args: ["-e", script, path, PASS],
    stdout: "piped",
    stderr: "piped",
  }).output();
  equal(new TextDecoder().decode(node.stderr), "");
  equal(new TextDecoder().decode(node.stdout), hex(key.spki));
  // And by qsign, from the PEM text alone.
  equal(
    hex((await parsePrivateKey(await encryptedPrivateKeyPem(key, PASS), "x", passphrase)).spki),
    hex(key.spki),
  );
});

Deno.test("a combined PEM (stunnel's cert = file.pem: certificate and key) serves as the key", async () => {
  await using dir = await tempDir();
  await openssl([
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    "k",
    "-subj",
    "/CN=stunnel",
    "-days",
    "1",
    "-out",
    "c",
  ], dir.path);
  const combined = `${dir.path}/stunnel.pem`;
  await Deno.writeTextFile(
    combined,
    (await Deno.readTextFile(`${dir.path}/c`)) + (await Deno.readTextFile(`${dir.path}/k`)),
  );
  const key = await readPrivateKeyFile(combined);
  equal(hex(key.spki), await opensslSpki("k", dir.path));
});
