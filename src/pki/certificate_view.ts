/**
 * The certificate reader of path validation and the TLS handshake. A handshake that meets a
 * certificate it has not seen must not spend a millisecond in a general ASN.1 library
 * (@peculiar/x509 builds an object tree of the whole certificate, ML-DSA key and signature
 * included): `CertificateView` checks the DER structure of the certificate once, strictly, and
 * keeps the DER, offsets into it and the subject and issuer as text (path building compares
 * them). The RDNs the name rules read and the extensions are decoded when first asked for, once.
 * Building and printing certificates stays with @peculiar/x509 (ca.ts, describe.ts).
 *
 * Strict means DER (X.690 §10) and the RFC 5280 certificate syntax: definite minimal lengths,
 * nothing after the certificate or inside a structure past its fields, DEFAULT values absent
 * (version v1, critical FALSE, cA FALSE), BOOLEANs 0x00 or 0xFF, shortest INTEGERs and OIDs,
 * validity in UTCTime through 2049 and GeneralizedTime from 2050 (§4.1.2.5), extensions only in
 * v3, each at most once (§4.2), and tbsCertificate.signature equal to signatureAlgorithm
 * (§4.1.1.2). Anything else is a `CertificateFormatError`.
 */
import {
  checkInteger,
  children,
  decodeBoolean,
  decodeOid,
  DerError,
  readTlv,
  Tag,
  type Tlv,
  tlvBytes,
  tlvContent,
} from "../crypto/der.ts";

/** What is wrong with a certificate that cannot be read. */
export type CertificateProblem =
  | "malformed"
  | "duplicate extension"
  | "signature algorithm mismatch";

/** A certificate that is not a strict DER X.509 certificate. */
export class CertificateFormatError extends Error {
  constructor(
    readonly problem: CertificateProblem,
    detail: string,
    /** The subject, when the certificate got as far as having a readable one. */
    readonly subject?: string,
  ) {
    super(detail);
    this.name = "CertificateFormatError";
  }
}

/** An AlgorithmIdentifier: its OID and the DER of its parameters, if any. */
export interface AlgorithmIdentifier {
  readonly oid: string;
  readonly parameters?: Uint8Array;
  /** The whole AlgorithmIdentifier's DER. */
  readonly der: Uint8Array;
}

/** One extension as encoded; `value` is the content of extnValue. */
export interface CertificateExtension {
  readonly oid: string;
  readonly critical: boolean;
  readonly value: Uint8Array;
}

/** The keyUsage bits, as numbers (bit n of the BIT STRING is `1 << n`, as @peculiar/x509). */
export const KeyUsage = {
  digitalSignature: 1,
  nonRepudiation: 2,
  keyEncipherment: 4,
  dataEncipherment: 8,
  keyAgreement: 16,
  keyCertSign: 32,
  cRLSign: 64,
  encipherOnly: 128,
  decipherOnly: 256,
} as const;

const EXTENSION_OIDS = {
  subjectKeyIdentifier: "2.5.29.14",
  keyUsage: "2.5.29.15",
  subjectAltName: "2.5.29.17",
  basicConstraints: "2.5.29.19",
  nameConstraints: "2.5.29.30",
  crlDistributionPoints: "2.5.29.31",
  certificatePolicies: "2.5.29.32",
  policyConstraints: "2.5.29.36",
  authorityKeyIdentifier: "2.5.29.35",
  extendedKeyUsage: "2.5.29.37",
} as const;

export interface BasicConstraints {
  readonly ca: boolean;
  readonly pathLength?: number;
}

export interface AuthorityKeyIdentifier {
  /** The keyIdentifier, lowercase hex ("" when present and empty). */
  readonly keyIdentifier?: string;
  readonly hasAuthorityCertIssuer: boolean;
  readonly hasAuthorityCertSerialNumber: boolean;
}

export interface PolicyConstraints {
  /** SkipCerts values; values beyond 2^20 are read as 2^20. */
  readonly requireExplicitPolicy?: number;
  readonly inhibitPolicyMapping?: number;
}

/** One DistributionPoint of cRLDistributionPoints: the DER of each GeneralName of its fullName. */
export interface DistributionPoint {
  readonly fullName?: readonly Uint8Array[];
}

// ---------------------------------------------------------------------------------------------
// General names and distinguished names

