/**
 * One case per rule of the path-validation profile (RFC 5280 and the CA/Browser Forum Baseline
 * Requirements), each chain built with fresh keys and refused for exactly the reason, rule and
 * certificate expected; and the chains that must pass, each cross-checked with OpenSSL 3.5
 * (Node.js 26, a TLS handshake over loopback trusting only the root).
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { AsnConvert } from "@peculiar/asn1-schema";
import * as asn1X509 from "@peculiar/asn1-x509";
import { deepEqual, equal, ok, rejects } from "node:assert/strict";
import { createCertificate, generatorSigning, randomSerial } from "../../src/pki/certificate.ts";
import { ecdsaRawToDer } from "../../src/crypto/der.ts";
import { bufferSource, children, encodeTlv, readTlv, tlvBytes } from "../../src/pki/der.ts";
import {
  generateKeyPair,
  type KeyAlgorithm,
  type LoadedPrivateKey,
  privateKeyPem,
  type TbsSigner,
} from "../../src/pki/keys.ts";
import { pemEncode } from "../../src/pki/pem.ts";
import {
  type ChainFailureReason,
  ChainVerificationError,
  type CrlCheck,
  type Purpose,
  verifyChain,
} from "../../src/pki/verify.ts";
import { CsrError, initPki, issueLeaf, PKI_FILES } from "../../src/pki/ca.ts";
import { readPrivateKeyFile } from "../../src/pki/keys.ts";
import { readCertificatesFile } from "../../src/pki/pem.ts";
import { PEER_NODE, tempDir } from "../support/env.ts";
import { DAY } from "./helpers.ts";

const SERVER_AUTH = x509.ExtendedKeyUsage.serverAuth;
const CLIENT_AUTH = x509.ExtendedKeyUsage.clientAuth;
const HOST = "leaf.rules.test";

/** A certificate of a test chain, with its key. */
interface Cert {
  cert: x509.X509Certificate;
  der: Uint8Array;
  key: TbsSigner;
  pem: string;
  /** The key as qsign loads it (absent for a `signer` given in the spec). */
  loaded?: LoadedPrivateKey;
}

interface Spec {
  subject: string;
  /** Absent: self-signed. */
  issuer?: Cert;
  alg?: KeyAlgorithm;
  /** The subject's key, when not a fresh `alg` key (a key qsign does not make). */
  signer?: TbsSigner;
  /** The subject key info, when it is not the key's (a key that is never used). */
  spki?: Uint8Array;
  serial?: string;
  notBefore?: Date;
  notAfter?: Date;
  /** The extensions a well-formed CA or leaf gets; `edit` changes them. */
  ca?: boolean;
  edit?: (extensions: x509.Extension[]) => x509.Extension[];
  /** The signature algorithm the certificate claims (the issuer's by default). */
  algorithm?: TbsSigner["algorithm"];
}

/**
 * A certificate exactly as `spec` says: well formed by default (SKI; AKI unless self-signed;
 * a CA: critical basicConstraints and keyUsage; a leaf: keyUsage, serverAuth and clientAuth,
 * a non-critical SAN with `HOST`), then `edit` applied to the extension list.
 */
async function craft(spec: Spec): Promise<Cert> {
  const loaded = spec.signer ? undefined : await generateKeyPair(spec.alg ?? "ecdsa-p256");
  const key: TbsSigner = spec.signer ?? loaded!;
  const spki = spec.spki ?? key.spki;
  const signer = spec.issuer?.key ?? key;
  const extensions: x509.Extension[] = spec.ca
    ? [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
    ]
    : [
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([SERVER_AUTH, CLIENT_AUTH]),
      new x509.SubjectAlternativeNameExtension([{ type: "dns", value: HOST }]),
    ];
  extensions.push(await x509.SubjectKeyIdentifierExtension.create(bufferSource(spki)));
  const issuerKeyId = spec.issuer?.cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
  if (issuerKeyId) extensions.push(new x509.AuthorityKeyIdentifierExtension(issuerKeyId));
  const signing = generatorSigning(
    spec.algorithm ? { ...signer, algorithm: spec.algorithm, sign: signer.sign } : signer,
  );
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: spec.serial ?? randomSerial(),
      subject: spec.subject,
      issuer: spec.issuer ? spec.issuer.cert.subject : spec.subject,
      notBefore: spec.notBefore ?? new Date(now - DAY),
      notAfter: spec.notAfter ?? new Date(now + 30 * DAY),
      publicKey: bufferSource(spki),
      signingKey: signing.signingKey,
      signingAlgorithm: signing.signingAlgorithm,
      extensions: spec.edit ? spec.edit(extensions) : extensions,
    },
    signing.crypto,
  );
  const der = new Uint8Array(cert.rawData);
  return { cert, der, key, loaded, pem: pemEncode("CERTIFICATE", der) };
}

