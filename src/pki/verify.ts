/**
 * RFC 5280 certification path validation, the one verifier behind `qsign pki verify` and every
 * TLS handshake: bounded path building (many roots, untrusted intermediates), signatures,
 * validity, basic constraints and path length, key usage, extended key usage, name constraints,
 * unknown critical extensions, CRL revocation, and RFC 6125 host matching.
 *
 * The peer chooses the certificates, so path building is bounded by work, not by hope: at most
 * `MAX_PRESENTED_CERTIFICATES` distinct presented certificates are considered, every issuer
 * candidate examined costs one step of `PATH_BUILDING_BUDGET`, a caller's deadline or abort
 * signal is checked at every step, and the verifier yields to the event loop whenever it has
 * run `SLICE_MS` without doing so, so that one crafted chain can neither take long nor hold up
 * other connections.
 *
 * Handshakes call `verifyChain` with a `TrustStore` built once, so trust anchors and CRLs are
 * parsed (and their keys imported) once; the result carries the leaf's SHA-256 fingerprint and
 * the time it stays valid, for callers that cache verdicts. Certificates are read with
 * CertificateView (strict DER, a few tens of µs for an ML-DSA leaf); CRLs with @peculiar/x509.
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { AsnConvert } from "@peculiar/asn1-schema";
import { IssuingDistributionPoint } from "@peculiar/asn1-x509";
import { getCryptoProvider } from "../crypto/index.ts";
import { QsignError } from "../errors.ts";
import { toHex } from "../hex.ts";
import {
  type AuthorityKeyIdentifier,
  CertificateFormatError,
  CertificateView,
  KeyUsage,
} from "./certificate_view.ts";
import { bufferSource, children, readTlv, tlvBytes } from "./der.ts";
import {
  certificateMatchesHost,
  certificateMatchesIp,
  endEntityNameViolation,
  NAME_CONSTRAINTS_OID,
  pathNameConstraintViolation,
} from "./names.ts";
import { isSupportedSignatureAlgorithm, publicKeyProblem, verifySignature } from "./signatures.ts";

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
  | "name constraints too expensive"
  | "invalid name"
  | "unknown critical extension"
  | "max depth"
  | "crl invalid"
  | "crl missing"
  | "malformed certificate"
  | "budget exceeded"
  | "duplicate extension"
  | "bad extension"
  | "empty subject"
  | "missing key identifier"
  | "bad key identifier"
  | "bad serial number"
  | "CA as end entity"
  | "unsupported key"
  | "unsupported signature algorithm"
  | "signature algorithm mismatch"
  | "policy constraints";

/** Where a refusal points: the rule broken and the certificate it is about. */
export interface FailureLocation {
  /** The standard and section of the rule, e.g. `RFC 5280 §4.2.1.9`. */
  rule?: string;
  /** Position of the certificate in the path: 0 is the leaf. */
  index?: number;
}

/** A refused chain: `reason` for programs, the message (`reason: detail`) for people. */
export class ChainVerificationError extends QsignError {
  /** The standard and section of the rule the chain breaks, e.g. `RFC 5280 §4.2.1.9`. */
  readonly rule?: string;
  /** Position in the path of the certificate the failure is about (0: the leaf). */
  readonly index?: number;

  constructor(
    readonly reason: ChainFailureReason,
    detail: string,
    /** The subject of the certificate the failure is about, when there is one. */
    readonly subject?: string,
    location: FailureLocation = {},
  ) {
    super(`${reason}: ${detail}`, 1);
    this.rule = location.rule;
    this.index = location.index;
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
  /** Give up (`budget exceeded`) once this time (ms since the epoch) has passed. */
  deadline?: number;
  /** Give up (`budget exceeded`) once this signal aborts. */
  signal?: AbortSignal;
}

export interface VerifiedChain {
  /** Leaf first, trust anchor last. */
  chain: CertificateView[];
  leaf: CertificateView;
  /** SHA-256 of the leaf's DER, lowercase hex: a cache key for verdicts. */
  fingerprint: string;
  /** When the verdict stops holding: the earliest notAfter in the chain or nextUpdate of a CRL used. */
  validUntil: Date;
}

const DEFAULT_MAX_DEPTH = 8;
/**
 * Presented (untrusted) certificates considered, after duplicates and copies of trust anchors
 * are dropped; the rest are ignored. Deployed stacks accept about as many.
 */
export const MAX_PRESENTED_CERTIFICATES = 10;
/**
 * Path-building steps per verification: every issuer candidate examined at any depth costs
 * one (rustls-webpki allows 200 path-building calls, Go 100 signature checks). A crafted set
 * of cross-certificates with (m!)² simple paths is refused after this many, quickly.
 */
export const PATH_BUILDING_BUDGET = 200;
/** Longest the verifier runs without yielding to the event loop, in milliseconds. */
const SLICE_MS = 2;
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
  // certificatePolicies and policyConstraints: see checkPolicies.
  "2.5.29.32",
  "2.5.29.36",
]);
const CRL_NUMBER_OID = "2.5.29.20";
const ISSUING_DISTRIBUTION_POINT_OID = "2.5.29.28";
const KNOWN_CRL_EXTENSIONS = new Set([CRL_NUMBER_OID, "2.5.29.35", ISSUING_DISTRIBUTION_POINT_OID]);

