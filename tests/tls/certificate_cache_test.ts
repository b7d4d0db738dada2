/** Parsed certificates are shared by DER: the same bytes from anywhere give the same object. */
import { equal, notEqual } from "node:assert/strict";
import { parseCertificate } from "../../src/tls/auth.ts";
import { tempDir } from "../support/env.ts";
import { makePki } from "./support/pki.ts";

Deno.test("parseCertificate shares one parse per DER, wherever the bytes lie", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`, "mldsa44");
  const [leaf] = pki.server.chain;
  const parsed = parseCertificate(leaf);
  equal(parsed.subjectField("CN")[0], "qtls-server.qsign.local");
  // A copy, and a view inside a larger message, as a handshake message carries it.
  equal(parseCertificate(leaf.slice()), parsed);
  const message = new Uint8Array(leaf.length + 10);
  message.set(leaf, 7);
  equal(parseCertificate(message.subarray(7, 7 + leaf.length)), parsed);

  const other = parseCertificate(pki.client.chain[0]);
  notEqual(other, parsed);
  equal(other.subjectField("CN")[0], "qtls-client.qsign.local");
  // One byte changed (here the signature's last) is another certificate.
  const changed = leaf.slice();
  changed[changed.length - 1] ^= 1;
  notEqual(parseCertificate(changed), parsed);
});