/** A signer over a WebCrypto RSA key of `bits` bits, PKCS#1 v1.5 with SHA-256. */
async function webCryptoRsaSigner(bits: number): Promise<TbsSigner> {
  const algorithm = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
  const pair = await crypto.subtle.generateKey(
    { ...algorithm, modulusLength: bits, publicExponent: new Uint8Array([1, 0, 1]) },
    true,
    ["sign", "verify"],
  ) as CryptoKeyPair;
  return {
    algorithm,
    spki: new Uint8Array(await crypto.subtle.exportKey("spki", pair.publicKey)),
    sign: async (tbs) =>
      new Uint8Array(await crypto.subtle.sign(algorithm, pair.privateKey, bufferSource(tbs))),
  };
}

/** Root → intermediate → leaf, each part replaceable. */
async function chain(
  parts: { root?: Partial<Spec>; intermediate?: Partial<Spec>; leaf?: Partial<Spec> } = {},
) {
  const root = await craft({ subject: "CN=Rules Root", ca: true, ...parts.root });
  const intermediate = await craft({
    subject: "CN=Rules Intermediate",
    ca: true,
    issuer: root,
    ...parts.intermediate,
  });
  const leaf = await craft({ subject: `CN=${HOST}`, issuer: intermediate, ...parts.leaf });
  return { root, intermediate, leaf };
}

type Chain = Awaited<ReturnType<typeof chain>>;

interface Check {
  purpose?: Purpose;
  host?: string;
  at?: Date;
  crls?: Uint8Array[];
  crlCheck?: CrlCheck;
  maxDepth?: number;
  /** Untrusted certificates (default: the intermediate). */
  intermediates?: Uint8Array[];
}

function verify(c: Chain, check: Check = {}) {
  return verifyChain(c.leaf.der, {
    trustAnchors: [c.root.der],
    intermediates: check.intermediates ?? [c.intermediate.der],
    purpose: check.purpose ?? "server",
    host: "host" in check ? check.host : HOST,
    at: check.at,
    crls: check.crls,
    crlCheck: check.crlCheck,
    maxDepth: check.maxDepth,
  });
}

/** Asserts the refusal: reason, rule, the index of the certificate, and a detail. */
async function refused(
  c: Chain,
  expected: { reason: ChainFailureReason; rule: string; index: number; detail?: RegExp },
  check: Check = {},
): Promise<void> {
  let caught: unknown;
  try {
    await verify(c, check);
  } catch (e) {
    caught = e;
  }
  ok(caught instanceof ChainVerificationError, `expected a refusal, got ${caught}`);
  deepEqual(
    { reason: caught.reason, rule: caught.rule, index: caught.index },
    { reason: expected.reason, rule: expected.rule, index: expected.index },
    caught.message,
  );
  if (expected.detail) ok(expected.detail.test(caught.message), caught.message);
}

/** The chains that must pass, for OpenSSL to judge at the end. */
const accepted: { name: string; chain: Chain; untrusted?: Cert[] }[] = [];

async function passes(name: string, c: Chain, check: Check = {}, untrusted?: Cert[]) {
  await verify(c, check);
  accepted.push({ name, chain: c, untrusted });
}

const without = (oid: string) => (list: x509.Extension[]) => list.filter((e) => e.type !== oid);
const OID = {
  san: "2.5.29.17",
  ski: "2.5.29.14",
  aki: "2.5.29.35",
  basicConstraints: "2.5.29.19",
  keyUsage: "2.5.29.15",
  eku: "2.5.29.37",
  policies: "2.5.29.32",
  policyConstraints: "2.5.29.36",
};
/** The same extension, with criticality flipped. */
const flip = (oid: string) => (list: x509.Extension[]) =>
  list.map((e) => e.type === oid ? new x509.Extension(e.type, !e.critical, e.value) : e);

Deno.test("a well-formed chain passes", async () => {
  await passes("well-formed", await chain());
});

Deno.test("extensions: the same extension twice", async () => {
  const c = await chain({
    leaf: {
      edit: (list) => [
        ...list,
        new x509.SubjectAlternativeNameExtension([{ type: "dns", value: HOST }]),
      ],
    },
  });
  await refused(c, { reason: "duplicate extension", rule: "RFC 5280 §4.2", index: 0 });
});

Deno.test("extensions: AKI or SKI critical", async () => {
  await refused(await chain({ leaf: { edit: flip(OID.aki) } }), {
    reason: "bad extension",
    rule: "RFC 5280 §4.2.1.1",
    index: 0,
  });
  await refused(await chain({ intermediate: { edit: flip(OID.ski) } }), {
    reason: "bad extension",
    rule: "RFC 5280 §4.2.1.2",
    index: 1,
  });
});

Deno.test("extensions: basicConstraints not critical in a CA", async () => {
  await refused(await chain({ intermediate: { edit: flip(OID.basicConstraints) } }), {
    reason: "bad extension",
    rule: "RFC 5280 §4.2.1.9",
    index: 1,
  });
  await refused(await chain({ root: { edit: flip(OID.basicConstraints) } }), {
    reason: "bad extension",
    rule: "RFC 5280 §4.2.1.9",
    index: 2,
  });
});

