/** Key generation and PKCS#8 PEM files for every `--alg`. */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { equal, ok, rejects } from "node:assert/strict";
import { createCertificate } from "../../src/pki/certificate.ts";
import { verifySignature } from "../../src/pki/signatures.ts";
import {
  generateKeyPair,
  KEY_ALGORITHMS,
  keyAlgorithmOfSpki,
  KeyFileError,
  readPrivateKeyFile,
  writePrivateKeyFile,
} from "../../src/pki/keys.ts";
import { tempDir } from "../support/env.ts";

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

for (const alg of KEY_ALGORITHMS) {
  Deno.test(`${alg}: a key written as PKCS#8 PEM (0600) reads back as the same key`, async () => {
    await using dir = await tempDir();
    const key = await generateKeyPair(alg);
    equal(keyAlgorithmOfSpki(key.spki), alg);
    const path = `${dir.path}/k.key`;
    await writePrivateKeyFile(path, key);
    equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    const text = await Deno.readTextFile(path);
    ok(text.startsWith("-----BEGIN PRIVATE KEY-----\n"), text.slice(0, 40));
    const again = await readPrivateKeyFile(path);
    equal(again.keyAlgorithm, alg);
    equal(hex(again.spki), hex(key.spki));
    // The reloaded key signs what the original key's public half verifies.
    const cert = await createCertificate({
      subject: "CN=reloaded",
      spki: key.spki,
      signer: again,
      notBefore: new Date(),
      notAfter: new Date(Date.now() + 3600_000),
      keyUsage: x509.KeyUsageFlags.digitalSignature,
    });
    ok(await verifySignature(cert, cert.publicKey));
  });
}

Deno.test("a file that is not a PKCS#8 key is refused naming the file (exit status 2)", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/bad.key`;
  await Deno.writeTextFile(path, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
  await rejects(readPrivateKeyFile(path), KeyFileError);
  await rejects(
    readPrivateKeyFile(`${dir.path}/missing.key`),
    (e: Error) => e.message.includes("missing.key"),
  );
  await rejects(
    readPrivateKeyFile(path),
    (e: KeyFileError) => e.exitCode === 2 && e.message.startsWith(path),
  );
});
