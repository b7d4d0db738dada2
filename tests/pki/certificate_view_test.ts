/**
 * CertificateView against @peculiar/x509: the same fields on every kind of certificate the test
 * corpora build (each key algorithm, the CA's own PKIs, the name corpus, odd subjects, policy and
 * CRL extensions, the path-building maze), and crafted DER that breaks a strict-DER or RFC 5280
 * rule refused with a CertificateFormatError, which the verifier reports as before.
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { AsnConvert } from "@peculiar/asn1-schema";
import {
  type Certificate as AsnCertificate,
  CRLDistributionPoints,
  GeneralNames,
} from "@peculiar/asn1-x509";
import { deepEqual, equal, ok, rejects, throws } from "node:assert/strict";
import { join } from "node:path";
import { children, encodeTlv, readTlv, type Tlv, tlvBytes } from "../../src/crypto/der.ts";
import { PKI_FILES } from "../../src/pki/ca.ts";
import { toHex } from "../../src/hex.ts";
import {
  CertificateFormatError,
  type CertificateProblem,
  CertificateView,
} from "../../src/pki/certificate_view.ts";
import { toBeSigned } from "../../src/pki/der.ts";
import { KEY_ALGORITHMS } from "../../src/pki/keys.ts";
import { pemDecodeAll, pemEncode } from "../../src/pki/pem.ts";
import { ChainVerificationError, verifyChain } from "../../src/pki/verify.ts";
import { loadTrust } from "../../src/daemon/materials.ts";
import { ConfigError } from "../../src/errors.ts";
import { tempDir } from "../support/env.ts";
import { makePki } from "../tls/support/pki.ts";
import { CLIENT_AUTH, make, makeChain, SERVER_AUTH } from "./helpers.ts";
import { crossCertificateMaze } from "./maze.ts";
import { gn, ncExtension, sanExtension } from "./name_support.ts";

/** Asserts that the reader sees `der` as @peculiar/x509 does, field by field. */
function sameAsPeculiar(der: Uint8Array, label: string): void {
  const cert = new x509.X509Certificate(der.slice());
  const asn = (cert as unknown as { asn: AsnCertificate }).asn;
  const view = CertificateView.parse(der);
  const tbs = asn.tbsCertificate;
  const msg = (field: string) => `${label}: ${field}`;
  deepEqual(view.der, der, msg("der"));
  equal(view.version, tbs.version + 1, msg("version"));
  deepEqual(view.tbsCertificate, toBeSigned(der), msg("tbsCertificate"));
  equal(view.serialNumber, cert.serialNumber.toLowerCase(), msg("serialNumber"));
  deepEqual(view.serial, new Uint8Array(tbs.serialNumber), msg("serial"));
  equal(view.signatureAlgorithm.oid, asn.signatureAlgorithm.algorithm, msg("signatureAlgorithm"));
  deepEqual(view.signatureValue, new Uint8Array(cert.signature), msg("signatureValue"));
  equal(view.subject, cert.subject, msg("subject"));
  equal(view.issuer, cert.issuer, msg("issuer"));
  deepEqual(view.subjectDer, new Uint8Array(cert.subjectName.toArrayBuffer()), msg("subjectDer"));
  deepEqual(view.issuerDer, new Uint8Array(cert.issuerName.toArrayBuffer()), msg("issuerDer"));
  equal(view.emptySubject, cert.subjectName.toJSON().length === 0, msg("emptySubject"));
  for (const field of ["CN", "OU", "O", "E", "DC", "2.5.4.5"]) {
    deepEqual(view.subjectField(field), cert.subjectName.getField(field), msg(field));
  }
  equal(view.notBefore.getTime(), cert.notBefore.getTime(), msg("notBefore"));
  equal(view.notAfter.getTime(), cert.notAfter.getTime(), msg("notAfter"));
  deepEqual(view.subjectPublicKeyInfo, new Uint8Array(cert.publicKey.rawData), msg("spki"));
  equal(
    view.publicKeyAlgorithm.oid,
    tbs.subjectPublicKeyInfo.algorithm.algorithm,
    msg("publicKeyAlgorithm"),
  );
  equal(view.hasIssuerUniqueId, tbs.issuerUniqueID !== undefined, msg("issuerUniqueID"));
  equal(view.hasSubjectUniqueId, tbs.subjectUniqueID !== undefined, msg("subjectUniqueID"));
  deepEqual(
    view.extensions.map((e) => [e.oid, e.critical, toHex(e.value)]),
    cert.extensions.map((e) => [e.type, e.critical, toHex(new Uint8Array(e.value))]),
    msg("extensions"),
  );

  const basic = cert.getExtension(x509.BasicConstraintsExtension);
  deepEqual(
    view.basicConstraints,
    basic ? { ca: basic.ca, pathLength: basic.pathLength } : undefined,
    msg("basicConstraints"),
  );
  equal(view.keyUsage, cert.getExtension(x509.KeyUsagesExtension)?.usages, msg("keyUsage"));
  deepEqual(
    view.extendedKeyUsage,
    cert.getExtension(x509.ExtendedKeyUsageExtension)?.usages,
    msg("extendedKeyUsage"),
  );
  equal(
    view.subjectKeyIdentifier,
    cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId,
    msg("subjectKeyIdentifier"),
  );
  equal(
    view.authorityKeyIdentifier?.keyIdentifier,
    cert.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId,
    msg("authorityKeyIdentifier"),
  );
  deepEqual(
    view.certificatePolicies,
    cert.getExtension(x509.CertificatePolicyExtension)?.policies,
    msg("certificatePolicies"),
  );
  const points = cert.extensions.find((e) => e.type === "2.5.29.31");
  deepEqual(
    view.crlDistributionPoints?.map((p) => p.fullName?.map(toHex)),
    points &&
      AsnConvert.parse(points.value, CRLDistributionPoints).map((p) =>
        p.distributionPoint?.fullName?.map((n) => toHex(new Uint8Array(AsnConvert.serialize(n))))
      ),
    msg("crlDistributionPoints"),
  );
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  if (san) {
    const names = view.subjectAltName!;
    const text = (form: string) =>
      names.flatMap((n) => n.form === form && "text" in n ? [n.text] : []);
    const json = san.names.toJSON();
    const peculiar = (type: string) => json.filter((n) => n.type === type).map((n) => n.value);
    deepEqual(text("dNSName"), peculiar("dns"), msg("SAN dNSName"));
    deepEqual(text("rfc822Name"), peculiar("email"), msg("SAN rfc822Name"));
    deepEqual(text("uniformResourceIdentifier"), peculiar("url"), msg("SAN URI"));
    // The asn1 schema's count: the extension class leaves otherNames out.
    equal(names.length, AsnConvert.parse(san.value, GeneralNames).length, msg("SAN entries"));
  } else {
    equal(view.extension("2.5.29.17"), undefined, msg("SAN"));
  }
}

