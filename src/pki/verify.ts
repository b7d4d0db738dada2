/**
 * RFC 5280 certification path validation, the one verifier behind `qsign pki verify` and every
 * TLS handshake: chain building over all candidate paths (many roots, untrusted intermediates),
 * signatures, validity, basic constraints and path length, key usage, extended key usage,
 * name constraints, unknown critical extensions, CRL revocation, and RFC 6125 host matching.
 *
 * Handshakes call `verifyChain` with a `TrustStore` built once, so trust anchors and CRLs are
 * parsed (and their keys imported) once; the result carries the leaf's SHA-256 fingerprint and
 * the time it stays valid, for callers that cache verdicts.
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { QsignError } from "../errors.ts";
import { toHex } from "./certificate.ts";
import { bufferSource } from "./der.ts";
import {
  certificateMatchesHost,
  certificateMatchesIp,
  NAME_CONSTRAINTS_OID,
  nameConstraintsOf,
  nameConstraintViolation,
} from "./names.ts";
import { verifySignature } from "./signatures.ts";

/** Why a chain was refused. The TLS engine maps these to alerts. */
export type ChainFailureReason =
  | "expired"
  | "not yet valid"
  | "unknown issuer"
  | "bad signature"
  | "name mismatch"
  | "purpose mismatch"
  | "revoked"
  | "path too long"
  | "not a CA"
  | "bad key usage"
  | "name constraints"
  | "unknown critical extension"
  | "max depth"
  | "crl invalid"
  | "crl missing"
  | "malformed certificate";

/** A refused chain: `reason` for programs, the message (`reason: detail`) for people. */
export class ChainVerificationError extends QsignError {
  constructor(
    readonly reason: ChainFailureReason,
    detail: string,
    /** The subject of the certificate the failure is about, when there is one. */
    readonly subject?: string,
  ) {
    super(`${reason}: ${detail}`, 1);
  }
}

/** What the leaf must be good for: TLS server, TLS client, or anything. */
export type Purpose = "server" | "client" | "any";

/**
 * Which certificates need a CRL from their issuer:
 * - `available`: none; each certificate is checked against whatever CRLs its issuer signed.
 * - `leaf`: the leaf's issuer must have a CRL (OpenSSL's X509_V_FLAG_CRL_CHECK).
 * - `chain`: every certificate below the trust anchor needs its issuer's CRL, so a revoked
 *   intermediate is caught too (X509_V_FLAG_CRL_CHECK_ALL, which Node's `crl` option sets).
 * A certificate whose required CRL is absent fails with `crl missing`.
 */
export type CrlCheck = "available" | "leaf" | "chain";
export const CRL_CHECKS: readonly CrlCheck[] = ["available", "leaf", "chain"];

export interface VerifyOptions {
  /** Trust anchors: a `TrustStore` (parsed once, for handshakes) or DER certificates. */
  trustAnchors: TrustStore | readonly Uint8Array[];
  /** Untrusted certificates that may complete the path (the peer's chain, `--untrusted`). */
  intermediates?: readonly Uint8Array[];
  /** CRLs (DER) in addition to those of the trust store. */
  crls?: readonly Uint8Array[];
  /** Which certificates must have a CRL (default `available`: none must). */
  crlCheck?: CrlCheck;
  purpose: Purpose;
  /** The name the leaf must carry (dNSName; an IP literal is matched against IP SANs). */
  host?: string;
  /** The IP address the leaf must carry. */
  ip?: string;
  /** Validation time (default: now). */
  at?: Date;
  /** Most intermediate CA certificates a path may have (default 8). */
  maxDepth?: number;
}

export interface VerifiedChain {
  /** Leaf first, trust anchor last. */
  chain: x509.X509Certificate[];
  leaf: x509.X509Certificate;
  /** SHA-256 of the leaf's DER, lowercase hex: a cache key for verdicts. */
  fingerprint: string;
  /** When the verdict stops holding: the earliest notAfter in the chain or nextUpdate of a CRL used. */
  validUntil: Date;
}

const DEFAULT_MAX_DEPTH = 8;
/** Bounds the work a peer can cause with many look-alike certificates. */
const MAX_PATHS_TRIED = 32;
/** Parsed certificates kept for reuse, least recently used dropped first. */
const PARSED_CACHE_SIZE = 512;

