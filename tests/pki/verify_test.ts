/** Path validation through the module API: a valid chain, then one test per failure reason. */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { deepEqual, equal, ok } from "node:assert/strict";
import { createCrl } from "../../src/pki/certificate.ts";
import type { TbsSigner } from "../../src/pki/keys.ts";
import {
  dnsNameMatches,
  encodeNameConstraints,
  NAME_CONSTRAINTS_OID,
} from "../../src/pki/names.ts";
import {
  certificateFingerprint,
  type ChainFailureReason,
  ChainVerificationError,
  TrustStore,
  verifyChain,
  type VerifyOptions,
} from "../../src/pki/verify.ts";
import { CLIENT_AUTH, DAY, type Issued, make, makeChain, SERVER_AUTH } from "./helpers.ts";

const { root, intermediate, leaf } = await makeChain();
const base = (): VerifyOptions => ({
  trustAnchors: [root.der],
  intermediates: [intermediate.der],
  purpose: "server",
});

async function refused(
  reason: ChainFailureReason,
  der: Uint8Array,
  options: Partial<VerifyOptions> = {},
): Promise<ChainVerificationError> {
  let caught: unknown;
  try {
    await verifyChain(der, { ...base(), ...options });
  } catch (e) {
    caught = e;
  }
  ok(caught instanceof ChainVerificationError, `expected a ChainVerificationError, got ${caught}`);
  equal(caught.reason, reason, caught.message);
  ok(caught.message.startsWith(`${reason}: `), caught.message);
  return caught;
}

function leafFrom(issuer: Issued, extra: Partial<Parameters<typeof make>[0]> = {}) {
  // The CN is a copy of the first DNS name (CA/Browser Forum BR §7.1.4.3).
  const dns = extra.sans?.find((n) => n.startsWith("DNS:"))?.slice(4) ?? "leaf.example.test";
  return make({
    subject: `CN=${dns}`,
    issuer,
    eku: [SERVER_AUTH],
    sans: ["DNS:leaf.example.test"],
    ...extra,
  });
}

Deno.test("a valid chain verifies, leaf first, with its fingerprint and expiry", async () => {
  const result = await verifyChain(leaf.der, { ...base(), host: "leaf.example.test" });
  deepEqual(result.chain.map((c) => c.subject), [
    "CN=leaf.example.test",
    "CN=Test Intermediate, O=QSIGN Test",
    "CN=Test Root, O=QSIGN Test",
  ]);
  equal(result.fingerprint, certificateFingerprint(leaf.der));
  // Validity names whole seconds: the verdict holds to the end of the second of the earliest
  // notAfter in the chain (the certificates were made a moment apart).
  const earliest = Math.min(...[root, intermediate, leaf].map((c) => c.cert.notAfter.getTime()));
  equal(result.validUntil.getTime(), earliest + 999);
});

Deno.test("a TrustStore built once serves many verifications", async () => {
  const store = await TrustStore.create([root.der]);
  for (const host of ["leaf.example.test", "a.wild.example.test", "10.1.2.3"]) {
    const result = await verifyChain(leaf.der, { ...base(), trustAnchors: store, host });
    equal(result.chain.length, 3);
  }
  await verifyChain(leaf.der, { ...base(), trustAnchors: store, ip: "fd00:0:0::1" });
});

Deno.test("expired", async () => {
  const old = await leafFrom(intermediate, {
    notBefore: new Date(Date.now() - 10 * DAY),
    notAfter: new Date(Date.now() - DAY),
  });
  await refused("expired", old.der);
  // The same chain at a time after the leaf's notAfter.
  await refused("expired", leaf.der, { at: new Date(leaf.cert.notAfter.getTime() + 1000) });
});

Deno.test("not yet valid", async () => {
  const future = await leafFrom(intermediate, {
    notBefore: new Date(Date.now() + DAY),
    notAfter: new Date(Date.now() + 10 * DAY),
  });
  await refused("not yet valid", future.der);
});

Deno.test("unknown issuer", async () => {
  const other = await make({ subject: "CN=Other Root", ca: {} });
  await refused("unknown issuer", leaf.der, { trustAnchors: [other.der] });
  await refused("unknown issuer", leaf.der, { intermediates: [] });
});

Deno.test("bad signature: one flipped byte in the leaf's signature", async () => {
  const tampered = leaf.der.slice();
  tampered[tampered.length - 1] ^= 0x01;
  await refused("bad signature", tampered);
});

Deno.test("bad signature: ECDSA, RSA and composite chains are checked too", async () => {
  for (const alg of ["ecdsa-p384", "mldsa65-ecdsa-p384"] as const) {
    const chain = await makeChain(alg);
    const options = { trustAnchors: [chain.root.der], intermediates: [chain.intermediate.der] };
    await verifyChain(chain.leaf.der, { ...base(), ...options });
    const tampered = chain.leaf.der.slice();
    tampered[tampered.length - 2] ^= 0x40;
    await refused("bad signature", tampered, options);
  }
});