function policyConstraints(requireExplicitPolicy: number, critical: boolean): x509.Extension {
  const value = AsnConvert.serialize(
    new asn1X509.PolicyConstraints({
      requireExplicitPolicy: new Uint8Array([requireExplicitPolicy]).buffer,
    }),
  );
  return new x509.Extension(OID.policyConstraints, critical, value);
}

Deno.test("extensions: policyConstraints must be critical, and explicit policy is enforced", async () => {
  const policy = "1.3.6.1.4.1.99999.1";
  const policies = new x509.CertificatePolicyExtension([policy]);
  const withPc = (critical: boolean) => (list: x509.Extension[]) => [
    ...list,
    policies,
    policyConstraints(0, critical),
  ];
  await refused(await chain({ intermediate: { edit: withPc(false) } }), {
    reason: "bad extension",
    rule: "RFC 5280 §4.2.1.11",
    index: 1,
  });
  // Critical, requiring an explicit policy from here on: the leaf must carry one too.
  await refused(await chain({ intermediate: { edit: withPc(true) } }), {
    reason: "policy constraints",
    rule: "RFC 5280 §6.1.5",
    index: 0,
  });
  await passes(
    "critical policyConstraints with policies throughout",
    await chain({
      intermediate: { edit: withPc(true) },
      leaf: { edit: (list) => [...list, policies] },
    }),
  );
});

Deno.test("subjects: a CA with an empty subject; SAN criticality follows the subject", async () => {
  await refused(await chain({ intermediate: { subject: "" } }), {
    reason: "empty subject",
    rule: "RFC 5280 §4.1.2.6",
    index: 1,
  });
  await refused(await chain({ leaf: { edit: flip(OID.san) } }), {
    reason: "bad extension",
    rule: "RFC 5280 §4.2.1.6",
    index: 0,
    detail: /critical though the subject is not empty/,
  });
  await refused(await chain({ leaf: { subject: "" } }), {
    reason: "bad extension",
    rule: "RFC 5280 §4.2.1.6",
    index: 0,
    detail: /empty subject needs a critical subjectAltName/,
  });
  await passes(
    "empty subject with a critical SAN",
    await chain({ leaf: { subject: "", edit: flip(OID.san) } }),
  );
});

Deno.test("key identifiers: AKI missing where the certificate is not self-signed", async () => {
  await refused(await chain({ leaf: { edit: without(OID.aki) } }), {
    reason: "missing key identifier",
    rule: "RFC 5280 §4.2.1.1",
    index: 0,
  });
  await refused(await chain({ intermediate: { edit: without(OID.aki) } }), {
    reason: "missing key identifier",
    rule: "RFC 5280 §4.2.1.1",
    index: 1,
  });
  // A cross-signed root: the trusted root certifies another root's key, without an AKI.
  const c = await chain();
  const cross = await craft({
    subject: "CN=Rules Intermediate",
    ca: true,
    issuer: c.root,
    edit: without(OID.aki),
  });
  const crossed = { ...c, intermediate: cross };
  const leaf = await craft({ subject: `CN=${HOST}`, issuer: cross });
  await refused({ ...crossed, leaf }, {
    reason: "missing key identifier",
    rule: "RFC 5280 §4.2.1.1",
    index: 1,
  });
});

Deno.test("key identifiers: SKI missing in a CA", async () => {
  await refused(await chain({ intermediate: { edit: without(OID.ski) } }), {
    reason: "missing key identifier",
    rule: "RFC 5280 §4.2.1.2",
    index: 1,
  });
  await refused(await chain({ root: { edit: without(OID.ski) } }), {
    reason: "missing key identifier",
    rule: "RFC 5280 §4.2.1.2",
    index: 2,
  });
});

Deno.test("key identifiers: a trust anchor's AKI must name its own key, by key identifier only", async () => {
  const otherKey = await generateKeyPair("ecdsa-p256");
  const foreignKeyId = await x509.AuthorityKeyIdentifierExtension.create(
    bufferSource(otherKey.spki),
  );
  const foreignAki = (list: x509.Extension[]) => [...list, foreignKeyId];
  const withAki = (aki: asn1X509.AuthorityKeyIdentifier) => (list: x509.Extension[]) => [
    ...list,
    new x509.Extension(OID.aki, false, AsnConvert.serialize(aki)),
  ];
  const issuerName = [
    new asn1X509.GeneralName({
      directoryName: AsnConvert.parse(
        new x509.Name("CN=Rules Root").toArrayBuffer(),
        asn1X509.Name,
      ),
    }),
  ];
  const noKeyId = withAki(
    new asn1X509.AuthorityKeyIdentifier({
      authorityCertIssuer: issuerName,
      authorityCertSerialNumber: new Uint8Array([1]).buffer,
    }),
  );
  await refused(await chain({ root: { edit: noKeyId } }), {
    reason: "bad key identifier",
    rule: "CA/Browser Forum BR §7.1.2.11.1",
    index: 2,
  });
  const emptyAki = withAki(new asn1X509.AuthorityKeyIdentifier({}));
  await refused(await chain({ root: { edit: emptyAki } }), {
    reason: "bad key identifier",
    rule: "RFC 5280 §4.2.1.1",
    index: 2,
  });
  const root = await craft({ subject: "CN=Rules Root", ca: true, edit: foreignAki });
  const intermediate = await craft({ subject: "CN=Rules Intermediate", ca: true, issuer: root });
  const leaf = await craft({ subject: `CN=${HOST}`, issuer: intermediate });
  await refused({ root, intermediate, leaf }, {
    reason: "bad key identifier",
    rule: "RFC 5280 §4.2.1.1",
    index: 2,
    detail: /names another key/,
  });
});