const EKU_SERVER = "1.3.6.1.5.5.7.3.1";
const EKU_CLIENT = "1.3.6.1.5.5.7.3.2";
const EKU_ANY = "2.5.29.37.0";

/** Extensions this verifier processes, so they may be critical. */
const KNOWN_EXTENSIONS = new Set([
  "2.5.29.19", // basicConstraints
  "2.5.29.15", // keyUsage
  "2.5.29.37", // extKeyUsage
  "2.5.29.17", // subjectAltName
  "2.5.29.14", // subjectKeyIdentifier
  "2.5.29.35", // authorityKeyIdentifier
  NAME_CONSTRAINTS_OID,
  // certificatePolicies: accepted as any-policy (qsign requires no particular policy).
  "2.5.29.32",
]);
const KNOWN_CRL_EXTENSIONS = new Set(["2.5.29.20", "2.5.29.35"]);

/** A certificate with what validation looks at, derived once. */
class Candidate {
  readonly subject: string;
  readonly issuer: string;
  readonly subjectKeyId?: string;
  readonly authorityKeyId?: string;

  private constructor(
    readonly cert: x509.X509Certificate,
    readonly der: Uint8Array,
    /** SHA-256 of the DER, lowercase hex. */
    readonly fingerprint: string,
  ) {
    this.subject = cert.subject;
    this.issuer = cert.issuer;
    this.subjectKeyId = cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
    this.authorityKeyId = cert.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId;
  }

  /**
   * Parses DER, or returns the candidate parsed from the same bytes before: parsing an ML-DSA
   * certificate with @peculiar/x509 costs milliseconds, and a handshake sees the same
   * intermediates again and again.
   */
  static async parse(der: Uint8Array, role: string): Promise<Candidate> {
    const fingerprint = await sha256Hex(der);
    const cached = parsedCertificates.get(fingerprint);
    if (cached) {
      // Most recently used last: Map iteration order is insertion order.
      parsedCertificates.delete(fingerprint);
      parsedCertificates.set(fingerprint, cached);
      return cached;
    }
    let candidate: Candidate;
    try {
      const cert = new x509.X509Certificate(bufferSource(der));
      cert.extensions; // parse every extension now: a broken one is a malformed certificate
      candidate = new Candidate(cert, der, fingerprint);
    } catch (e) {
      throw new ChainVerificationError(
        "malformed certificate",
        `${role} cannot be parsed (${(e as Error).message})`,
      );
    }
    parsedCertificates.set(fingerprint, candidate);
    if (parsedCertificates.size > PARSED_CACHE_SIZE) {
      parsedCertificates.delete(parsedCertificates.keys().next().value!);
    }
    return candidate;
  }

  get selfIssued(): boolean {
    return this.subject === this.issuer;
  }

  /** Could `issuer` have issued this certificate? Names must match; key ids when both exist. */
  issuedBy(issuer: Candidate): boolean {
    if (this.issuer !== issuer.subject) return false;
    return !this.authorityKeyId || !issuer.subjectKeyId ||
      this.authorityKeyId === issuer.subjectKeyId;
  }
}

/** A CRL with its issuer name, parsed once. */
class ParsedCrl {
  readonly issuer: string;
  readonly authorityKeyId?: string;
  /** Issuer-certificate objects whose key has verified this CRL's signature. */
  readonly verifiedBy = new WeakMap<x509.X509Certificate, Promise<boolean>>();

  constructor(readonly crl: x509.X509Crl) {
    this.issuer = crl.issuer;
    this.authorityKeyId = crl.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId;
  }

  static parse(der: Uint8Array, index: number): ParsedCrl {
    try {
      return new ParsedCrl(new x509.X509Crl(bufferSource(der)));
    } catch (e) {
      throw new ChainVerificationError(
        "crl invalid",
        `CRL #${index + 1} cannot be parsed (${(e as Error).message})`,
      );
    }
  }

  covers(issuer: Candidate): boolean {
    return this.issuer === issuer.subject &&
      (!this.authorityKeyId || !issuer.subjectKeyId || this.authorityKeyId === issuer.subjectKeyId);
  }

  signedBy(issuer: Candidate): Promise<boolean> {
    let verdict = this.verifiedBy.get(issuer.cert);
    if (!verdict) {
      verdict = verifySignature(this.crl, issuer.cert.publicKey);
      this.verifiedBy.set(issuer.cert, verdict);
    }
    return verdict;
  }
}