/** The GeneralName forms (the context tag numbers of RFC 5280 §4.2.1.6). */
const GENERAL_NAME_FORMS = [
  "otherName",
  "rfc822Name",
  "dNSName",
  "x400Address",
  "directoryName",
  "ediPartyName",
  "uniformResourceIdentifier",
  "iPAddress",
  "registeredID",
] as const;
export type GeneralNameForm = typeof GENERAL_NAME_FORMS[number];

/** One GeneralName: IA5 forms as text, iPAddress as octets, directoryName as its RDNs. */
export type GeneralName =
  | { form: "rfc822Name" | "dNSName" | "uniformResourceIdentifier"; text: string }
  | { form: "iPAddress"; octets: Uint8Array }
  | { form: "directoryName"; rdns: string[]; text: string }
  | { form: "otherName" | "x400Address" | "ediPartyName" | "registeredID" };

/** Reads the GeneralName `tlv` of `der`. */
export function parseGeneralName(der: Uint8Array, tlv: Tlv): GeneralName {
  const number = tlv.tag & 0x1f;
  const constructed = (tlv.tag & 0x20) !== 0;
  if ((tlv.tag & 0xc0) !== 0x80 || number >= GENERAL_NAME_FORMS.length) {
    throw new DerError(`GeneralName with tag 0x${tlv.tag.toString(16)}`);
  }
  const form = GENERAL_NAME_FORMS[number];
  const content = tlvContent(der, tlv);
  switch (form) {
    case "rfc822Name":
    case "dNSName":
    case "uniformResourceIdentifier":
      if (constructed) throw new DerError(`constructed ${form}`);
      return { form, text: latin1(content) };
    case "iPAddress":
      if (constructed) throw new DerError("constructed iPAddress");
      return { form, octets: content };
    case "directoryName": {
      const inner = children(der, tlv);
      if (!constructed || inner.length !== 1) throw new DerError("directoryName is not one Name");
      const name = parseName(der, inner[0]);
      return { form, rdns: name.rdns, text: name.text };
    }
    default:
      return { form };
  }
}

/** A Name as path validation reads it. */
export interface ParsedName {
  /** Each RDN normalized for comparison (RFC 5280 §7.1: case and spaces do not count). */
  rdns: string[];
  /** The attributes in order, values decoded as they are (undefined: not a string type). */
  attributes: { oid: string; value: string | undefined }[];
  /** RFC 4514-ish text with OIDs, for messages. */
  text: string;
}

/** Reads a Name (SEQUENCE OF SET OF AttributeTypeAndValue), refusing an empty RDN. */
function parseName(der: Uint8Array, name: Tlv): ParsedName {
  const rdns: string[] = [];
  const attributes: ParsedName["attributes"] = [];
  const texts: string[] = [];
  for (const rdn of nameRdns(der, name)) {
    if (!rdn.length) throw new DerError("empty RDN");
    const members: string[] = [];
    const memberTexts: string[] = [];
    for (const { type, value } of rdn) {
      const oid = decodeOid(tlvContent(der, type));
      const text = decodeString(value.tag, tlvContent(der, value));
      attributes.push({ oid, value: text });
      const raw = `#${hex(tlvBytes(der, value))}`;
      members.push(`${oid}=${text === undefined ? raw : comparableString(text)}`);
      memberTexts.push(`${oid}=${text ?? raw}`);
    }
    rdns.push(members.sort().join("+"));
    texts.push(memberTexts.join("+"));
  }
  return { rdns, attributes, text: texts.join(", ") };
}

/** The RDNs of a Name, each as its (type, value) pairs; the structure is checked. */
function nameRdns(der: Uint8Array, name: Tlv): { type: Tlv; value: Tlv }[][] {
  if (name.tag !== Tag.sequence) throw new DerError("Name is not a SEQUENCE");
  return children(der, name).map((rdn) => {
    if (rdn.tag !== Tag.set) throw new DerError("RDN is not a SET");
    return children(der, rdn).map((atv) => {
      const parts = atv.tag === Tag.sequence ? children(der, atv) : [];
      if (parts.length !== 2 || parts[0].tag !== Tag.oid) {
        throw new DerError("AttributeTypeAndValue is not (OID, value)");
      }
      return { type: parts[0], value: parts[1] };
    });
  });
}

/** caseIgnoreMatch, approximately: outer spaces dropped, inner runs of spaces as one. */
function comparableString(value: string): string {
  return value.trim().replace(/\s+/g, " ").toLowerCase();
}

const utf8 = new TextDecoder("utf-8");