Deno.test("serial numbers: zero, negative, longer than 20 octets", async () => {
  for (
    const [serial, detail] of [
      [[0x00], /is zero/],
      [[0xff, 0x01], /is negative/],
      [new Array(21).fill(1), /21 octets/],
    ] as const
  ) {
    const c = await chain();
    const leaf = await resigned(c.leaf, c.intermediate.key, (fields) => {
      fields[1] = encodeTlv(0x02, new Uint8Array(serial));
    });
    await refused({ ...c, leaf }, {
      reason: "bad serial number",
      rule: "RFC 5280 §4.1.2.2",
      index: 0,
      detail,
    });
  }
  await passes("20-octet serial", await chain({ leaf: { serial: "7f" + "01".repeat(19) } }));
});

Deno.test("roles: a CA as the leaf, keyCertSign in an end entity, EKU in a root", async () => {
  await refused(
    await chain({
      leaf: {
        edit: (list) => [...list, new x509.BasicConstraintsExtension(true, undefined, true)],
      },
    }),
    { reason: "CA as end entity", rule: "RFC 5280 §4.2.1.9", index: 0 },
  );
  const keyCertSign = (list: x509.Extension[]) => [
    ...without(OID.keyUsage)(list),
    new x509.KeyUsagesExtension(
      x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyCertSign,
      true,
    ),
  ];
  await refused(await chain({ leaf: { edit: keyCertSign } }), {
    reason: "bad key usage",
    rule: "RFC 5280 §4.2.1.3",
    index: 0,
  });
  const rootEku = (list: x509.Extension[]) => [
    ...list,
    new x509.ExtendedKeyUsageExtension([SERVER_AUTH]),
  ];
  await refused(await chain({ root: { edit: rootEku } }), {
    reason: "purpose mismatch",
    rule: "CA/Browser Forum BR §7.1.2.1.2",
    index: 2,
  });
});

Deno.test("leaf EKU: missing, anyExtendedKeyUsage only, critical, or without the role", async () => {
  const rule = "CA/Browser Forum BR §7.1.2.7.10";
  const eku = (usages: string[], critical = false) => (list: x509.Extension[]) => [
    ...without(OID.eku)(list),
    new x509.ExtendedKeyUsageExtension(usages, critical),
  ];
  await refused(await chain({ leaf: { edit: without(OID.eku) } }), {
    reason: "purpose mismatch",
    rule,
    index: 0,
    detail: /no extKeyUsage/,
  });
  await refused(await chain({ leaf: { edit: eku(["2.5.29.37.0"]) } }), {
    reason: "purpose mismatch",
    rule,
    index: 0,
    detail: /anyExtendedKeyUsage only/,
  });
  await refused(await chain({ leaf: { edit: eku([SERVER_AUTH], true) } }), {
    reason: "purpose mismatch",
    rule,
    index: 0,
    detail: /critical/,
  });
  await refused(await chain({ leaf: { edit: eku([CLIENT_AUTH]) } }), {
    reason: "purpose mismatch",
    rule,
    index: 0,
    detail: /TLS server/,
  });
  await refused(await chain({ leaf: { edit: eku([SERVER_AUTH]) } }), {
    reason: "purpose mismatch",
    rule,
    index: 0,
    detail: /TLS client/,
  }, { purpose: "client", host: undefined });
});