/** A certificate with what validation looks at, derived once. */
class Candidate {
  readonly subject: string;
  readonly issuer: string;
  readonly subjectKeyId?: string;
  readonly authorityKeyId?: string;
  /** The OID of the signature algorithm. */
  readonly signatureAlgorithm: string;
  #selfSigned?: Promise<boolean>;
  /** `checkForm` verdicts by role: they depend on the certificate alone, not the path. */
  readonly #formProblems = new Map<Role, FormProblem | null>();

  private constructor(
    readonly cert: CertificateView,
    /** SHA-256 of the DER, lowercase hex. */
    readonly fingerprint: string,
  ) {
    this.subject = cert.subject;
    this.issuer = cert.issuer;
    this.subjectKeyId = cert.subjectKeyIdentifier;
    this.authorityKeyId = cert.authorityKeyIdentifier?.keyIdentifier;
    this.signatureAlgorithm = cert.signatureAlgorithm.oid;
  }

  /** Self-issued and signed by its own key (a root, or a self-signed leaf). */
  selfSigned(): Promise<boolean> {
    this.#selfSigned ??= this.selfIssued
      ? verifySignature(this.cert, this.cert)
      : Promise.resolve(false);
    return this.#selfSigned;
  }

  /** The first rule of `checkForm` this certificate breaks in `role`, or null. */
  formProblem(role: Role): FormProblem | null {
    let problem = this.#formProblems.get(role);
    if (problem === undefined) {
      problem = null;
      try {
        checkForm(this, role, (reason, detail, _c, rule) => {
          throw new FormProblem(reason, detail, rule);
        });
      } catch (e) {
        if (!(e instanceof FormProblem)) throw e;
        problem = e;
      }
      this.#formProblems.set(role, problem);
    }
    return problem;
  }

  /** The parsed authorityKeyIdentifier extension, if there is one. */
  get authorityKeyIdentifier(): AuthorityKeyIdentifier | undefined {
    return this.cert.authorityKeyIdentifier;
  }

  get isCa(): boolean {
    if (this.cert.basicConstraints?.ca) return true;
    return !!((this.cert.keyUsage ?? 0) & KeyUsage.keyCertSign);
  }