/**
 * Trust anchors and CRLs parsed once and shared by every verification: the TLS engine builds
 * one per configuration (and a new one on reload).
 */
export class TrustStore {
  readonly anchors: readonly x509.X509Certificate[];
  readonly #anchors: Candidate[];
  readonly #crls: ParsedCrl[];

  private constructor(anchors: Candidate[], crls: ParsedCrl[]) {
    this.#anchors = anchors;
    this.#crls = crls;
    this.anchors = anchors.map((a) => a.cert);
  }

  /**
   * Parses trust anchors and CRLs (DER). Throws `ChainVerificationError` (malformed certificate,
   * crl invalid) for input that does not parse.
   */
  static async create(
    anchors: readonly Uint8Array[],
    crls: readonly Uint8Array[] = [],
  ): Promise<TrustStore> {
    const parsed = await Promise.all(
      anchors.map((der, i) => Candidate.parse(der, `trust anchor #${i + 1}`)),
    );
    return new TrustStore(parsed, crls.map((der, i) => ParsedCrl.parse(der, i)));
  }

  /** @internal */
  get candidates(): readonly Candidate[] {
    return this.#anchors;
  }

  /** @internal */
  get crls(): readonly ParsedCrl[] {
    return this.#crls;
  }
}

/** SHA-256 of DER bytes, lowercase hex: the key `VerifiedChain.fingerprint` uses. */
export async function certificateFingerprint(der: Uint8Array): Promise<string> {
  return await sha256Hex(der);
}

const parsedCertificates = new Map<string, Candidate>();

async function sha256Hex(der: Uint8Array): Promise<string> {
  return toHex(new Uint8Array(await crypto.subtle.digest("SHA-256", bufferSource(der))));
}

/**
 * Validates `leaf` (DER) up to a trust anchor. Tries every candidate path and returns the first
 * that validates; otherwise throws `ChainVerificationError` for the first complete path's first
 * failure, or `unknown issuer` when no path reaches an anchor.
 */
export async function verifyChain(
  leaf: Uint8Array,
  options: VerifyOptions,
): Promise<VerifiedChain> {
  const store = options.trustAnchors instanceof TrustStore
    ? options.trustAnchors
    : await TrustStore.create(options.trustAnchors);
  const leafCandidate = await Candidate.parse(leaf, "leaf certificate");
  const anchorPrints = new Set(store.candidates.map((a) => a.fingerprint));
  const pool: Candidate[] = [];
  for (const [i, der] of (options.intermediates ?? []).entries()) {
    const c = await Candidate.parse(der, `intermediate certificate #${i + 1}`);
    // A copy of an anchor among the untrusted certificates adds nothing but more paths.
    if (!anchorPrints.has(c.fingerprint)) pool.push(c);
  }
  const crls = [...store.crls, ...(options.crls ?? []).map((der, i) => ParsedCrl.parse(der, i))];
  const context: PathContext = {
    options,
    crls,
    at: options.at ?? new Date(),
    maxDepth: options.maxDepth ?? DEFAULT_MAX_DEPTH,
  };

  let firstFailure: ChainVerificationError | undefined;
  let tried = 0;
  for (const path of candidatePaths(leafCandidate, store.candidates, pool)) {
    if (++tried > MAX_PATHS_TRIED) break;
    try {
      const validUntil = await validatePath(path, context);
      return {
        chain: path.map((c) => c.cert),
        leaf: leafCandidate.cert,
        fingerprint: leafCandidate.fingerprint,
        validUntil,
      };
    } catch (e) {
      if (!(e instanceof ChainVerificationError)) throw e;
      firstFailure ??= e;
    }
  }
  throw firstFailure ?? new ChainVerificationError(
    "unknown issuer",
    `no trusted issuer found for ${leafCandidate.subject} (issuer ${leafCandidate.issuer})`,
    leafCandidate.subject,
  );
}

/**
 * Every path from `leaf` to a trust anchor through `pool`, leaf first, anchors tried before
 * untrusted certificates at each step. A certificate appears at most once per path; paths are
 * at most a fixed length so that a loop of cross-signed certificates ends.
 */