const POLICY = "1.3.6.1.4.1.55555.1";

/** AlgorithmIdentifier ecdsa-with-SHA384, for a tbsCertificate.signature that differs from the outer one. */
const ECDSA_SHA384 = Uint8Array.of(
  0x30,
  0x0a,
  0x06,
  0x08,
  0x2a,
  0x86,
  0x48,
  0xce,
  0x3d,
  0x04,
  0x03,
  0x03,
);

Deno.test("every key algorithm's chain reads as @peculiar/x509 reads it", async () => {
  for (const alg of KEY_ALGORITHMS) {
    const { root, intermediate, leaf } = await makeChain(alg);
    for (const [name, c] of Object.entries({ root, intermediate, leaf })) {
      sameAsPeculiar(c.der, `${alg} ${name}`);
    }
  }
});

Deno.test("the CA's own PKIs (pki init, issued leaves) read as @peculiar/x509 reads them", async () => {
  await using dir = await tempDir();
  for (const alg of ["mldsa65", "ecdsa-p384", "rsa-pss-3072"] as const) {
    const pki = await makePki(join(dir.path, alg), alg);
    const ders = [
      pki.rootDer,
      ...pki.server.chain,
      ...pki.client.chain,
      ...pemDecodeAll(await Deno.readTextFile(join(pki.dir, PKI_FILES.rootCert)), "CERTIFICATE"),
    ];
    ders.forEach((der, i) => sameAsPeculiar(der, `${alg} PKI #${i}`));
  }
});

