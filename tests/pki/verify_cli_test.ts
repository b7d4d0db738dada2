/**
 * `qsign pki verify` reports a refused chain with the rule, the certificate of the path and the
 * section it breaks (exit status 1), and input it cannot read with the file (exit status 2).
 */
import { equal, match } from "node:assert/strict";
import { pemEncode } from "../../src/pki/pem.ts";
import { runQsign, tempDir } from "../support/env.ts";
import { make, makeChain } from "./helpers.ts";

Deno.test("qsign pki verify: accepted, refused with rule and certificate, unreadable input", async () => {
  await using dir = await tempDir();
  const { root, intermediate, leaf } = await makeChain("ecdsa-p256");
  const write = async (name: string, text: string) => {
    const path = `${dir.path}/${name}`;
    await Deno.writeTextFile(path, text);
    return path;
  };
  const pem = (...ders: Uint8Array[]) => ders.map((d) => pemEncode("CERTIFICATE", d)).join("");
  const rootFile = await write("root.pem", pem(root.der));
  const verify = (leafFile: string, ...extra: string[]) =>
    runQsign(["pki", "verify", leafFile, "--trust", rootFile, ...extra]);

  const good = await verify(
    await write("good.pem", pem(leaf.der, intermediate.der)),
    "--purpose",
    "server",
  );
  equal(good.code, 0, good.stderr);
  match(good.stdout, /CN=leaf\.example\.test\nCN=Test Intermediate, O=QSIGN Test\nCN=Test Root/);

  // A leaf without extKeyUsage: refused on the leaf, under the CA/Browser Forum rule.
  const noEku = await make({
    subject: "CN=leaf.example.test",
    issuer: intermediate,
    alg: "ecdsa-p256",
    sans: ["DNS:leaf.example.test"],
  });
  const refused = await verify(await write("no-eku.pem", pem(noEku.der, intermediate.der)));
  equal(refused.code, 1, refused.stderr);
  equal(
    refused.stderr,
    "qsign: purpose mismatch: CN=leaf.example.test has no extKeyUsage [certificate: the leaf " +
      '"CN=leaf.example.test"; rule: CA/Browser Forum BR §7.1.2.7.10]\n',
  );

  // An intermediate too deep: refused on the intermediate.
  const tooLong = await verify(
    await write("depth.pem", pem(leaf.der, intermediate.der)),
    "--max-depth",
    "0",
  );
  equal(tooLong.code, 1, tooLong.stderr);
  match(
    tooLong.stderr,
    /^qsign: max depth: .* \[certificate: the leaf .*; rule: RFC 5280 §6\.1\]$/m,
  );

  for (
    const [name, text, problem] of <[string, string, RegExp][]> [
      ["empty.pem", "no certificate here\n", /no CERTIFICATE found/],
      [
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        /no CERTIFICATE found/,
      ],
      [
        "not-a-certificate.pem",
        "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n",
        /certificate #1 cannot be parsed/,
      ],
    ]
  ) {
    const unreadable = await verify(await write(name, text));
    equal(unreadable.code, 2, unreadable.stderr);
    match(unreadable.stderr, new RegExp(name.replace(".", "\\.")));
    match(unreadable.stderr, problem);
    equal(/at .*\.ts:\d+/.test(unreadable.stderr), false, "no stack trace");
  }
});