function* candidatePaths(
  leaf: Candidate,
  anchors: readonly Candidate[],
  pool: readonly Candidate[],
): Generator<Candidate[]> {
  const MAX_LENGTH = 16;
  // The leaf itself may be trusted (a pinned certificate).
  if (anchors.some((a) => a.cert.equal(leaf.cert))) yield [leaf];
  const path: Candidate[] = [leaf];
  function* extend(): Generator<Candidate[]> {
    const last = path[path.length - 1];
    for (const anchor of anchors) {
      if (last.issuedBy(anchor) && !path.includes(anchor)) yield [...path, anchor];
    }
    if (path.length >= MAX_LENGTH) return;
    for (const next of pool) {
      if (!last.issuedBy(next) || path.includes(next)) continue;
      // A self-signed untrusted certificate cannot lead to an anchor.
      if (next.selfIssued && next.issuedBy(next)) continue;
      path.push(next);
      yield* extend();
      path.pop();
    }
  }
  yield* extend();
}

interface PathContext {
  options: VerifyOptions;
  crls: ParsedCrl[];
  at: Date;
  maxDepth: number;
}

/** Validates one complete path (leaf first, anchor last); returns when the verdict expires. */
async function validatePath(path: Candidate[], context: PathContext): Promise<Date> {
  const { options, at } = context;
  const leaf = path[0];
  const fail = (reason: ChainFailureReason, detail: string, c: Candidate = leaf): never => {
    throw new ChainVerificationError(reason, detail, c.subject);
  };

  // Signatures first: nothing else about a forged certificate is worth reporting.
  for (let i = 0; i + 1 < path.length; i++) {
    if (!(await verifySignature(path[i].cert, path[i + 1].cert.publicKey))) {
      fail("bad signature", `${path[i].subject} is not signed by ${path[i + 1].subject}`, path[i]);
    }
  }

  for (const c of path) {
    const unknown = c.cert.extensions.find((e) => e.critical && !KNOWN_EXTENSIONS.has(e.type));
    if (unknown) {
      fail("unknown critical extension", `${c.subject} has critical extension ${unknown.type}`, c);
    }
  }

  const intermediates = path.length - 2;
  if (intermediates > context.maxDepth) {
    fail(
      "max depth",
      `path has ${intermediates} intermediate certificates, more than ${context.maxDepth}`,
    );
  }

  // Every issuer must be a CA allowed to sign certificates, within its path length.
  for (let i = 1; i < path.length; i++) {
    const ca = path[i];
    const constraints = ca.cert.getExtension(x509.BasicConstraintsExtension);
    const isV1Anchor = i === path.length - 1 && ca.cert.extensions.length === 0;
    if (!isV1Anchor && !constraints?.ca) {
      fail("not a CA", `${ca.subject} is not a CA certificate`, ca);
    }
    const usage = ca.cert.getExtension(x509.KeyUsagesExtension);
    if (usage && !(usage.usages & x509.KeyUsageFlags.keyCertSign)) {
      fail("bad key usage", `${ca.subject} may not sign certificates (no keyCertSign)`, ca);
    }
    if (constraints?.pathLength !== undefined) {
      const below = path.slice(1, i).filter((c) => !c.selfIssued).length;
      if (below > constraints.pathLength) {
        fail(
          "path too long",
          `${ca.subject} allows ${constraints.pathLength} intermediate CA(s) below it, the path has ${below}`,
          ca,
        );
      }
    }
  }

  for (const c of path) {
    if (at < c.cert.notBefore) {
      fail("not yet valid", `${c.subject} is valid from ${c.cert.notBefore.toISOString()}`, c);
    }
    if (at > c.cert.notAfter) {
      fail("expired", `${c.subject} expired ${c.cert.notAfter.toISOString()}`, c);
    }
  }

  for (let i = 1; i < path.length; i++) {
    const constraints = nameConstraintsOf(path[i].cert);
    if (!constraints) continue;
    for (let j = 0; j < i; j++) {
      // Self-issued intermediates are exempt (RFC 5280 §4.2.1.10); the leaf never is.
      if (j > 0 && path[j].selfIssued) continue;
      const violation = nameConstraintViolation(path[j].cert, constraints);
      if (violation) fail("name constraints", `${violation} by ${path[i].subject}`, path[j]);
    }
  }

  checkPurpose(path, options.purpose, fail);

  const crlUntil = await checkRevocation(path, context, fail);

  if (options.host !== undefined && !certificateMatchesHost(leaf.cert, options.host)) {
    fail("name mismatch", `${leaf.subject} is not valid for ${options.host}`);
  }
  if (options.ip !== undefined && !certificateMatchesIp(leaf.cert, options.ip)) {
    fail("name mismatch", `${leaf.subject} is not valid for IP ${options.ip}`);
  }

  const notAfters = path.map((c) => c.cert.notAfter.getTime());
  return new Date(Math.min(...notAfters, crlUntil ?? Infinity));
}