Deno.test("names, subjects and extensions of the corpora read as @peculiar/x509 reads them", async () => {
  const issuer = await make({ subject: "CN=Corpus CA", alg: "ecdsa-p256", ca: { pathLength: 2 } });
  const leaf = (subject: string, extensions: x509.Extension[] = [], sans?: string[]) =>
    make({ subject, issuer, alg: "ecdsa-p256", eku: [SERVER_AUTH, CLIENT_AUTH], sans, extensions });
  const subjects = [
    "CN=a\\, b, O=Comma\\+Plus",
    "CN=\\#hash, OU=trailing space\\ ",
    "CN=x+OU=multi-valued, O=RDN",
    "E=alice@example.test, DC=example, DC=test",
    "CN=Ünïcödé, O=UTF8",
    'CN=quote\\"d, L=Lyon, ST=Rhône, C=FR, SN=Surname, G=Given, T=Title',
    "2.5.4.5=12345, CN=by OID",
  ];
  const built = [
    issuer,
    ...await Promise.all(subjects.map((s) => leaf(s))),
    await leaf("CN=sans.example.test", [], [
      "DNS:sans.example.test",
      "DNS:*.wild.example.test",
      "IP:10.1.2.3",
      "IP:fd00::1",
      "URI:https://sans.example.test/path",
      "EMAIL:a@sans.example.test",
    ]),
    await leaf("O=Raw Names", [
      sanExtension([
        gn.dns("raw.example"),
        gn.other(),
        gn.dir("CN=Directory, O=Name"),
        gn.octets([1, 2, 3, 4, 5, 6, 7, 8]),
        gn.email("b@raw.example"),
      ], true),
    ]),
    await make({
      subject: "CN=Constrained CA",
      issuer,
      alg: "ecdsa-p256",
      ca: {},
      extensions: [
        ncExtension({
          permitted: [gn.dns("example.com"), gn.ip("10.0.0.0/8")],
          excluded: [gn.email("bad.example.com")],
        }),
        new x509.CertificatePolicyExtension([POLICY, "2.5.29.32.0"]),
        new x509.Extension("2.5.29.36", true, Uint8Array.of(0x30, 0x03, 0x80, 0x01, 0x00)),
      ],
    }),
    await leaf("CN=points.example.test", [
      new x509.CRLDistributionPointsExtension(["http://crl.example.test/ca.crl"]),
      new x509.CertificatePolicyExtension([POLICY]),
    ], ["DNS:points.example.test"]),
  ];
  built.forEach((c, i) => sameAsPeculiar(c.der, `corpus #${i}`));
  const maze = await crossCertificateMaze(3);
  maze.chain.forEach((der, i) => sameAsPeculiar(der, `maze #${i}`));
});

// ---------------------------------------------------------------------------------------------
// Crafted DER

/** The DER of one element with `tlv`'s tag and `content`, header written as given. */
function withHeader(header: number[], content: Uint8Array): Uint8Array {
  const out = new Uint8Array(header.length + content.length);
  out.set(header);
  out.set(content, header.length);
  return out;
}

/** The certificate's DER with its tbsCertificate fields (DER of each) changed by `edit`. */
function editTbs(der: Uint8Array, edit: (fields: Uint8Array[]) => void): Uint8Array {
  const [tbs, algorithm, signature] = children(der, readTlv(der));
  const fields = children(der, tbs).map((f) => tlvBytes(der, f));
  edit(fields);
  return encodeTlv(
    0x30,
    encodeTlv(0x30, ...fields),
    tlvBytes(der, algorithm),
    tlvBytes(der, signature),
  );
}

/** The extension TLVs of a v3 certificate's tbsCertificate fields, edited and written back. */
function editExtensions(der: Uint8Array, edit: (extensions: Uint8Array[]) => void): Uint8Array {
  return editTbs(der, (fields) => {
    const wrapper = fields[fields.length - 1];
    const list = children(wrapper, readTlv(wrapper));
    const sequence = list[0];
    const extensions = children(wrapper, sequence).map((e: Tlv) => tlvBytes(wrapper, e));
    edit(extensions);
    fields[fields.length - 1] = encodeTlv(0xa3, encodeTlv(0x30, ...extensions));
  });
}