  /**
   * Parses DER, or returns the candidate parsed from the same bytes before: a handshake sees
   * the same intermediates again and again. `index` is the certificate's place in the path
   * when it is known before the path is (0 for the leaf).
   */
  static parse(der: Uint8Array, role: string, index?: number): Candidate {
    const fingerprint = certificateFingerprint(der);
    const cached = parsedCertificates.get(fingerprint);
    if (cached) {
      // Most recently used last: Map iteration order is insertion order.
      parsedCertificates.delete(fingerprint);
      parsedCertificates.set(fingerprint, cached);
      return cached;
    }
    let candidate: Candidate;
    try {
      const cert = CertificateView.parse(der);
      // The extensions path validation reads are decoded now: a broken one makes a malformed
      // certificate, whichever checks the path gets to.
      cert.basicConstraints;
      cert.keyUsage;
      cert.extendedKeyUsage;
      cert.certificatePolicies;
      cert.crlDistributionPoints;
      candidate = new Candidate(cert, fingerprint);
    } catch (e) {
      throw parseFailure(e, role, index);
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

/** The refusal for a certificate CertificateView (or an extension decoder) cannot read. */
function parseFailure(e: unknown, role: string, index?: number): ChainVerificationError {
  if (e instanceof CertificateFormatError && e.problem === "duplicate extension") {
    return new ChainVerificationError("duplicate extension", e.message, e.subject, {
      rule: "RFC 5280 §4.2",
      index,
    });
  }
  if (e instanceof CertificateFormatError && e.problem === "signature algorithm mismatch") {
    return new ChainVerificationError("signature algorithm mismatch", e.message, e.subject, {
      rule: "RFC 5280 §4.1.1.2",
      index,
    });
  }
  return new ChainVerificationError(
    "malformed certificate",
    `${role} cannot be parsed (${(e as Error).message})`,
  );
}

/** A CRL with its issuer name, parsed once. */
class ParsedCrl {
  readonly issuer: string;
  readonly authorityKeyId?: string;
  /** Does the outer signatureAlgorithm equal tbsCertList.signature, byte for byte? */
  readonly algorithmsAgree: boolean;
  /** Issuer certificates whose key has verified this CRL's signature. */
  readonly verifiedBy = new WeakMap<CertificateView, Promise<boolean>>();

  constructor(readonly crl: x509.X509Crl) {
    this.issuer = crl.issuer;
    this.authorityKeyId = crl.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId;
    this.algorithmsAgree = crlAlgorithmsAgree(new Uint8Array(crl.rawData));
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
      verdict = verifySignature(this.crl, issuer.cert);
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
  /**
   * Distinct for every store made in this process: a cached verdict keyed on it can never be
   * served by a store with other anchors or CRLs (a reload, a new CRL).
   */
  readonly generation = ++trustStoreGenerations;
  readonly anchors: readonly CertificateView[];
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
  static create(
    anchors: readonly Uint8Array[],
    crls: readonly Uint8Array[] = [],
  ): Promise<TrustStore> {
    // A rejection, not a throw, for an unusable anchor or CRL: callers keep the promise.
    return Promise.resolve().then(() =>
      new TrustStore(
        anchors.map((der, i) => Candidate.parse(der, `trust anchor #${i + 1}`)),
        crls.map((der, i) => ParsedCrl.parse(der, i)),
      )
    );
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

let trustStoreGenerations = 0;

/**
 * Whether a CRL's outer signatureAlgorithm equals tbsCertList.signature, byte for byte: the
 * first field of tbsCertList after its optional version.
 */
function crlAlgorithmsAgree(der: Uint8Array): boolean {
  const [tbs, algorithm] = children(der, readTlv(der));
  const fields = children(der, tbs);
  const inner = fields[0]?.tag === 0x02 ? fields[1] : fields[0];
  return equalBytes(tlvBytes(der, inner), tlvBytes(der, algorithm));
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/** SHA-256 of DER bytes, lowercase hex: the key `VerifiedChain.fingerprint` uses. */
export function certificateFingerprint(der: Uint8Array): string {
  return toHex(getCryptoProvider().hashSync("SHA-256", der));
}

const parsedCertificates = new Map<string, Candidate>();

/**
 * Signature verdicts by (certificate, issuer) fingerprints, least recently used dropped first:
 * a signature's validity depends on those bytes alone, and a busy server sees the same
 * intermediates and clients again and again (an ML-DSA-65 verification is most of the cost).
 */
const signatureVerdicts = new Map<string, Promise<boolean>>();
const SIGNATURE_CACHE_SIZE = 2048;

function signatureVerdict(subject: Candidate, issuer: Candidate): Promise<boolean> {
  const key = `${subject.fingerprint}>${issuer.fingerprint}`;
  let verdict = signatureVerdicts.get(key);
  if (verdict) {
    signatureVerdicts.delete(key);
  } else {
    verdict = verifySignature(subject.cert, issuer.cert);
    if (signatureVerdicts.size >= SIGNATURE_CACHE_SIZE) {
      signatureVerdicts.delete(signatureVerdicts.keys().next().value!);
    }
  }
  signatureVerdicts.set(key, verdict);
  return verdict;
}

/**
 * Validates `leaf` (DER) up to a trust anchor. Builds paths depth first, anchors before
 * untrusted certificates and issuers whose key identifier matches before the others, checking
 * each signature as the path grows, and returns the first complete path that validates.
 * Otherwise throws `ChainVerificationError`: `budget exceeded` when the work budget, deadline or
 * signal ran out first; else the first complete path's first failure; else the first bad
 * signature; else `unknown issuer`.
 */
export async function verifyChain(
  leaf: Uint8Array,
  options: VerifyOptions,
): Promise<VerifiedChain> {
  const work = new Work(options.deadline, options.signal);
  const store = options.trustAnchors instanceof TrustStore
    ? options.trustAnchors
    : await TrustStore.create(options.trustAnchors);
  const leafCandidate = Candidate.parse(leaf, "leaf certificate", 0);
  const anchorPrints = new Set(store.candidates.map((a) => a.fingerprint));
  const pool: Candidate[] = [];
  const seen = new Set([leafCandidate.fingerprint]);
  for (const [i, der] of (options.intermediates ?? []).entries()) {
    if (pool.length >= MAX_PRESENTED_CERTIFICATES) break;
    await work.pause();
    const c = Candidate.parse(der, `intermediate certificate #${i + 1}`);
    // Duplicates and copies of an anchor add nothing but more paths.
    if (seen.has(c.fingerprint) || anchorPrints.has(c.fingerprint)) continue;
    seen.add(c.fingerprint);
    pool.push(c);
  }
  const crls = [...store.crls, ...(options.crls ?? []).map((der, i) => ParsedCrl.parse(der, i))];
  const context: PathContext = {
    options,
    crls,
    at: options.at ?? new Date(),
    maxDepth: options.maxDepth ?? DEFAULT_MAX_DEPTH,
    work,
  };
  const builder = new PathBuilder(store.candidates, pool, context);
  const validUntil = await builder.build(leafCandidate);
  if (validUntil) {
    return {
      chain: builder.path.map((c) => c.cert),
      leaf: leafCandidate.cert,
      fingerprint: leafCandidate.fingerprint,
      validUntil,
    };
  }
  throw builder.pathFailure ?? builder.signatureFailure ?? new ChainVerificationError(
    "unknown issuer",
    `no trusted issuer found for ${leafCandidate.subject} (issuer ${leafCandidate.issuer})`,
    leafCandidate.subject,
    { rule: "RFC 5280 §6.1", index: 0 },
  );
}

/**
 * The work a verification may do: path-building steps against `PATH_BUILDING_BUDGET`, the
 * caller's deadline and abort signal, and yields to the event loop every `SLICE_MS`.
 */
class Work {
  #steps = 0;
  #sliceStart = performance.now();

  constructor(readonly deadline?: number, readonly signal?: AbortSignal) {}

  /** One path-building step: counts against the budget, then `pause()`. */
  async step(): Promise<void> {
    if (++this.#steps > PATH_BUILDING_BUDGET) {
      throw new ChainVerificationError(
        "budget exceeded",
        `no valid path found within ${PATH_BUILDING_BUDGET} path-building steps`,
      );
    }
    await this.pause();
  }

  /** Yields to the event loop when this slice has run long; throws once past the deadline. */
  async pause(): Promise<void> {
    this.#checkTime();
    if (performance.now() - this.#sliceStart < SLICE_MS) return;
    // A macrotask, not a microtask: timers and I/O of other connections run meanwhile.
    await new Promise((resolve) => setTimeout(resolve, 0));
    this.#sliceStart = performance.now();
    this.#checkTime();
  }

  #checkTime(): void {
    if (this.signal?.aborted) {
      throw new ChainVerificationError("budget exceeded", "verification was aborted");
    }
    if (this.deadline !== undefined && Date.now() > this.deadline) {
      throw new ChainVerificationError(
        "budget exceeded",
        `verification did not finish before its deadline (${
          new Date(this.deadline).toISOString()
        })`,
      );
    }
  }
}

/**
 * Depth-first path building from a leaf. Each certificate appears at most once per path; the
 * path ends at the first trust anchor; a signature is checked when its issuer joins the path
 * (once per pair of certificates, see `signatureVerdict`), so a forged link cuts every path
 * through it.
 */
class PathBuilder {
  /** The path being built, leaf first; after a successful `build`, the validated path. */
  readonly path: Candidate[] = [];
  /** The first failure of a path that reached a trust anchor. */
  pathFailure?: ChainVerificationError;
  /** The first signature that did not verify. */
  signatureFailure?: ChainVerificationError;

  constructor(
    readonly anchors: readonly Candidate[],
    readonly pool: readonly Candidate[],
    readonly context: PathContext,
  ) {}

  /** The validated path's expiry, or undefined when no path validates. */
  async build(leaf: Candidate): Promise<Date | undefined> {
    this.path.push(leaf);
    // The leaf itself may be trusted (a pinned certificate).
    if (this.anchors.some((a) => a.fingerprint === leaf.fingerprint)) {
      const until = await this.#complete();
      if (until) return until;
    }
    return await this.#extend();
  }

  async #extend(): Promise<Date | undefined> {
    const last = this.path[this.path.length - 1];
    for (const next of this.#issuersOf(last)) {
      await this.context.work.step();
      if (this.path.includes(next)) continue;
      const anchor = this.anchors.includes(next);
      // A self-signed untrusted certificate cannot lead to an anchor.
      if (!anchor && next.selfIssued && next.issuedBy(next)) continue;
      if (!(await this.#signed(last, next))) continue;
      this.path.push(next);
      const until = anchor ? await this.#complete() : await this.#extend();
      if (until) return until;
      this.path.pop();
    }
    return undefined;
  }

  /** Anchors first, then untrusted certificates; within each, key identifier matches first. */
  #issuersOf(c: Candidate): Candidate[] {
    const byKeyId = (list: readonly Candidate[]) => {
      const issuers = list.filter((i) => c.issuedBy(i));
      return [
        ...issuers.filter((i) => c.authorityKeyId && c.authorityKeyId === i.subjectKeyId),
        ...issuers.filter((i) => !c.authorityKeyId || c.authorityKeyId !== i.subjectKeyId),
      ];
    };
    return [...byKeyId(this.anchors), ...byKeyId(this.pool)];
  }

  async #signed(subject: Candidate, issuer: Candidate): Promise<boolean> {
    const algorithm = subject.signatureAlgorithm;
    if (!isSupportedSignatureAlgorithm(algorithm)) {
      this.signatureFailure ??= new ChainVerificationError(
        "unsupported signature algorithm",
        `${subject.subject} is signed with ${algorithm}, which qsign does not accept`,
        subject.subject,
        { rule: "RFC 5280 §4.1.1.2", index: this.path.indexOf(subject) },
      );
      return false;
    }
    if (await signatureVerdict(subject, issuer)) return true;
    this.signatureFailure ??= new ChainVerificationError(
      "bad signature",
      `${subject.subject} is not signed by ${issuer.subject}`,
      subject.subject,
      { rule: "RFC 5280 §6.1.3", index: this.path.indexOf(subject) },
    );
    return false;
  }

  async #complete(): Promise<Date | undefined> {
    await this.context.work.pause();
    try {
      return await validatePath(this.path, this.context);
    } catch (e) {
      if (!(e instanceof ChainVerificationError) || e.reason === "budget exceeded") throw e;
      this.pathFailure ??= e;
      return undefined;
    }
  }
}

interface PathContext {
  options: VerifyOptions;
  crls: ParsedCrl[];
  at: Date;
  maxDepth: number;
  work: Work;
}

/**
 * Validates one complete path (leaf first, anchor last) whose signatures are already checked;
 * returns when the verdict expires.
 */
async function validatePath(path: Candidate[], context: PathContext): Promise<Date> {
  const { options, at } = context;
  const leaf = path[0];
  const fail = (
    reason: ChainFailureReason,
    detail: string,
    c: Candidate = leaf,
    rule?: string,
  ): never => {
    throw new ChainVerificationError(reason, detail, c.subject, { rule, index: path.indexOf(c) });
  };

  for (const [i, c] of path.entries()) {
    const problem = c.formProblem(roleIn(path, i));
    if (problem) fail(problem.reason, problem.detail, c, problem.rule);
  }
  await checkKeyIdentifiers(path, fail);

  for (const c of path) {
    const unknown = c.cert.extensions.find((e) => e.critical && !KNOWN_EXTENSIONS.has(e.oid));
    if (unknown) {
      fail(
        "unknown critical extension",
        `${c.subject} has critical extension ${unknown.oid}`,
        c,
        "RFC 5280 §4.2",
      );
    }
  }

  // Self-issued intermediates (key rollover) do not count (RFC 5280 §6.1.4 (h), (l)).
  const intermediates = path.slice(1, -1).filter((c) => !c.selfIssued).length;
  if (intermediates > context.maxDepth) {
    fail(
      "max depth",
      `path has ${intermediates} intermediate certificates, more than ${context.maxDepth}`,
      leaf,
      "RFC 5280 §6.1",
    );
  }

  // Every issuer must be a CA allowed to sign certificates, within its path length.
  for (let i = 1; i < path.length; i++) {
    const ca = path[i];
    const constraints = ca.cert.basicConstraints;
    if (!constraints?.ca) {
      fail("not a CA", `${ca.subject} is not a CA certificate`, ca, "RFC 5280 §6.1.4 (k)");
    }
    const usage = ca.cert.keyUsage;
    if (usage === undefined || !(usage & KeyUsage.keyCertSign)) {
      fail(
        "bad key usage",
        `${ca.subject} may not sign certificates (no keyUsage keyCertSign)`,
        ca,
        "RFC 5280 §4.2.1.3",
      );
    }
    if (constraints?.pathLength !== undefined) {
      const below = path.slice(1, i).filter((c) => !c.selfIssued).length;
      if (below > constraints.pathLength) {
        fail(
          "path too long",
          `${ca.subject} allows ${constraints.pathLength} intermediate CA(s) below it, the path has ${below}`,
          ca,
          "RFC 5280 §4.2.1.9",
        );
      }
    }
  }

  // Validity names whole seconds (UTCTime, GeneralizedTime without fractions): a time within
  // notAfter's second is still valid.
  const second = Math.floor(at.getTime() / 1000);
  for (const c of path) {
    if (second < Math.floor(c.cert.notBeforeMs / 1000)) {
      fail(
        "not yet valid",
        `${c.subject} is valid from ${c.cert.notBefore.toISOString()}`,
        c,
        "RFC 5280 §4.1.2.5",
      );
    }
    if (second > Math.floor(c.cert.notAfterMs / 1000)) {
      fail(
        "expired",
        `${c.subject} expired ${c.cert.notAfter.toISOString()}`,
        c,
        "RFC 5280 §4.1.2.5",
      );
    }
  }

  // Leaf name syntax and CN, then name constraints (self-issued intermediates exempt).
  const nameViolation = endEntityNameViolation(leaf.cert) ?? pathNameConstraintViolation(path);
  if (nameViolation) {
    fail(nameViolation.reason, nameViolation.detail, path[nameViolation.index], nameViolation.rule);
  }

  checkPurpose(path, options.purpose, fail);
  checkPolicies(path, fail);

  const crlUntil = await checkRevocation(path, context, fail);

  if (options.host !== undefined && !certificateMatchesHost(leaf.cert, options.host)) {
    fail("name mismatch", `${leaf.subject} is not valid for ${options.host}`, leaf, "RFC 6125 §6");
  }
  if (options.ip !== undefined && !certificateMatchesIp(leaf.cert, options.ip)) {
    fail("name mismatch", `${leaf.subject} is not valid for IP ${options.ip}`, leaf, "RFC 6125 §6");
  }

  // The last millisecond of the earliest notAfter's second, or a CRL's nextUpdate.
  const notAfters = path.map((c) => Math.floor(c.cert.notAfterMs / 1000) * 1000 + 999);
  return new Date(Math.min(...notAfters, crlUntil ?? Infinity));
}

type Fail = (reason: ChainFailureReason, detail: string, c?: Candidate, rule?: string) => never;

/** A broken form rule, before it is placed in a path. */
class FormProblem {
  constructor(
    readonly reason: ChainFailureReason,
    readonly detail: string,
    readonly rule?: string,
  ) {}
}

/** What a certificate is in its path: the leaf, an intermediate CA, or the trust anchor. */
type Role = "leaf" | "intermediate" | "anchor" | "pinned";

function roleIn(path: Candidate[], i: number): Role {
  if (path.length === 1) return "pinned";
  return i === 0 ? "leaf" : i === path.length - 1 ? "anchor" : "intermediate";
}

const SAN_OID = "2.5.29.17";
const SKI_OID = "2.5.29.14";
const AKI_OID = "2.5.29.35";
const BASIC_CONSTRAINTS_OID = "2.5.29.19";
const EKU_OID = "2.5.29.37";
const POLICY_CONSTRAINTS_OID = "2.5.29.36";
const ANY_POLICY = "2.5.29.32.0";

/** The profile's rules on one certificate's form, whatever its place in the path. */
function checkForm(c: Candidate, role: Role, fail: Fail): void {
  // Duplicate extensions and differing signature algorithms are refused when the certificate
  // is read (Candidate.parse).
  const serial = c.cert.serial;
  const serialProblem = serial.length > 20
    ? `is ${serial.length} octets long, more than 20`
    : serial[0] & 0x80
    ? "is negative"
    : serial.every((b) => b === 0)
    ? "is zero"
    : undefined;
  if (serialProblem) {
    fail(
      "bad serial number",
      `${c.subject}: serial number ${serialProblem}`,
      c,
      "RFC 5280 §4.1.2.2",
    );
  }
  const keyProblem = publicKeyProblem(c.cert.subjectPublicKeyInfo);
  if (keyProblem) {
    fail("unsupported key", `${c.subject}: ${keyProblem}`, c, "CA/Browser Forum BR §6.1.5");
  }
  if (role !== "anchor" && !isSupportedSignatureAlgorithm(c.signatureAlgorithm)) {
    fail(
      "unsupported signature algorithm",
      `${c.subject} is signed with ${c.signatureAlgorithm}`,
      c,
      "RFC 5280 §4.1.1.2",
    );
  }
  const critical = (oid: string) => c.cert.extension(oid)?.critical;
  if (critical(AKI_OID)) {
    fail(
      "bad extension",
      `${c.subject}: authorityKeyIdentifier is critical`,
      c,
      "RFC 5280 §4.2.1.1",
    );
  }
  if (critical(SKI_OID)) {
    fail("bad extension", `${c.subject}: subjectKeyIdentifier is critical`, c, "RFC 5280 §4.2.1.2");
  }
  if (critical(POLICY_CONSTRAINTS_OID) === false) {
    fail(
      "bad extension",
      `${c.subject}: policyConstraints is not critical`,
      c,
      "RFC 5280 §4.2.1.11",
    );
  }
  const emptySubject = c.cert.emptySubject;
  if (emptySubject && (role === "intermediate" || role === "anchor")) {
    fail("empty subject", "a CA certificate has an empty subject", c, "RFC 5280 §4.1.2.6");
  }
  const sanCritical = critical(SAN_OID);
  if (emptySubject && sanCritical !== true) {
    fail(
      "bad extension",
      `a certificate with an empty subject needs a critical subjectAltName (${
        sanCritical === undefined ? "it has none" : "it is not critical"
      })`,
      c,
      "RFC 5280 §4.2.1.6",
    );
  }
  if (!emptySubject && sanCritical) {
    fail(
      "bad extension",
      `${c.subject}: subjectAltName is critical though the subject is not empty`,
      c,
      "RFC 5280 §4.2.1.6",
    );
  }

  const constraints = c.cert.basicConstraints;
  const keyCertSign = !!((c.cert.keyUsage ?? 0) & KeyUsage.keyCertSign);
  if (role === "leaf" && constraints?.ca) {
    fail(
      "CA as end entity",
      `${c.subject} is a CA certificate (basicConstraints cA) presented as the leaf`,
      c,
      "RFC 5280 §4.2.1.9",
    );
  }
  if (keyCertSign && !constraints?.ca) {
    fail(
      "bad key usage",
      `${c.subject} asserts keyCertSign but is not a CA (basicConstraints cA absent)`,
      c,
      "RFC 5280 §4.2.1.3",
    );
  }
  if (role === "intermediate" || role === "anchor") {
    if (critical(BASIC_CONSTRAINTS_OID) !== true) {
      fail(
        "bad extension",
        `${c.subject}: basicConstraints of a CA must be present and critical`,
        c,
        "RFC 5280 §4.2.1.9",
      );
    }
    if (!c.subjectKeyId) {
      fail(
        "missing key identifier",
        `${c.subject}: a CA certificate has no subjectKeyIdentifier`,
        c,
        "RFC 5280 §4.2.1.2",
      );
    }
  }
}

/**
 * authorityKeyIdentifier (RFC 5280 §4.2.1.1): present, with a keyIdentifier, in every
 * certificate that is not self-signed; never naming the issuer by name and serial
 * (CA/Browser Forum BR §7.1.2.11.1); and in a self-signed trust anchor, naming its own key.
 */
async function checkKeyIdentifiers(path: Candidate[], fail: Fail): Promise<void> {
  for (const [i, c] of path.entries()) {
    const aki = c.authorityKeyIdentifier;
    if (aki && (aki.hasAuthorityCertIssuer || aki.hasAuthorityCertSerialNumber)) {
      fail(
        "bad key identifier",
        `${c.subject}: authorityKeyIdentifier names the issuer by name and serial number`,
        c,
        "CA/Browser Forum BR §7.1.2.11.1",
      );
    }
    if (aki && aki.keyIdentifier === undefined) {
      fail(
        "bad key identifier",
        `${c.subject}: authorityKeyIdentifier has no keyIdentifier`,
        c,
        "RFC 5280 §4.2.1.1",
      );
    }
    const role = roleIn(path, i);
    // A trust anchor's own signature is not part of path validation (RFC 5280 §6.1): a
    // self-issued anchor counts as self-signed whatever algorithm signed it.
    const selfSigned = role === "anchor" || role === "pinned" ? c.selfIssued : await c.selfSigned();
    if (!aki && !selfSigned && role !== "pinned") {
      fail(
        "missing key identifier",
        `${c.subject} is not self-signed and has no authorityKeyIdentifier`,
        c,
        "RFC 5280 §4.2.1.1",
      );
    }
    if (aki && selfSigned && c.authorityKeyId !== c.subjectKeyId) {
      fail(
        "bad key identifier",
        `${c.subject} is self-signed but its authorityKeyIdentifier names another key`,
        c,
        "RFC 5280 §4.2.1.1",
      );
    }
  }
}

/**
 * Leaf key usage and extended key usage (the CA/Browser Forum subscriber profile, §7.1.2.7.10:
 * an EKU, not critical, naming the role and not anyExtendedKeyUsage alone), EKU restrictions on
 * the CAs above it, and no EKU in a root (§7.1.2.1.2).
 */
function checkPurpose(path: Candidate[], purpose: Purpose, fail: Fail): void {
  if (path.length === 1) return;
  const leaf = path[0];
  const anchor = path[path.length - 1];
  if (anchor.selfIssued && anchor.cert.extendedKeyUsage) {
    fail(
      "purpose mismatch",
      `root ${anchor.subject} carries an extKeyUsage extension`,
      anchor,
      "CA/Browser Forum BR §7.1.2.1.2",
    );
  }
  const leafRule = "CA/Browser Forum BR §7.1.2.7.10";
  const leafEku = leaf.cert.extendedKeyUsage;
  if (!leafEku) fail("purpose mismatch", `${leaf.subject} has no extKeyUsage`, leaf, leafRule);
  if (leaf.cert.extension(EKU_OID)?.critical) {
    fail("purpose mismatch", `${leaf.subject}: extKeyUsage is critical`, leaf, leafRule);
  }
  if (!leafEku.some((u) => u !== EKU_ANY)) {
    fail(
      "purpose mismatch",
      `${leaf.subject}: extKeyUsage ${leafEku.length ? "is anyExtendedKeyUsage only" : "is empty"}`,
      leaf,
      leafRule,
    );
  }
  if (purpose === "any") return;
  const usage = leaf.cert.keyUsage;
  // TLS 1.3 authenticates with a signature whatever the key type.
  if (usage !== undefined && !(usage & KeyUsage.digitalSignature)) {
    fail(
      "bad key usage",
      `${leaf.subject} may not make signatures (no digitalSignature)`,
      leaf,
      "RFC 5280 §4.2.1.3",
    );
  }
  const wanted = purpose === "server" ? EKU_SERVER : EKU_CLIENT;
  if (!leafEku.includes(wanted)) {
    fail(
      "purpose mismatch",
      `${leaf.subject} is not valid for TLS ${purpose} authentication`,
      leaf,
      leafRule,
    );
  }
  // A CA's EKU restricts what it issues for.
  for (const c of path.slice(1)) {
    const eku = c.cert.extendedKeyUsage;
    if (eku && !eku.some((u) => u === wanted || u === EKU_ANY)) {
      fail(
        "purpose mismatch",
        `${c.subject} may not issue for TLS ${purpose} authentication (its extKeyUsage)`,
        c,
        "RFC 5280 §4.2.1.12",
      );
    }
  }
}

/**
 * policyConstraints requireExplicitPolicy (RFC 5280 §6.1.3 (d), §6.1.4 (i), §6.1.5): qsign
 * asks for no particular policy, so a path must carry a valid policy only when a CA requires
 * one; then every certificate below the anchor needs certificatePolicies, and the policies of
 * the path must intersect (anyPolicy matching all). Policy mapping is not supported, so a
 * critical policyMappings stays an unknown critical extension.
 */
function checkPolicies(path: Candidate[], fail: Fail): void {
  const processed = path.slice(0, -1).reverse(); // below the anchor, top first
  let explicit = processed.length + 1;
  for (const [k, c] of processed.entries()) {
    const last = k === processed.length - 1;
    if (!last && !c.selfIssued && explicit > 0) explicit--;
    if (last && explicit > 0) explicit--;
    let required: number | undefined;
    try {
      required = c.cert.policyConstraints?.requireExplicitPolicy;
    } catch (e) {
      fail(
        "bad extension",
        `${c.subject}: policyConstraints cannot be parsed (${(e as Error).message})`,
        c,
        "RFC 5280 §4.2.1.11",
      );
    }
    if (required === undefined) continue;
    if (!last || required === 0) explicit = Math.min(explicit, required);
  }
  if (explicit > 0) return;
  let valid: Set<string> | undefined; // undefined: anyPolicy so far
  for (const c of processed) {
    const policies = c.cert.certificatePolicies;
    if (!policies?.length) {
      fail(
        "policy constraints",
        `an explicit policy is required and ${c.subject} has no certificatePolicies`,
        c,
        "RFC 5280 §6.1.5",
      );
    }
    if (policies.includes(ANY_POLICY)) continue;
    valid = new Set(valid ? policies.filter((p) => valid!.has(p)) : policies);
    if (!valid.size) {
      fail(
        "policy constraints",
        `an explicit policy is required and no policy of ${c.subject} is valid for the path`,
        c,
        "RFC 5280 §6.1.5",
      );
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
    const crls = context.crls.filter((crl) =>
      crl.covers(issuer) && crlScopeIncludes(crl, subject, issuer, fail)
    );
    const required = crlCheck === "chain" || (crlCheck === "leaf" && i === 0);
    if (required && !crls.length) {
      fail(
        "crl missing",
        `no CRL from ${issuer.subject} to check ${subject.subject} against`,
        subject,
        "RFC 5280 §6.3",
      );
    }
    for (const parsed of crls) {
      await context.work.pause();
      const crl = parsed.crl;
      const invalid = (detail: string, rule: string): never =>
        fail("crl invalid", `CRL of ${issuer.subject} ${detail}`, issuer, rule);
      if (!parsed.algorithmsAgree) {
        invalid(
          "has a signatureAlgorithm other than its tbsCertList.signature",
          "RFC 5280 §5.1.1.2",
        );
      }
      const algorithm = (crl as unknown as { asn: { signatureAlgorithm: { algorithm: string } } })
        .asn.signatureAlgorithm.algorithm;
      if (!isSupportedSignatureAlgorithm(algorithm)) {
        invalid(`is signed with ${algorithm}, which qsign does not accept`, "RFC 5280 §5.1.1.2");
      }
      if (!(await parsed.signedBy(issuer))) {
        invalid("is not signed by its key", "RFC 5280 §6.3.3 (g)");
      }
      const usage = issuer.cert.keyUsage;
      if (usage !== undefined && !(usage & KeyUsage.cRLSign)) {
        fail(
          "crl invalid",
          `${issuer.subject} may not sign CRLs (no cRLSign)`,
          issuer,
          "RFC 5280 §4.2.1.3",
        );
      }
      const second = Math.floor(context.at.getTime() / 1000);
      if (second < Math.floor(crl.thisUpdate.getTime() / 1000)) {
        invalid(`is not valid before ${crl.thisUpdate.toISOString()}`, "RFC 5280 §5.1.2.4");
      }
      const nextUpdate = crl.nextUpdate;
      if (!nextUpdate) return invalid("has no nextUpdate", "RFC 5280 §5.1.2.5");
      if (nextUpdate < crl.thisUpdate) {
        invalid("has a nextUpdate before its thisUpdate", "RFC 5280 §5.1.2.5");
      }
      if (second > Math.floor(nextUpdate.getTime() / 1000)) {
        invalid(`expired ${nextUpdate.toISOString()}`, "RFC 5280 §5.1.2.5");
      }
      const number = crl.extensions.find((e) => e.type === CRL_NUMBER_OID);
      if (!number) return invalid("has no CRLNumber", "RFC 5280 §5.2.3");
      if (number.critical) invalid("marks CRLNumber critical", "RFC 5280 §5.2.3");
      const critical = crl.extensions.find((e) => e.critical && !KNOWN_CRL_EXTENSIONS.has(e.type));
      if (critical) invalid(`has critical extension ${critical.type}`, "RFC 5280 §5.2");
      const entry = crl.findRevoked(subject.cert.serialNumber);
      if (entry && entry.revocationDate <= context.at) {
        const reason = entry.reason !== undefined ? `, ${x509.X509CrlReason[entry.reason]}` : "";
        fail(
          "revoked",
          `${subject.subject} (serial ${subject.cert.serialNumber}) was revoked ${entry.revocationDate.toISOString()}${reason}`,
          subject,
          "RFC 5280 §6.3.3",
        );
      }
      until = Math.min(until ?? Infinity, nextUpdate.getTime());
    }
  }
  return until;
}

/**
 * Whether a CRL's scope (its issuingDistributionPoint, RFC 5280 §5.2.5 and §6.3.3 (b)) takes in
 * `subject`: a CRL for user certificates only does not cover a CA, one for CA certificates only
 * does not cover a leaf, one for attribute certificates or some reasons only covers nothing
 * qsign checks, and one for a named distribution point covers a certificate whose
 * cRLDistributionPoints names it. An issuingDistributionPoint that is not critical, or an
 * indirect CRL (not supported), makes the CRL invalid.
 */
function crlScopeIncludes(
  parsed: ParsedCrl,
  subject: Candidate,
  issuer: Candidate,
  fail: Fail,
): boolean {
  const extension = parsed.crl.extensions.find((e) => e.type === ISSUING_DISTRIBUTION_POINT_OID);
  if (!extension) return true;
  const invalid = (detail: string): never =>
    fail("crl invalid", `CRL of ${issuer.subject} ${detail}`, issuer, "RFC 5280 §5.2.5");
  if (!extension.critical) invalid("has an issuingDistributionPoint that is not critical");
  let idp: IssuingDistributionPoint;
  try {
    idp = AsnConvert.parse(extension.value, IssuingDistributionPoint);
  } catch (e) {
    return invalid(`has a malformed issuingDistributionPoint (${(e as Error).message})`);
  }
  if (idp.indirectCRL) invalid("is an indirect CRL, which qsign does not support");
  if (idp.onlyContainsAttributeCerts || idp.onlySomeReasons) return false;
  if (idp.onlyContainsUserCerts && subject.isCa) return false;
  if (idp.onlyContainsCACerts && !subject.isCa) return false;
  const scoped = idp.distributionPoint?.fullName;
  if (!scoped) return true;
  const points = subject.cert.crlDistributionPoints;
  if (!points) return false;
  const names = new Set(scoped.map((n) => toHex(new Uint8Array(AsnConvert.serialize(n)))));
  return points.some((point) => point.fullName?.some((n) => names.has(toHex(n))));
}