Deno.test("RSA-PSS and PKCS#1 v1.5 chains (Vault style) verify", async () => {
  const pair = await crypto.subtle.generateKey(
    {
      name: "RSA-PSS",
      modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: "SHA-256",
    },
    true,
    ["sign", "verify"],
  ) as CryptoKeyPair;
  const pssSigner: TbsSigner = {
    algorithm: { name: "RSA-PSS", hash: "SHA-256", saltLength: 32 } as Algorithm,
    spki: new Uint8Array(await crypto.subtle.exportKey("spki", pair.publicKey)),
    sign: async (tbs) =>
      new Uint8Array(
        await crypto.subtle.sign(
          { name: "RSA-PSS", saltLength: 32 },
          pair.privateKey,
          tbs as Uint8Array<ArrayBuffer>,
        ),
      ),
  };
  const pssRoot = await make({ subject: "CN=Vault Root", key: pssSigner, ca: {} });
  equal((pssRoot.cert.signatureAlgorithm as Algorithm).name, "RSA-PSS");
  const pkcs1Intermediate = await make({
    subject: "CN=Vault Int",
    issuer: pssRoot,
    alg: "rsa-3072",
    ca: {},
  });
  const vaultLeaf = await leafFrom(pkcs1Intermediate, { alg: "ecdsa-p256" });
  const result = await verifyChain(vaultLeaf.der, {
    ...base(),
    trustAnchors: [pssRoot.der],
    intermediates: [pkcs1Intermediate.der],
  });
  equal(result.chain.length, 3);
});

Deno.test("name mismatch", async () => {
  await refused("name mismatch", leaf.der, { host: "other.example.test" });
  await refused("name mismatch", leaf.der, { ip: "10.1.2.4" });
  await refused("name mismatch", leaf.der, { host: "10.9.9.9" });
});

Deno.test("wildcards only as the whole leftmost label, for exactly one label", async () => {
  await verifyChain(leaf.der, { ...base(), host: "a.wild.example.test" });
  await verifyChain(leaf.der, { ...base(), host: "A.Wild.Example.Test." });
  await refused("name mismatch", leaf.der, { host: "a.b.wild.example.test" });
  await refused("name mismatch", leaf.der, { host: "wild.example.test" });
  await refused("name mismatch", leaf.der, { host: ".wild.example.test" });
  equal(dnsNameMatches("f*.example.test", "foo.example.test"), false);
  equal(dnsNameMatches("*oo.example.test", "foo.example.test"), false);
  equal(dnsNameMatches("a.*.example.test", "a.b.example.test"), false);
  equal(dnsNameMatches("*.*.example.test", "a.b.example.test"), false);
  equal(dnsNameMatches("*.test", "example.test"), false);
  equal(dnsNameMatches("*.example.test", "x.example.test"), true);
});

Deno.test("purpose mismatch", async () => {
  await refused("purpose mismatch", leaf.der, { purpose: "client" });
  const client = await leafFrom(intermediate, { eku: [CLIENT_AUTH] });
  await refused("purpose mismatch", client.der, { purpose: "server" });
  await verifyChain(client.der, { ...base(), purpose: "client" });
  await verifyChain(client.der, { ...base(), purpose: "any" });
});

Deno.test("revoked, and CRLs that cannot be trusted", async () => {
  const now = Date.now();
  const crl = async (signer: Issued, nextUpdate = new Date(now + DAY)) =>
    new Uint8Array(
      (await createCrl({
        issuer: intermediate.cert,
        signer: signer.key,
        thisUpdate: new Date(now - DAY),
        nextUpdate,
        crlNumber: 1,
        entries: [{ serial: leaf.cert.serialNumber, revokedAt: new Date(now - 1000), reason: 1 }],
      })).rawData,
    );
  const error = await refused("revoked", leaf.der, { crls: [await crl(intermediate)] });
  ok(error.message.includes("keyCompromise"), error.message);
  // Before the revocation time the certificate was still good.
  await verifyChain(leaf.der, {
    ...base(),
    crls: [await crl(intermediate)],
    at: new Date(now - 60_000),
  });
  await refused("crl invalid", leaf.der, { crls: [await crl(root)] });
  await refused("crl invalid", leaf.der, {
    crls: [await crl(intermediate, new Date(now - 3600_000))],
  });
  const store = await TrustStore.create([root.der], [await crl(intermediate)]);
  await refused("revoked", leaf.der, { trustAnchors: store });
});