/**
 * The certificate with the critical flag of its first extension (basicConstraints, critical: the
 * BOOLEAN 01 01 FF) written as `value`.
 */
function withCriticalByte(der: Uint8Array, value: number): Uint8Array {
  return editExtensions(der, (list) => {
    const at = list[0].indexOf(0xff, 5);
    equal(list[0][at - 2], 0x01);
    list[0] = Uint8Array.from(list[0], (b, i) => i === at ? value : b);
  });
}

function refusedAs(der: Uint8Array, problem: CertificateProblem, detail: RegExp): void {
  throws(
    () => CertificateView.parse(der),
    (e: unknown) => {
      ok(e instanceof CertificateFormatError, String(e));
      equal(e.problem, problem, e.message);
      ok(detail.test(e.message), e.message);
      return true;
    },
  );
}

/** A UTCTime or GeneralizedTime element. */
const time = (tag: number, text: string) => encodeTlv(tag, new TextEncoder().encode(text));

Deno.test("strict DER: lengths, trailing bytes, BOOLEANs, DEFAULTs and INTEGERs", async () => {
  const { leaf } = await makeChain("ecdsa-p256");
  const der = leaf.der;
  const outer = readTlv(der);
  const content = der.subarray(outer.contentStart);
  const length = content.length;
  ok(CertificateView.parse(der));

  refusedAs(
    withHeader([0x30, 0x83, 0, length >> 8, length & 0xff], content),
    "malformed",
    /non-minimal length/,
  );
  refusedAs(
    withHeader([0x30, 0x80], new Uint8Array([...content, 0, 0])),
    "malformed",
    /unsupported length form/,
  );
  refusedAs(new Uint8Array([...der, 0]), "malformed", /not one SEQUENCE/);
  refusedAs(der.subarray(0, der.length - 1), "malformed", /past its container/);

  refusedAs(withCriticalByte(der, 0x01), "malformed", /BOOLEAN is not 0x00 or 0xFF/);
  refusedAs(withCriticalByte(der, 0x00), "malformed", /critical FALSE encoded/);

  // A serial with a needless leading zero octet.
  refusedAs(
    editTbs(der, (fields) => fields[1] = Uint8Array.of(0x02, 0x02, 0x00, 0x01)),
    "malformed",
    /non-minimal INTEGER/,
  );
  // v1 written out (it is the DEFAULT), and extensions in a v2 certificate.
  refusedAs(
    editTbs(der, (fields) => fields[0] = Uint8Array.of(0xa0, 0x03, 0x02, 0x01, 0x00)),
    "malformed",
    /version/,
  );
  refusedAs(
    editTbs(der, (fields) => fields[0] = Uint8Array.of(0xa0, 0x03, 0x02, 0x01, 0x01)),
    "malformed",
    /extensions in a certificate before v3/,
  );
  // Unique identifiers are read (and allowed) in v3, in their place before the extensions.
  const withIds = editTbs(der, (fields) => {
    fields.splice(fields.length - 1, 0, Uint8Array.of(0x81, 0x02, 0x00, 0x2a));
  });
  ok(CertificateView.parse(withIds).hasIssuerUniqueId);
  ok(!CertificateView.parse(withIds).hasSubjectUniqueId);
  sameAsPeculiar(withIds, "with issuerUniqueID");
  refusedAs(
    editTbs(der, (fields) => fields.push(Uint8Array.of(0x81, 0x02, 0x00, 0x2a))),
    "malformed",
    /unexpected field/,
  );
});