Deno.test("CA EKU restricts what it issues: the server intermediate of pki init cannot mint a client", async () => {
  await using dir = await tempDir();
  await initPki({ dir: dir.path, alg: "ecdsa-p256" });
  const [rootDer] = await readCertificatesFile(`${dir.path}/${PKI_FILES.rootCert}`);
  const [serverCaDer] = await readCertificatesFile(`${dir.path}/${PKI_FILES.serverCaCert}`);
  const serverCaKey = await readPrivateKeyFile(`${dir.path}/${PKI_FILES.serverCaKey}`);
  const serverCa = new x509.X509Certificate(bufferSource(serverCaDer));
  const clientKey = await generateKeyPair("ecdsa-p256");
  const minted = await createCertificate({
    subject: "CN=mallory.qsign.local",
    spki: clientKey.spki,
    issuer: serverCa,
    signer: serverCaKey,
    notBefore: new Date(Date.now() - DAY),
    notAfter: new Date(Date.now() + DAY),
    keyUsage: x509.KeyUsageFlags.digitalSignature,
    extendedKeyUsage: [CLIENT_AUTH],
    subjectAltNames: [{ type: "dns", value: "mallory.qsign.local" }],
  });
  let caught: unknown;
  try {
    await verifyChain(new Uint8Array(minted.rawData), {
      trustAnchors: [rootDer],
      intermediates: [serverCaDer],
      purpose: "client",
    });
  } catch (e) {
    caught = e;
  }
  ok(caught instanceof ChainVerificationError, String(caught));
  equal(caught.reason, "purpose mismatch");
  equal(caught.rule, "RFC 5280 §4.2.1.12");
  equal(caught.index, 1);
  // The client intermediate as the only anchor (`--ca client-ca.crt`) admits its own leaves.
  const [clientCaDer] = await readCertificatesFile(`${dir.path}/${PKI_FILES.clientCaCert}`);
  const [clientLeaf] = await readCertificatesFile(`${dir.path}/${PKI_FILES.clientCert}`);
  await verifyChain(clientLeaf, { trustAnchors: [clientCaDer], purpose: "client" });
});

/** An RSA SubjectPublicKeyInfo with a modulus of `bits` bits (never used to verify). */
function rsaKeyInfo(bits: number): Uint8Array {
  const modulus = crypto.getRandomValues(new Uint8Array(Math.ceil(bits / 8)));
  const topBits = bits % 8 || 8;
  modulus[0] = (modulus[0] & ((1 << topBits) - 1)) | (1 << (topBits - 1));
  const integer = (bytes: Uint8Array) =>
    encodeTlv(0x02, bytes[0] & 0x80 ? new Uint8Array([0, ...bytes]) : bytes);
  const rsaPublicKey = encodeTlv(0x30, integer(modulus), integer(new Uint8Array([1, 0, 1])));
  const algorithm = encodeTlv(0x30, oidDer("1.2.840.113549.1.1.1"), new Uint8Array([0x05, 0x00]));
  return encodeTlv(0x30, algorithm, encodeTlv(0x03, new Uint8Array([0, ...rsaPublicKey])));
}

/** A SubjectPublicKeyInfo of `algorithm` (DER of the AlgorithmIdentifier) with junk key bits. */
function keyInfo(algorithm: Uint8Array, keyLength = 65): Uint8Array {
  const bits = new Uint8Array(keyLength + 1);
  bits.set(crypto.getRandomValues(new Uint8Array(keyLength)), 1);
  return encodeTlv(0x30, algorithm, encodeTlv(0x03, bits));
}

/** The DER of an OBJECT IDENTIFIER (taken from an AlgorithmIdentifier without parameters). */
function oidDer(dotted: string): Uint8Array {
  const algorithm = new Uint8Array(
    AsnConvert.serialize(new asn1X509.AlgorithmIdentifier({ algorithm: dotted })),
  );
  const [oid] = children(algorithm, readTlv(algorithm));
  return tlvBytes(algorithm, oid);
}

Deno.test("keys: small or odd RSA, DSA, and curves other than P-256/P-384/P-521", async () => {
  const rule = "CA/Browser Forum BR §6.1.5";
  const cases: [Uint8Array, RegExp][] = [
    [rsaKeyInfo(1024), /1024 bits, below 2048/],
    [rsaKeyInfo(2052), /2052 bits is not a whole number of octets/],
    [
      keyInfo(encodeTlv(0x30, oidDer("1.2.840.10040.4.1"))),
      /DSA keys are not accepted/,
    ],
    [
      // secp256k1
      keyInfo(encodeTlv(0x30, oidDer("1.2.840.10045.2.1"), oidDer("1.3.132.0.10"))),
      /curve 1\.3\.132\.0\.10/,
    ],
    [
      // P-224
      keyInfo(encodeTlv(0x30, oidDer("1.2.840.10045.2.1"), oidDer("1.3.132.0.33"))),
      /curve 1\.3\.132\.0\.33/,
    ],
  ];
  for (const [spki, detail] of cases) {
    await refused(await chain({ leaf: { spki } }), {
      reason: "unsupported key",
      rule,
      index: 0,
      detail,
    });
  }
  // In a CA of the chain too: an RSA-1024 intermediate that really signs the leaf.
  await refused(await chain({ intermediate: { signer: await webCryptoRsaSigner(1024) } }), {
    reason: "unsupported key",
    rule,
    index: 1,
  });
  for (const alg of ["ecdsa-p384", "rsa-3072", "ed25519"] as KeyAlgorithm[]) {
    await passes(`${alg} leaf key`, await chain({ leaf: { alg } }));
  }
});