/** The text of a DirectoryString-like value, or undefined for a non-string type. */
function decodeString(tag: number, content: Uint8Array): string | undefined {
  switch (tag) {
    case 0x0c: // UTF8String
      return utf8.decode(content);
    case 0x13: // PrintableString
    case 0x14: // TeletexString
    case 0x16: // IA5String
    case 0x1a: // VisibleString
      return latin1(content);
    case 0x1e: { // BMPString
      let out = "";
      for (let i = 0; i + 1 < content.length; i += 2) {
        out += String.fromCharCode((content[i] << 8) | content[i + 1]);
      }
      return out;
    }
    case 0x1c: { // UniversalString
      let out = "";
      for (let i = 0; i + 3 < content.length; i += 4) {
        const code = ((content[i] << 24) | (content[i + 1] << 16) | (content[i + 2] << 8) |
          content[i + 3]) >>> 0;
        out += code <= 0x10ffff ? String.fromCodePoint(code) : "\ufffd";
      }
      return out;
    }
    default:
      return undefined;
  }
}

/**
 * The short names in `subject`/`issuer` texts: what @peculiar/x509 prints, so that names in logs,
 * session tickets (recheck.ts compares them with CRL issuers) and `pki verify` stay as they were.
 */
const SHORT_NAMES: Record<string, string> = {
  "2.5.4.3": "CN",
  "2.5.4.7": "L",
  "2.5.4.8": "ST",
  "2.5.4.10": "O",
  "2.5.4.11": "OU",
  "2.5.4.6": "C",
  "0.9.2342.19200300.100.1.25": "DC",
  "1.2.840.113549.1.9.1": "E",
  "2.5.4.42": "G",
  "2.5.4.43": "I",
  "2.5.4.4": "SN",
  "2.5.4.12": "T",
};
const OIDS_BY_SHORT_NAME = Object.fromEntries(
  Object.entries(SHORT_NAMES).map(([oid, name]) => [name, oid]),
);
/** The value types @peculiar/x509 prints as text (DirectoryString and IA5String); others as #hex. */
const TEXT_VALUE_TAGS = new Set([0x0c, 0x13, 0x14, 0x16, 0x1c, 0x1e]);

/** A value as @peculiar/x509's AttributeValue.toString gives it: text, or hex of the DER. */
function attributeValueText(der: Uint8Array, value: Tlv): { text: string; raw: boolean } {
  return TEXT_VALUE_TAGS.has(value.tag)
    ? { text: decodeString(value.tag, tlvContent(der, value)) ?? "", raw: false }
    : { text: hex(tlvBytes(der, value)), raw: true };
}