Deno.test("RFC 5280: times, duplicate extensions, and the two signature algorithms", async () => {
  const { leaf } = await makeChain("ecdsa-p256");
  const der = leaf.der;
  const validity = (notBefore: Uint8Array, notAfter: Uint8Array) =>
    editTbs(der, (fields) => fields[4] = encodeTlv(0x30, notBefore, notAfter));
  const utc = (text: string) => time(0x17, text);
  const generalized = (text: string) => time(0x18, text);
  const good = utc("250101000000Z");

  ok(CertificateView.parse(validity(good, generalized("20500101000000Z"))));
  equal(
    CertificateView.parse(validity(utc("491231235959Z"), good)).notBeforeMs,
    Date.UTC(2049, 11, 31, 23, 59, 59),
  );
  equal(
    CertificateView.parse(validity(utc("500101000000Z"), good)).notBefore.getUTCFullYear(),
    1950,
  );
  for (
    const [bad, why] of [
      [utc("2501010000Z"), /not in the RFC 5280 form/], // no seconds
      [utc("250101000000+0100"), /not in the RFC 5280 form/], // an offset
      [generalized("20250101000000.5Z"), /not in the RFC 5280 form/], // a fraction
      [generalized("20490101000000Z"), /before 2050/],
      [utc("250230000000Z"), /not a date/], // 30 February
      [utc("250101240000Z"), /not a date/],
      [encodeTlv(0x04, new TextEncoder().encode("250101000000Z")), /not a Time/],
    ] as const
  ) {
    refusedAs(validity(bad, good), "malformed", why);
  }

  const duplicate = editExtensions(der, (list) => list.push(list[list.length - 1]));
  refusedAs(duplicate, "duplicate extension", /has extension 2\.5\.29\.\d+ twice/);

  refusedAs(
    editTbs(der, (fields) => fields[2] = ECDSA_SHA384),
    "signature algorithm mismatch",
    /signatureAlgorithm differs from tbsCertificate\.signature/,
  );
});

Deno.test("the verifier reports each refusal with the reason it gave before", async () => {
  const { root, intermediate, leaf } = await makeChain("ecdsa-p256");
  const verify = async (der: Uint8Array) => {
    try {
      await verifyChain(der, {
        trustAnchors: [root.der],
        intermediates: [intermediate.der],
        purpose: "server",
      });
    } catch (e) {
      ok(e instanceof ChainVerificationError, String(e));
      return { reason: e.reason, rule: e.rule, index: e.index };
    }
    throw new Error("verified");
  };
  deepEqual(await verify(new Uint8Array([...leaf.der, 0])), {
    reason: "malformed certificate",
    rule: undefined,
    index: undefined,
  });
  deepEqual(await verify(editExtensions(leaf.der, (list) => list.push(list[0]))), {
    reason: "duplicate extension",
    rule: "RFC 5280 §4.2",
    index: 0,
  });
  deepEqual(await verify(editTbs(leaf.der, (fields) => fields[2] = ECDSA_SHA384)), {
    reason: "signature algorithm mismatch",
    rule: "RFC 5280 §4.1.1.2",
    index: 0,
  });
  // A broken extension value the verifier reads is a malformed certificate, as it was.
  const brokenUsage = editExtensions(leaf.der, (list) => {
    list[1] = encodeTlv(
      0x30,
      Uint8Array.of(0x06, 0x03, 0x55, 0x1d, 0x0f),
      encodeTlv(0x04, Uint8Array.of(0x04, 0x01, 0x00)),
    );
  });
  equal((await verify(brokenUsage)).reason, "malformed certificate");
});

Deno.test("a view into a larger buffer keeps only the certificate", async () => {
  const { leaf } = await makeChain("mldsa44");
  const message = new Uint8Array(leaf.der.length + 100);
  message.set(leaf.der, 50);
  const view = CertificateView.parse(message.subarray(50, 50 + leaf.der.length));
  equal(view.der.buffer.byteLength, leaf.der.length);
  deepEqual(view.der, leaf.der);
});

Deno.test("a configured certificate the reader refuses is a configuration error at load", async () => {
  await using dir = await tempDir();
  const { root } = await makeChain("ecdsa-p256");
  const loose = withCriticalByte(root.der, 0x01);
  const path = join(dir.path, "ca.pem");
  await Deno.writeTextFile(
    path,
    pemEncode("CERTIFICATE", root.der) + pemEncode("CERTIFICATE", loose),
  );
  const origins = { ca: { field: "ca", file: "qsign.toml" } };
  await rejects(() => loadTrust({ ca: [path], crl: [], origins }), (e: unknown) => {
    ok(e instanceof ConfigError, String(e));
    ok(/certificate #2 is not strict DER X\.509 .*BOOLEAN/.test(e.message), e.message);
    return true;
  });
});