Deno.test("signatures: an algorithm qsign does not accept; outer and inner algorithms must agree", async () => {
  const rsa = await chain({ intermediate: { alg: "rsa-3072" } });
  const sha1 = await craft({
    subject: `CN=${HOST}`,
    issuer: rsa.intermediate,
    algorithm: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-1" } as TbsSigner["algorithm"],
  });
  await refused({ ...rsa, leaf: sha1 }, {
    reason: "unsupported signature algorithm",
    rule: "RFC 5280 §4.1.1.2",
    index: 0,
  });

  // A trust anchor's own signature is not checked: a root labelled SHA-1 still anchors.
  const rootKey = await webCryptoRsaSigner(2048);
  const sha1Root = await craft({
    subject: "CN=Rules Root",
    ca: true,
    signer: rootKey,
    algorithm: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-1" } as TbsSigner["algorithm"],
  });
  const underSha1Root = await craft({
    subject: "CN=Rules Intermediate",
    ca: true,
    issuer: sha1Root,
  });
  await verify({
    root: sha1Root,
    intermediate: underSha1Root,
    leaf: await craft({ subject: `CN=${HOST}`, issuer: underSha1Root }),
  });

  const c = await chain();
  // tbsCertificate.signature says ecdsa-with-SHA384; the outer field says SHA-256.
  const mismatched = await resigned(c.leaf, c.intermediate.key, (fields) => {
    fields[2] = encodeTlv(0x30, oidDer("1.2.840.10045.4.3.3"));
  });
  await refused({ ...c, leaf: mismatched }, {
    reason: "signature algorithm mismatch",
    rule: "RFC 5280 §4.1.1.2",
    index: 0,
  });
});

/**
 * The certificate with fields of its tbsCertificate (DER of each field, version first) changed
 * by `edit`, and signed again by `signer` (an ECDSA key) under the unchanged outer
 * signatureAlgorithm: forms the certificate generator will not write.
 */
async function resigned(
  original: Cert,
  signer: TbsSigner,
  edit: (fields: Uint8Array[]) => void,
): Promise<Cert> {
  const der = original.der;
  const [tbs, outerAlgorithm] = children(der, readTlv(der));
  const fields = children(der, tbs).map((f) => tlvBytes(der, f));
  edit(fields);
  const newTbs = encodeTlv(0x30, ...fields);
  const signature = ecdsaRawToDer(await signer.sign(newTbs));
  const rebuilt = encodeTlv(
    0x30,
    newTbs,
    tlvBytes(der, outerAlgorithm),
    encodeTlv(0x03, new Uint8Array([0, ...signature])),
  );
  const cert = new x509.X509Certificate(bufferSource(rebuilt));
  return { ...original, cert, der: rebuilt, pem: pemEncode("CERTIFICATE", rebuilt) };
}

Deno.test("self-issued intermediates (key rollover) count toward neither path length nor max depth", async () => {
  const root = await craft({ subject: "CN=Rules Root", ca: true });
  const intermediate = await craft({
    subject: "CN=Rules Intermediate",
    ca: true,
    issuer: root,
    edit: (list) => [
      ...without(OID.basicConstraints)(list),
      new x509.BasicConstraintsExtension(true, 0, true),
    ],
  });
  // The intermediate's new key, certified by its old one: same subject and issuer.
  const rollover = await craft({
    subject: "CN=Rules Intermediate",
    ca: true,
    issuer: intermediate,
  });
  const leaf = await craft({ subject: `CN=${HOST}`, issuer: rollover });
  const c = { root, intermediate, leaf };
  const untrusted = [rollover.der, intermediate.der];
  const result = await verify(c, { intermediates: untrusted, maxDepth: 1 });
  equal(result.chain.length, 4);
  accepted.push({ name: "self-issued rollover under pathLen 0", chain: c, untrusted: [rollover] });
});

Deno.test("validity compares whole seconds", async () => {
  // The leaf's validity lies well inside its issuers', so it alone decides.
  const now = Date.now();
  const c = await chain({
    leaf: { notBefore: new Date(now - DAY / 2), notAfter: new Date(now + 10 * DAY) },
  });
  const notAfter = c.leaf.cert.notAfter.getTime();
  await verify(c, { at: new Date(notAfter + 500) });
  await refused(c, { reason: "expired", rule: "RFC 5280 §4.1.2.5", index: 0 }, {
    at: new Date(notAfter + 1000),
  });
  const notBefore = c.leaf.cert.notBefore.getTime();
  await verify(c, { at: new Date(notBefore) });
  await refused(c, { reason: "not yet valid", rule: "RFC 5280 §4.1.2.5", index: 0 }, {
    at: new Date(notBefore - 1),
  });
});

// ---------------------------------------------------------------------------------------------
// CRLs

interface CrlSpec {
  extensions?: (defaults: x509.Extension[]) => x509.Extension[];
  thisUpdate?: Date;
  nextUpdate?: Date | null;
  revoked?: Cert[];
}