const NEEDS_ESCAPE = /[,+"\\<>;\r\n\t]|^[ #]| $/;

/** RFC 4514 escaping as @peculiar/x509 does it (only the first control character is escaped). */
function escapeValue(value: string): string {
  if (!NEEDS_ESCAPE.test(value)) return value;
  return value
    .replace(/([,+"\\<>;])/g, "\\$1")
    .replace(/^([ #])/, "\\$1")
    .replace(/([ ]$)/, "\\$1")
    .replace(
      /([\r\n\t])/,
      (c) => `\\${c.charCodeAt(0).toString(16).padStart(2, "0").toUpperCase()}`,
    );
}

/** A Name as text, the way `X509Certificate.subject` prints it. */
function nameText(der: Uint8Array, name: Tlv): string {
  return nameRdns(der, name).map((rdn) =>
    rdn.map(({ type, value }) => {
      const oid = decodeOid(tlvContent(der, type));
      const { text, raw } = attributeValueText(der, value);
      return `${SHORT_NAMES[oid] ?? oid}=${raw ? `#${text}` : escapeValue(text)}`;
    }).join("+")
  ).join(", ");
}

/**
 * Bytes as one character each. Built in chunks rather than a character at a time: a string
 * appended to byte by byte is a tree of fragments, several times the size of the text, and these
 * texts stay with the view.
 */
function latin1(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i += 4096) {
    out += String.fromCharCode(...bytes.subarray(i, i + 4096));
  }
  return out;
}

const HEX_OCTETS = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"));

/** Lowercase hex, as one flat string (see latin1). */
function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => HEX_OCTETS[b]).join("");
}

// ---------------------------------------------------------------------------------------------
// Fields

/** Reads an AlgorithmIdentifier: SEQUENCE { OID, parameters ANY OPTIONAL }. */
function readAlgorithm(der: Uint8Array, tlv: Tlv): AlgorithmIdentifier {
  if (tlv.tag !== Tag.sequence) throw new DerError("AlgorithmIdentifier is not a SEQUENCE");
  const parts = children(der, tlv);
  if (!parts.length || parts.length > 2 || parts[0].tag !== Tag.oid) {
    throw new DerError("AlgorithmIdentifier is not (OID, parameters)");
  }
  return {
    oid: decodeOid(tlvContent(der, parts[0])),
    parameters: parts[1] && tlvBytes(der, parts[1]),
    der: tlvBytes(der, tlv),
  };
}

/** The algorithm and key bits of a SubjectPublicKeyInfo (DER), checked. */
export function readSubjectPublicKeyInfo(
  spki: Uint8Array,
): { algorithm: AlgorithmIdentifier; publicKey: Uint8Array } {
  const outer = readTlv(spki);
  if (outer.tag !== Tag.sequence || outer.end !== spki.length) {
    throw new DerError("SubjectPublicKeyInfo is not one SEQUENCE");
  }
  const parts = children(spki, outer);
  if (parts.length !== 2) throw new DerError("SubjectPublicKeyInfo is not (algorithm, key)");
  return {
    algorithm: readAlgorithm(spki, parts[0]),
    publicKey: octetBits(spki, parts[1], "subjectPublicKey"),
  };
}

/** The content of a BIT STRING that must hold whole octets (a key, a signature). */
function octetBits(der: Uint8Array, tlv: Tlv, what: string): Uint8Array {
  if (tlv.tag !== Tag.bitString) throw new DerError(`${what} is not a BIT STRING`);
  if (tlv.end === tlv.contentStart || der[tlv.contentStart] !== 0) {
    throw new DerError(`${what} is not a whole number of octets`);
  }
  return der.subarray(tlv.contentStart + 1, tlv.end);
}

/**
 * A UTCTime (YYMMDDHHMMSSZ, for 1950-2049) or GeneralizedTime (YYYYMMDDHHMMSSZ, from 2050), as
 * RFC 5280 §4.1.2.5 allows them: UTC, whole seconds, no other form. Milliseconds since the epoch.
 */
function readTime(der: Uint8Array, tlv: Tlv): number {
  const utc = tlv.tag === Tag.utcTime;
  if (!utc && tlv.tag !== Tag.generalizedTime) throw new DerError("validity is not a Time");
  const digits = utc ? 12 : 14;
  const start = tlv.contentStart;
  const form = () => latin1(tlvContent(der, tlv));
  if (tlv.end - start !== digits + 1 || der[tlv.end - 1] !== 0x5a /* Z */) {
    throw new DerError(`time ${JSON.stringify(form())} is not in the RFC 5280 form`);
  }
  const number = (at: number, length: number) => {
    let value = 0;
    for (let i = start + at; i < start + at + length; i++) {
      const digit = der[i] - 0x30;
      if (digit < 0 || digit > 9) {
        throw new DerError(`time ${JSON.stringify(form())} is not in the RFC 5280 form`);
      }
      value = value * 10 + digit;
    }
    return value;
  };
  const year = utc ? number(0, 2) : number(0, 4);
  const fields = utc ? 2 : 4;
  const [month, day, hour, minute, second] = [0, 2, 4, 6, 8].map((at) => number(fields + at, 2));
  const fullYear = utc ? (year >= 50 ? 1900 + year : 2000 + year) : year;
  if (!utc && fullYear < 2050) throw new DerError(`GeneralizedTime ${form()} before 2050`);
  const ms = Date.UTC(fullYear, month - 1, day, hour, minute, second);
  const date = new Date(ms);
  if (
    date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day || hour > 23 || minute > 59 ||
    second > 59
  ) {
    throw new DerError(`time ${form()} is not a date`);
  }
  return ms;
}

/** A non-negative INTEGER content as a number, saturating at 2^20 (counts, SkipCerts). */
function smallCount(content: Uint8Array): number {
  checkInteger(content);
  if (content[0] & 0x80) throw new DerError("negative INTEGER");
  let value = 0;
  for (const byte of content) value = Math.min(value * 256 + byte, 1 << 20);
  return value;
}

/** The extension value `value` as the single element with tag `tag` it must be. */
function single(value: Uint8Array, tag: number, what: string): Tlv {
  const tlv = readTlv(value);
  if (tlv.tag !== tag || tlv.end !== value.length) throw new DerError(`${what} is malformed`);
  return tlv;
}

// ---------------------------------------------------------------------------------------------
// The certificate

const VERSION_TAG = 0xa0;
const ISSUER_UNIQUE_ID_TAG = 0x81;
const SUBJECT_UNIQUE_ID_TAG = 0x82;
const EXTENSIONS_TAG = 0xa3;

/** An extension's place in the DER: the oid decoded, the value as offsets. */
interface ExtensionEntry {
  readonly oid: string;
  readonly critical: boolean;
  readonly start: number;
  readonly end: number;
}

/**
 * One certificate, read strictly from its DER (see the module comment). Holds the DER, a few
 * offsets into it and what has been decoded on request.
 */
export class CertificateView {
  /** The certificate's DER (the view's own copy). */
  readonly der: Uint8Array;
  /** 1, 2 or 3. */
  readonly version: number;
  /** notBefore and notAfter, ms since the epoch. */
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
  readonly hasIssuerUniqueId: boolean;
  readonly hasSubjectUniqueId: boolean;
  readonly #tbs: Tlv;
  readonly #serial: Tlv;
  readonly #algorithm: Tlv;
  readonly #issuer: Tlv;
  readonly #subject: Tlv;
  readonly #spki: Tlv;
  readonly #signature: Tlv;
  readonly #extensions: readonly ExtensionEntry[];
  readonly #subjectText: string;
  readonly #issuerText: string;
  #subjectName?: ParsedName;
  /** Decoded extension values by OID. */
  #decoded?: Map<string, unknown>;

  private constructor(der: Uint8Array) {
    this.der = der;
    const outer = readTlv(der);
    if (outer.tag !== Tag.sequence || outer.end !== der.length) {
      throw new DerError("the certificate is not one SEQUENCE");
    }
    const parts = children(der, outer);
    if (parts.length !== 3 || parts[0].tag !== Tag.sequence) {
      throw new DerError("the certificate is not (tbsCertificate, algorithm, signature)");
    }
    const [tbs, algorithm, signature] = parts;
    readAlgorithm(der, algorithm);
    octetBits(der, signature, "signatureValue");
    this.#tbs = tbs;
    this.#algorithm = algorithm;
    this.#signature = signature;

    const fields = children(der, tbs);
    let at = 0;
    let version = 1;
    if (fields[0]?.tag === VERSION_TAG) {
      const inner = children(der, fields[0]);
      const content = inner.length === 1 && inner[0].tag === Tag.integer
        ? tlvContent(der, inner[0])
        : undefined;
      // v1 is the DEFAULT, so DER leaves it out.
      if (!content || content.length !== 1 || (content[0] !== 1 && content[0] !== 2)) {
        throw new DerError("version is not v2 or v3");
      }
      version = content[0] + 1;
      at = 1;
    }
    this.version = version;
    const [serial, innerAlgorithm, issuer, validity, subject, spki] = fields.slice(at, at + 6);
    if (!spki) throw new DerError("tbsCertificate is missing fields");
    if (serial.tag !== Tag.integer) throw new DerError("serialNumber is not an INTEGER");
    checkInteger(tlvContent(der, serial));
    readAlgorithm(der, innerAlgorithm);
    // Path building compares these texts, so they are made (and the names checked) now.
    this.#issuerText = nameText(der, issuer);
    this.#subjectText = nameText(der, subject);
    const times = validity.tag === Tag.sequence ? children(der, validity) : [];
    if (times.length !== 2) throw new DerError("validity is not (notBefore, notAfter)");
    this.notBeforeMs = readTime(der, times[0]);
    this.notAfterMs = readTime(der, times[1]);
    readSubjectPublicKeyInfo(tlvBytes(der, spki));
    this.#serial = serial;
    this.#issuer = issuer;
    this.#subject = subject;
    this.#spki = spki;

    const rest = fields.slice(at + 6);
    const take = (tag: number) => rest[0]?.tag === tag ? rest.shift() : undefined;
    const issuerId = take(ISSUER_UNIQUE_ID_TAG);
    const subjectId = take(SUBJECT_UNIQUE_ID_TAG);
    const extensions = take(EXTENSIONS_TAG);
    if (rest.length) throw new DerError("unexpected field in tbsCertificate");
    if ((issuerId || subjectId) && version === 1) throw new DerError("unique identifier in v1");
    if (extensions && version !== 3) throw new DerError("extensions in a certificate before v3");
    this.hasIssuerUniqueId = !!issuerId;
    this.hasSubjectUniqueId = !!subjectId;
    this.#extensions = extensions ? readExtensions(der, extensions) : [];

    if (!equalBytes(tlvBytes(der, innerAlgorithm), tlvBytes(der, algorithm))) {
      throw new CertificateFormatError(
        "signature algorithm mismatch",
        `${this.subject}: signatureAlgorithm differs from tbsCertificate.signature`,
        this.subject,
      );
    }
    const seen = new Set<string>();
    for (const { oid } of this.#extensions) {
      if (seen.has(oid)) {
        throw new CertificateFormatError(
          "duplicate extension",
          `${this.subject} has extension ${oid} twice`,
          this.subject,
        );
      }
      seen.add(oid);
    }
  }

  /**
   * Reads a DER certificate. The view keeps a copy of the bytes: views are cached and shared
   * across connections, so a caller reusing its buffer must not change a verified certificate,
   * and a certificate inside a larger message must not keep the message alive. Throws
   * `CertificateFormatError`.
   */
  static parse(der: Uint8Array): CertificateView {
    const owned = der.slice();
    try {
      return new CertificateView(owned);
    } catch (e) {
      if (e instanceof CertificateFormatError) throw e;
      if (e instanceof DerError) throw new CertificateFormatError("malformed", e.message);
      throw e;
    }
  }

  /** The signed part, tbsCertificate, with its header. */
  get tbsCertificate(): Uint8Array {
    return tlvBytes(this.der, this.#tbs);
  }

  /** The content octets of serialNumber, as encoded. */
  get serial(): Uint8Array {
    return tlvContent(this.der, this.#serial);
  }

  /** The serial number in hex, as @peculiar/x509's `serialNumber` (a sign octet dropped). */
  get serialNumber(): string {
    const serial = this.serial;
    return hex(
      serial.length > 1 && serial[0] === 0 && serial[1] > 0x7f ? serial.subarray(1) : serial,
    );
  }

  /** signatureAlgorithm, which equals tbsCertificate.signature (checked when read). */
  get signatureAlgorithm(): AlgorithmIdentifier {
    return readAlgorithm(this.der, this.#algorithm);
  }

  /** The signature octets. */
  get signatureValue(): Uint8Array {
    return octetBits(this.der, this.#signature, "signatureValue");
  }

  /** The issuer Name's DER. */
  get issuerDer(): Uint8Array {
    return tlvBytes(this.der, this.#issuer);
  }

  /** The subject Name's DER. */
  get subjectDer(): Uint8Array {
    return tlvBytes(this.der, this.#subject);
  }

  /** The subject as @peculiar/x509's `subject` prints it: `CN=…, O=…`. */
  get subject(): string {
    return this.#subjectText;
  }

  /** The issuer, printed as `subject`. */
  get issuer(): string {
    return this.#issuerText;
  }

  /** The subject's RDNs and attributes for name checks; throws DerError for an empty RDN. */
  get subjectName(): ParsedName {
    return this.#subjectName ??= parseName(this.der, this.#subject);
  }

  /** True when the subject Name has no RDN. */
  get emptySubject(): boolean {
    return this.#subject.end === this.#subject.contentStart;
  }

  /**
   * The values of a subject attribute (`CN`, `OU`, … or an OID) in order, as @peculiar/x509's
   * `subjectName.getField` gives them: a value that is not a string as hex of its DER.
   */
  subjectField(type: string): string[] {
    const oid = OIDS_BY_SHORT_NAME[type] ?? type;
    const values: string[] = [];
    for (const rdn of nameRdns(this.der, this.#subject)) {
      for (const { type: t, value } of rdn) {
        if (decodeOid(tlvContent(this.der, t)) === oid) {
          values.push(attributeValueText(this.der, value).text);
        }
      }
    }
    return values;
  }

  get notBefore(): Date {
    return new Date(this.notBeforeMs);
  }

  get notAfter(): Date {
    return new Date(this.notAfterMs);
  }

  /** The SubjectPublicKeyInfo's DER. */
  get subjectPublicKeyInfo(): Uint8Array {
    return tlvBytes(this.der, this.#spki);
  }

  /** The subject public key's algorithm. */
  get publicKeyAlgorithm(): AlgorithmIdentifier {
    return readSubjectPublicKeyInfo(this.subjectPublicKeyInfo).algorithm;
  }

  /** The extensions in order (each OID at most once). */
  get extensions(): CertificateExtension[] {
    return this.#extensions.map((e) => ({
      oid: e.oid,
      critical: e.critical,
      value: this.der.subarray(e.start, e.end),
    }));
  }

  /** The extension with `oid`, if present. */
  extension(oid: string): CertificateExtension | undefined {
    const e = this.#extensions.find((x) => x.oid === oid);
    return e && { oid, critical: e.critical, value: this.der.subarray(e.start, e.end) };
  }

  /** Decodes the extension `oid` with `decode` once; undefined without the extension. */
  #decode<T>(oid: string, decode: (value: Uint8Array) => T): T | undefined {
    const decoded = this.#decoded ??= new Map();
    if (!decoded.has(oid)) {
      const e = this.extension(oid);
      decoded.set(oid, e ? decode(e.value) : undefined);
    }
    return decoded.get(oid) as T | undefined;
  }

  /** basicConstraints (RFC 5280 §4.2.1.9). */
  get basicConstraints(): BasicConstraints | undefined {
    return this.#decode(EXTENSION_OIDS.basicConstraints, (value) => {
      const tlv = single(value, Tag.sequence, "basicConstraints");
      const parts = children(value, tlv);
      let ca = false;
      if (parts[0]?.tag === Tag.boolean) {
        // cA FALSE is the DEFAULT, so DER leaves it out.
        if (!decodeBoolean(tlvContent(value, parts.shift()!))) {
          throw new DerError("basicConstraints with cA FALSE encoded");
        }
        ca = true;
      }
      const length = parts[0]?.tag === Tag.integer ? parts.shift()! : undefined;
      if (parts.length) throw new DerError("basicConstraints is malformed");
      return { ca, pathLength: length && smallCount(tlvContent(value, length)) };
    });
  }

  /** keyUsage bits (`KeyUsage` flags; RFC 5280 §4.2.1.3). */
  get keyUsage(): number | undefined {
    return this.#decode(EXTENSION_OIDS.keyUsage, (value) => {
      const tlv = single(value, Tag.bitString, "keyUsage");
      const bits = tlvContent(value, tlv);
      const unused = bits[0];
      const last = bits[bits.length - 1];
      // A named bit list has no trailing zero bits in DER (X.690 §11.2.2).
      if (
        bits.length === 0 || unused > 7 || (bits.length === 1 && unused !== 0) ||
        (bits.length > 1 && (last & ((1 << unused) - 1) || !(last & (1 << unused))))
      ) {
        throw new DerError("keyUsage is not a DER named bit list");
      }
      let flags = 0;
      for (let i = 0; i < (bits.length - 1) * 8 - unused; i++) {
        if (bits[1 + (i >> 3)] & (0x80 >> (i & 7))) flags |= 1 << i;
      }
      return flags;
    });
  }

  /** extKeyUsage purposes (OIDs; RFC 5280 §4.2.1.12). */
  get extendedKeyUsage(): string[] | undefined {
    return this.#decode(EXTENSION_OIDS.extendedKeyUsage, (value) => {
      const tlv = single(value, Tag.sequence, "extKeyUsage");
      return children(value, tlv).map((oid) => {
        if (oid.tag !== Tag.oid) throw new DerError("extKeyUsage member is not an OID");
        return decodeOid(tlvContent(value, oid));
      });
    });
  }

  /** subjectKeyIdentifier, lowercase hex (RFC 5280 §4.2.1.2). */
  get subjectKeyIdentifier(): string | undefined {
    return this.#decode(
      EXTENSION_OIDS.subjectKeyIdentifier,
      (value) => hex(tlvContent(value, single(value, Tag.octetString, "subjectKeyIdentifier"))),
    );
  }

  /** authorityKeyIdentifier (RFC 5280 §4.2.1.1). */
  get authorityKeyIdentifier(): AuthorityKeyIdentifier | undefined {
    return this.#decode(EXTENSION_OIDS.authorityKeyIdentifier, (value) => {
      const tlv = single(value, Tag.sequence, "authorityKeyIdentifier");
      const parts = children(value, tlv);
      const take = (tag: number) => parts[0]?.tag === tag ? parts.shift() : undefined;
      const keyId = take(0x80);
      const issuer = take(0xa1);
      const serial = take(0x82);
      if (parts.length) throw new DerError("authorityKeyIdentifier is malformed");
      if (serial) checkInteger(tlvContent(value, serial));
      return {
        keyIdentifier: keyId && hex(tlvContent(value, keyId)),
        hasAuthorityCertIssuer: !!issuer,
        hasAuthorityCertSerialNumber: !!serial,
      };
    });
  }

  /** subjectAltName entries (RFC 5280 §4.2.1.6); throws DerError for a malformed or empty one. */
  get subjectAltName(): GeneralName[] | undefined {
    return this.#decode(EXTENSION_OIDS.subjectAltName, (value) => {
      const tlv = single(value, Tag.sequence, "subjectAltName");
      const names = children(value, tlv).map((name) => parseGeneralName(value, name));
      if (!names.length) throw new DerError("empty subjectAltName");
      return names;
    });
  }

  /** The policy OIDs of certificatePolicies (RFC 5280 §4.2.1.4); qualifiers are not read. */
  get certificatePolicies(): string[] | undefined {
    return this.#decode(EXTENSION_OIDS.certificatePolicies, (value) => {
      const tlv = single(value, Tag.sequence, "certificatePolicies");
      return children(value, tlv).map((info) => {
        const parts = info.tag === Tag.sequence ? children(value, info) : [];
        if (
          !parts.length || parts.length > 2 || parts[0].tag !== Tag.oid ||
          (parts[1] && parts[1].tag !== Tag.sequence)
        ) {
          throw new DerError("PolicyInformation is malformed");
        }
        return decodeOid(tlvContent(value, parts[0]));
      });
    });
  }

  /** policyConstraints (RFC 5280 §4.2.1.11). */
  get policyConstraints(): PolicyConstraints | undefined {
    return this.#decode(EXTENSION_OIDS.policyConstraints, (value) => {
      const tlv = single(value, Tag.sequence, "policyConstraints");
      const parts = children(value, tlv);
      const take = (tag: number) => parts[0]?.tag === tag ? parts.shift() : undefined;
      const require = take(0x80);
      const inhibit = take(0x81);
      if (parts.length) throw new DerError("policyConstraints is malformed");
      return {
        requireExplicitPolicy: require && smallCount(tlvContent(value, require)),
        inhibitPolicyMapping: inhibit && smallCount(tlvContent(value, inhibit)),
      };
    });
  }

  /** cRLDistributionPoints (RFC 5280 §4.2.1.13): each point's fullName GeneralNames as DER. */
  get crlDistributionPoints(): DistributionPoint[] | undefined {
    return this.#decode(EXTENSION_OIDS.crlDistributionPoints, (value) => {
      const tlv = single(value, Tag.sequence, "cRLDistributionPoints");
      return children(value, tlv).map((point) => {
        if (point.tag !== Tag.sequence) throw new DerError("DistributionPoint is malformed");
        const parts = children(value, point);
        const name = parts[0]?.tag === 0xa0 ? parts.shift() : undefined;
        if (parts[0]?.tag === 0x81) parts.shift(); // reasons
        if (parts[0]?.tag === 0xa2) parts.shift(); // cRLIssuer
        if (parts.length) throw new DerError("DistributionPoint is malformed");
        if (!name) return {};
        const choice = children(value, name);
        if (choice.length !== 1) throw new DerError("DistributionPointName is malformed");
        if (choice[0].tag !== 0xa0) return {}; // nameRelativeToCRLIssuer
        return {
          fullName: children(value, choice[0]).map((n) => {
            parseGeneralName(value, n);
            return tlvBytes(value, n);
          }),
        };
      });
    });
  }
}