type Fail = (reason: ChainFailureReason, detail: string, c?: Candidate) => never;

/** Leaf key usage and extended key usage, and EKU restrictions on the CAs above it. */
function checkPurpose(path: Candidate[], purpose: Purpose, fail: Fail): void {
  if (purpose === "any") return;
  const leaf = path[0];
  const usage = leaf.cert.getExtension(x509.KeyUsagesExtension);
  // TLS 1.3 authenticates with a signature whatever the key type.
  if (usage && !(usage.usages & x509.KeyUsageFlags.digitalSignature)) {
    fail("bad key usage", `${leaf.subject} may not make signatures (no digitalSignature)`);
  }
  const wanted = purpose === "server" ? EKU_SERVER : EKU_CLIENT;
  for (const c of path) {
    const eku = c.cert.getExtension(x509.ExtendedKeyUsageExtension);
    if (eku && !eku.usages.some((u) => u === wanted || u === EKU_ANY)) {
      fail("purpose mismatch", `${c.subject} is not valid for TLS ${purpose} authentication`, c);
    }
  }
}

/**
 * Checks each certificate against the CRLs its issuer signed, and that the certificates
 * `crlCheck` names have one. Returns the earliest nextUpdate of the CRLs used, or undefined
 * when none applied.
 */
async function checkRevocation(
  path: Candidate[],
  context: PathContext,
  fail: Fail,
): Promise<number | undefined> {
  const crlCheck = context.options.crlCheck ?? "available";
  let until: number | undefined;
  for (let i = 0; i + 1 < path.length; i++) {
    const subject = path[i];
    const issuer = path[i + 1];
    const crls = context.crls.filter((crl) => crl.covers(issuer));
    const required = crlCheck === "chain" || (crlCheck === "leaf" && i === 0);
    if (required && !crls.length) {
      fail(
        "crl missing",
        `no CRL from ${issuer.subject} to check ${subject.subject} against`,
        subject,
      );
    }
    for (const parsed of crls) {
      const crl = parsed.crl;
      if (!(await parsed.signedBy(issuer))) {
        fail("crl invalid", `CRL of ${issuer.subject} is not signed by its key`, issuer);
      }
      const usage = issuer.cert.getExtension(x509.KeyUsagesExtension);
      if (usage && !(usage.usages & x509.KeyUsageFlags.cRLSign)) {
        fail("crl invalid", `${issuer.subject} may not sign CRLs (no cRLSign)`, issuer);
      }
      if (context.at < crl.thisUpdate) {
        fail(
          "crl invalid",
          `CRL of ${issuer.subject} is not valid before ${crl.thisUpdate.toISOString()}`,
          issuer,
        );
      }
      if (crl.nextUpdate && context.at > crl.nextUpdate) {
        fail(
          "crl invalid",
          `CRL of ${issuer.subject} expired ${crl.nextUpdate.toISOString()}`,
          issuer,
        );
      }
      const critical = crl.extensions.find((e) => e.critical && !KNOWN_CRL_EXTENSIONS.has(e.type));
      if (critical) {
        fail(
          "crl invalid",
          `CRL of ${issuer.subject} has critical extension ${critical.type}`,
          issuer,
        );
      }
      const entry = crl.findRevoked(subject.cert.serialNumber);
      if (entry && entry.revocationDate <= context.at) {
        const reason = entry.reason !== undefined ? `, ${x509.X509CrlReason[entry.reason]}` : "";
        fail(
          "revoked",
          `${subject.subject} (serial ${subject.cert.serialNumber}) was revoked ${entry.revocationDate.toISOString()}${reason}`,
          subject,
        );
      }
      if (crl.nextUpdate) until = Math.min(until ?? Infinity, crl.nextUpdate.getTime());
    }
  }
  return until;
}