async function crl(issuer: Cert, spec: CrlSpec = {}): Promise<Uint8Array> {
  const signing = generatorSigning(issuer.key);
  const now = Date.now();
  const keyId = issuer.cert.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId;
  const defaults: x509.Extension[] = [
    new x509.Extension("2.5.29.20", false, bufferSource(encodeTlv(0x02, new Uint8Array([1])))),
    new x509.AuthorityKeyIdentifierExtension(keyId),
  ];
  const generated = await x509.X509CrlGenerator.create(
    {
      issuer: issuer.cert.subject,
      thisUpdate: spec.thisUpdate ?? new Date(now - DAY),
      nextUpdate: spec.nextUpdate === null ? undefined : spec.nextUpdate ?? new Date(now + DAY),
      signingKey: signing.signingKey,
      signingAlgorithm: signing.signingAlgorithm,
      extensions: spec.extensions ? spec.extensions(defaults) : defaults,
      entries: (spec.revoked ?? []).map((c) => ({
        serialNumber: c.cert.serialNumber,
        revocationDate: new Date(now - 1000),
      })),
    },
    signing.crypto,
  );
  return new Uint8Array(generated.rawData);
}

function idp(options: Partial<asn1X509.IssuingDistributionPoint>, critical = true) {
  return new x509.Extension(
    "2.5.29.28",
    critical,
    AsnConvert.serialize(new asn1X509.IssuingDistributionPoint(options)),
  );
}

Deno.test("CRLs: CRLNumber present and not critical; nextUpdate; thisUpdate; algorithms", async () => {
  const c = await chain();
  const check = (crls: Uint8Array[]): Check => ({ crls, crlCheck: "leaf" });
  const invalid = async (spec: CrlSpec, rule: string, detail: RegExp) =>
    await refused(
      c,
      { reason: "crl invalid", rule, index: 1, detail },
      check([await crl(c.intermediate, spec)]),
    );
  await invalid({ extensions: without("2.5.29.20") }, "RFC 5280 §5.2.3", /no CRLNumber/);
  await invalid({ extensions: flip("2.5.29.20") }, "RFC 5280 §5.2.3", /CRLNumber critical/);
  await invalid({ nextUpdate: null }, "RFC 5280 §5.1.2.5", /no nextUpdate/);
  await invalid(
    { thisUpdate: new Date(Date.now() - DAY), nextUpdate: new Date(Date.now() - 2 * DAY) },
    "RFC 5280 §5.1.2.5",
    /nextUpdate before its thisUpdate/,
  );
  await invalid(
    { thisUpdate: new Date(Date.now() + DAY), nextUpdate: new Date(Date.now() + 2 * DAY) },
    "RFC 5280 §5.1.2.4",
    /not valid before/,
  );
  await invalid(
    { thisUpdate: new Date(Date.now() - 3 * DAY), nextUpdate: new Date(Date.now() - DAY) },
    "RFC 5280 §5.1.2.5",
    /expired/,
  );
  // A CRL whose tbsCertList.signature is not its signatureAlgorithm.
  const good = await crl(c.intermediate);
  const [tbs, outer] = children(good, readTlv(good));
  const fields = children(good, tbs).map((f) => tlvBytes(good, f));
  fields[1] = encodeTlv(0x30, oidDer("1.2.840.10045.4.3.3"));
  const newTbs = encodeTlv(0x30, ...fields);
  const signature = ecdsaRawToDer(await c.intermediate.key.sign(newTbs));
  const mismatched = encodeTlv(
    0x30,
    newTbs,
    tlvBytes(good, outer),
    encodeTlv(0x03, new Uint8Array([0, ...signature])),
  );
  await refused(c, {
    reason: "crl invalid",
    rule: "RFC 5280 §5.1.1.2",
    index: 1,
  }, check([mismatched]));
  // The well-formed CRL passes, and revokes what it lists.
  await verify(c, check([good]));
  await refused(
    c,
    { reason: "revoked", rule: "RFC 5280 §6.3.3", index: 0 },
    check([await crl(c.intermediate, { revoked: [c.leaf] })]),
  );
});