/** Reads `[3] EXPLICIT Extensions` (SEQUENCE SIZE (1..MAX) OF Extension). */
function readExtensions(der: Uint8Array, wrapper: Tlv): ExtensionEntry[] {
  const inner = children(der, wrapper);
  if (inner.length !== 1 || inner[0].tag !== Tag.sequence) {
    throw new DerError("extensions are not one SEQUENCE");
  }
  const list = children(der, inner[0]);
  if (!list.length) throw new DerError("empty extensions");
  return list.map((extension) => {
    const parts = extension.tag === Tag.sequence ? children(der, extension) : [];
    const [oid, ...rest] = parts;
    let critical = false;
    if (rest[0]?.tag === Tag.boolean) {
      // critical FALSE is the DEFAULT, so DER leaves it out.
      if (!decodeBoolean(tlvContent(der, rest.shift()!))) {
        throw new DerError("extension with critical FALSE encoded");
      }
      critical = true;
    }
    if (oid?.tag !== Tag.oid || rest.length !== 1 || rest[0].tag !== Tag.octetString) {
      throw new DerError("Extension is not (OID, critical, OCTET STRING)");
    }
    return {
      oid: decodeOid(tlvContent(der, oid)),
      critical,
      start: rest[0].contentStart,
      end: rest[0].end,
    };
  });
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