Deno.test("crlCheck: leaf and chain require CRLs; a root CRL revokes an intermediate", async () => {
  const now = Date.now();
  const crlOf = async (ca: Issued, revoked: Issued[] = []) =>
    new Uint8Array(
      (await createCrl({
        issuer: ca.cert,
        signer: ca.key,
        thisUpdate: new Date(now - DAY),
        nextUpdate: new Date(now + DAY),
        crlNumber: 1,
        entries: revoked.map((c) => ({ serial: c.cert.serialNumber, revokedAt: new Date(now) })),
      })).rawData,
    );
  const [intermediateCrl, rootCrl] = [await crlOf(intermediate), await crlOf(root)];
  // Without CRLs only the default check passes.
  await verifyChain(leaf.der, base());
  const missing = await refused("crl missing", leaf.der, { crlCheck: "leaf" });
  equal(missing.subject, leaf.cert.subject);
  // The leaf's issuer's CRL satisfies `leaf` but not `chain`, which wants the root's too.
  await verifyChain(leaf.der, { ...base(), crls: [intermediateCrl], crlCheck: "leaf" });
  const chainMissing = await refused("crl missing", leaf.der, {
    crls: [intermediateCrl],
    crlCheck: "chain",
  });
  equal(chainMissing.subject, intermediate.cert.subject);
  await verifyChain(leaf.der, { ...base(), crls: [intermediateCrl, rootCrl], crlCheck: "chain" });
  // A root CRL listing the intermediate revokes every chain through it, whatever crlCheck says.
  const revokedIntermediate = await crlOf(root, [intermediate]);
  for (const crlCheck of ["available", "chain"] as const) {
    const error = await refused("revoked", leaf.der, {
      crls: [intermediateCrl, revokedIntermediate],
      crlCheck,
    });
    equal(error.subject, intermediate.cert.subject);
  }
});

Deno.test("path too long: a CA below a pathLen 0 intermediate", async () => {
  const sub = await make({ subject: "CN=Sub CA", issuer: intermediate, ca: {} });
  const deep = await leafFrom(sub);
  await refused("path too long", deep.der, { intermediates: [intermediate.der, sub.der] });
});

Deno.test("not a CA: a leaf signed by another leaf", async () => {
  const child = await leafFrom(leaf);
  await refused("not a CA", child.der, { intermediates: [intermediate.der, leaf.der] });
});

Deno.test("bad key usage: an issuer without keyCertSign", async () => {
  const noSign = await make({
    subject: "CN=No Sign CA",
    issuer: root,
    ca: {},
    keyUsage: x509.KeyUsageFlags.cRLSign,
  });
  const child = await leafFrom(noSign);
  await refused("bad key usage", child.der, { intermediates: [noSign.der] });
});

Deno.test("unknown critical extension", async () => {
  const odd = await leafFrom(intermediate, {
    extensions: [new x509.Extension("1.3.6.1.4.1.99999.1", true, new Uint8Array([0x05, 0x00]))],
  });
  await refused("unknown critical extension", odd.der);
  const harmless = await leafFrom(intermediate, {
    extensions: [new x509.Extension("1.3.6.1.4.1.99999.1", false, new Uint8Array([0x05, 0x00]))],
  });
  await verifyChain(harmless.der, base());
});

Deno.test("name constraints: permitted DNS subtree and excluded IP range", async () => {
  const constraints = encodeNameConstraints(
    [{ type: "dns", value: "allowed.test" }],
    [{ type: "ip", value: "10.0.0.0/8" }],
  );
  const constrained = await make({
    subject: "CN=Constrained CA",
    issuer: root,
    ca: { pathLength: 0 },
    extensions: [
      new x509.Extension(NAME_CONSTRAINTS_OID, true, constraints as Uint8Array<ArrayBuffer>),
    ],
  });
  const options = { intermediates: [constrained.der] };
  const good = await leafFrom(constrained, { sans: ["DNS:www.allowed.test", "IP:192.0.2.1"] });
  await verifyChain(good.der, { ...base(), ...options });
  const outside = await leafFrom(constrained, { sans: ["DNS:www.evil.test"] });
  await refused("name constraints", outside.der, options);
  const excludedIp = await leafFrom(constrained, { sans: ["DNS:www.allowed.test", "IP:10.0.0.7"] });
  await refused("name constraints", excludedIp.der, options);
});

Deno.test("max depth", async () => {
  await refused("max depth", leaf.der, { maxDepth: 0 });
  await verifyChain(leaf.der, { ...base(), maxDepth: 1 });
});

Deno.test("every candidate path is tried: a cross-certificate to an expired root first", async () => {
  // The intermediate's key is also certified by an expired root of the same name.
  const expiredRoot = await make({
    subject: "CN=Test Root, O=QSIGN Test",
    ca: {},
    notBefore: new Date(Date.now() - 10 * DAY),
    notAfter: new Date(Date.now() - DAY),
  });
  const cross = await make({
    subject: "CN=Test Intermediate, O=QSIGN Test",
    key: intermediate.key,
    issuer: expiredRoot,
    ca: { pathLength: 0 },
  });
  const options = {
    trustAnchors: [expiredRoot.der, root.der],
    intermediates: [cross.der, intermediate.der],
  };
  const result = await verifyChain(leaf.der, { ...base(), ...options });
  deepEqual(result.chain[1].der, intermediate.der);
  deepEqual(result.chain[2].der, root.der);
  // With only the expired root trusted, the one complete path reports why it failed.
  await refused("expired", leaf.der, { ...options, trustAnchors: [expiredRoot.der] });
  // Untrusted copies of the root among the intermediates change nothing.
  await verifyChain(leaf.der, {
    ...base(),
    intermediates: [root.der, cross.der, intermediate.der],
  });
});

Deno.test("malformed input is refused, not thrown", async () => {
  await refused("malformed certificate", new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x00]));
});