Deno.test("CRLs: the issuing distribution point decides which certificates a CRL covers", async () => {
  const c = await chain();
  const withIdp = (ext: x509.Extension) => ({ extensions: (l: x509.Extension[]) => [...l, ext] });
  const leafCheck = async (spec: CrlSpec) => ({
    crls: [await crl(c.intermediate, spec)],
    crlCheck: "leaf" as const,
  });
  // Not critical: invalid.
  await refused(
    c,
    { reason: "crl invalid", rule: "RFC 5280 §5.2.5", index: 1 },
    await leafCheck(withIdp(idp({ onlyContainsUserCerts: true }, false))),
  );
  // Indirect CRLs are not supported.
  await refused(
    c,
    { reason: "crl invalid", rule: "RFC 5280 §5.2.5", index: 1 },
    await leafCheck(withIdp(idp({ indirectCRL: true }))),
  );
  // A CRL of CA certificates only, or of some reasons only, does not cover the leaf.
  for (
    const scope of [{ onlyContainsCACerts: true }, { onlySomeReasons: new asn1X509.Reason(1) }]
  ) {
    await refused(
      c,
      { reason: "crl missing", rule: "RFC 5280 §6.3", index: 0 },
      await leafCheck(withIdp(idp(scope))),
    );
  }
  // A CRL of user certificates covers the leaf, and revokes it.
  await refused(
    c,
    { reason: "revoked", rule: "RFC 5280 §6.3.3", index: 0 },
    await leafCheck({ ...withIdp(idp({ onlyContainsUserCerts: true })), revoked: [c.leaf] }),
  );
  // A CRL for a named distribution point covers only certificates that name it.
  const point = new asn1X509.DistributionPointName({
    fullName: [
      new asn1X509.GeneralName({ uniformResourceIdentifier: "http://crl.rules.test/a.crl" }),
    ],
  });
  await refused(
    c,
    { reason: "crl missing", rule: "RFC 5280 §6.3", index: 0 },
    await leafCheck(withIdp(idp({ distributionPoint: point }))),
  );
  const naming = await craft({
    subject: `CN=${HOST}`,
    issuer: c.intermediate,
    edit: (l) => [...l, new x509.CRLDistributionPointsExtension(["http://crl.rules.test/a.crl"])],
  });
  const named = { ...c, leaf: naming };
  await refused(named, { reason: "revoked", rule: "RFC 5280 §6.3.3", index: 0 }, {
    crls: [
      await crl(c.intermediate, {
        ...withIdp(idp({ distributionPoint: point })),
        revoked: [naming],
      }),
    ],
    crlCheck: "leaf",
  });
});

Deno.test("pki init and pki issue never make a certificate the profile refuses", async () => {
  await using dir = await tempDir();
  for (const alg of ["mldsa65", "ecdsa-p384"] as KeyAlgorithm[]) {
    const pkiDir = `${dir.path}/${alg}`;
    await initPki({ dir: pkiDir, alg });
    const read = (name: string) => readCertificatesFile(`${pkiDir}/${name}`);
    const [rootDer] = await read(PKI_FILES.rootCert);
    const [serverLeaf, serverCa] = await read(PKI_FILES.serverCert);
    const [clientLeaf, clientCa] = await read(PKI_FILES.clientCert);
    const anchors = { trustAnchors: [rootDer] };
    await verifyChain(serverLeaf, {
      ...anchors,
      intermediates: [serverCa],
      purpose: "server",
      host: "qtls-server.qsign.local",
    });
    await verifyChain(clientLeaf, { ...anchors, intermediates: [clientCa], purpose: "client" });
    for (const [profile, cn] of [["server", "api.qsign.local"], ["client", "10.0.0.7"]] as const) {
      const issued = await issueLeaf({ dir: pkiDir, profile, cn });
      await verifyChain(issued.chain[0], {
        ...anchors,
        intermediates: issued.chain.slice(1),
        purpose: profile,
      });
    }
  }

  // A request for an RSA-1024 key is refused rather than certified.
  const weak = await crypto.subtle.generateKey(
    {
      name: "RSASSA-PKCS1-v1_5",
      hash: "SHA-256",
      modulusLength: 1024,
      publicExponent: new Uint8Array([1, 0, 1]),
    },
    true,
    ["sign", "verify"],
  ) as CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: "CN=weak.qsign.local",
    keys: weak,
    signingAlgorithm: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
  });
  await rejects(
    issueLeaf({
      dir: `${dir.path}/mldsa65`,
      profile: "client",
      csrDer: new Uint8Array(csr.rawData),
      sans: ["DNS:weak.qsign.local"],
    }),
    (e: Error) => e instanceof CsrError && /1024 bits, below 2048/.test(e.message),
  );
});

// ---------------------------------------------------------------------------------------------
// OpenSSL agrees with every chain accepted above.

Deno.test("OpenSSL 3.5 accepts every chain this profile accepts", async () => {
  // Runs last (tests run in file order): `accepted` is filled by the tests above.
  ok(accepted.length >= 8, `only ${accepted.length} accepted chains recorded`);
  await using dir = await tempDir();
  const cases = accepted.map(({ name, chain: c, untrusted }) => ({
    name,
    chain: [c.leaf.pem, ...(untrusted ?? []).map((u) => u.pem), c.intermediate.pem],
    key: privateKeyPem(c.leaf.loaded!),
    root: c.root.pem,
    host: HOST,
  }));
  const file = `${dir.path}/cases.json`;
  await Deno.writeTextFile(file, JSON.stringify(cases));
  const script = new URL("./peer/chain_check.mjs", import.meta.url).pathname;
  const out = await new Deno.Command(PEER_NODE, {
    args: [script, file],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const results = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    name: string;
    authorized: boolean;
    error?: string;
  }[];
  for (const r of results) ok(r.authorized, `OpenSSL refused "${r.name}": ${r.error}`);
});
