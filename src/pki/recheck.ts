/**
 * Re-checking a chain that verified earlier, from facts kept about it rather than the
 * certificates themselves: what a session ticket can carry (an ML-DSA chain would make tickets
 * larger than TLS clients store). On resumption the server asks again, against the trust
 * store and CRLs configured now: is the trust anchor still configured, is every certificate
 * (the anchor included) within its validity window, and is any certificate of the chain revoked
 * by a current CRL, with the `crlCheck` policy's CRLs present.
 *
 * The signatures of the chain are not verified again (the facts came out of a verification and
 * were sealed by the ticket key). A CRL whose issuer is the trust anchor is verified with the
 * anchor's key, as a full verification does; a CRL issued by an intermediate CA cannot be (the
 * facts hold the intermediate's key fingerprint, not its key), so it is matched by issuer name
 * and key identifier only. That errs on refusal: a listed serial declines the resumption, and
 * the full handshake that follows verifies everything, CRL signatures included.
 */
import "reflect-metadata";
import type * as x509 from "@peculiar/x509";
import { getCryptoProvider } from "../crypto/index.ts";
import { toHex } from "../hex.ts";
import { type CertificateView, KeyUsage } from "./certificate_view.ts";
import { verifySignature } from "./signatures.ts";
import {
  certificateFingerprint,
  type ChainFailureReason,
  type CrlCheck,
  type TrustStore,
} from "./verify.ts";

/** What re-checking one certificate of a verified chain needs. */
export interface CertificateFacts {
  /** Subject and issuer distinguished names, as `CertificateView.subject`/`.issuer` give them. */
  subject: string;
  issuer: string;
  /** Serial number, lowercase hex, as `CertificateView.serialNumber` gives it. */
  serial: string;
  /** Validity window, milliseconds since the epoch. */
  notBefore: number;
  notAfter: number;
  /** SHA-256 of the certificate's SubjectPublicKeyInfo. */
  keyFingerprint: Uint8Array;
  /** Subject and authority key identifiers (hex), when the certificate has them. */
  subjectKeyId?: string;
  authorityKeyId?: string;
}

/** A verified chain as facts: the certificates below the trust anchor, and the anchor. */
export interface ChainFacts {
  /** Leaf first, up to (not including) the trust anchor; empty for a pinned leaf. */
  certificates: CertificateFacts[];
  /** SHA-256 of the trust anchor's DER. */
  anchorFingerprint: Uint8Array;
}

/** Why a re-check refused a chain. */
export interface RecheckFailure {
  reason: ChainFailureReason | "anchor removed";
  detail: string;
}

/** CRL extensions a verifier may meet as critical (as verify.ts): CRL number, authority key id. */
const KNOWN_CRL_EXTENSIONS = new Set(["2.5.29.20", "2.5.29.35"]);

function sha256(data: Uint8Array): Uint8Array {
  return getCryptoProvider().hashSync("SHA-256", data);
}

/** The facts of one certificate. */
export function certificateFacts(cert: CertificateView): CertificateFacts {
  return {
    subject: cert.subject,
    issuer: cert.issuer,
    serial: cert.serialNumber,
    notBefore: cert.notBeforeMs,
    notAfter: cert.notAfterMs,
    keyFingerprint: sha256(cert.subjectPublicKeyInfo),
    subjectKeyId: cert.subjectKeyIdentifier,
    authorityKeyId: cert.authorityKeyIdentifier?.keyIdentifier,
  };
}

/** The facts of a chain as a verifier returned it (leaf first, trust anchor last). */
export function chainFacts(chain: readonly CertificateView[]): ChainFacts {
  if (!chain.length) throw new RangeError("chainFacts needs a verified chain");
  return {
    certificates: chain.slice(0, -1).map(certificateFacts),
    anchorFingerprint: sha256(chain[chain.length - 1].der),
  };
}

/** A store's anchors by DER fingerprint (hex), computed once per store. */
const anchorIndex = new WeakMap<TrustStore, Map<string, CertificateView>>();

function anchorsByFingerprint(store: TrustStore): Map<string, CertificateView> {
  let index = anchorIndex.get(store);
  if (!index) {
    index = new Map(store.anchors.map((a) => [certificateFingerprint(a.der), a]));
    anchorIndex.set(store, index);
  }
  return index;
}

/** Verdicts of CRL signatures by anchor keys: a CRL object is checked once per anchor. */
const crlSignatures = new WeakMap<x509.X509Crl, WeakMap<CertificateView, Promise<boolean>>>();

function crlSignedBy(crl: x509.X509Crl, anchor: CertificateView): Promise<boolean> {
  let byAnchor = crlSignatures.get(crl);
  if (!byAnchor) crlSignatures.set(crl, byAnchor = new WeakMap());
  let verdict = byAnchor.get(anchor);
  if (!verdict) byAnchor.set(anchor, verdict = verifySignature(crl, anchor));
  return verdict;
}

function keyIdsMatch(a: string | undefined, b: string | undefined): boolean {
  return !a || !b || a.toLowerCase() === b.toLowerCase();
}

/**
 * Re-checks `facts` against `store` at `at` under `crlCheck`: undefined when the chain still
 * holds, else why not. Never throws on the facts' content.
 */
export async function recheckChain(
  facts: ChainFacts,
  store: TrustStore,
  crlCheck: CrlCheck,
  at: Date,
): Promise<RecheckFailure | undefined> {
  const anchor = anchorsByFingerprint(store).get(toHex(facts.anchorFingerprint));
  if (!anchor) {
    return { reason: "anchor removed", detail: "the chain's trust anchor is no longer configured" };
  }
  const time = at.getTime();
  const windows = [
    ...facts.certificates.map((c) => ({ subject: c.subject, from: c.notBefore, to: c.notAfter })),
    { subject: anchor.subject, from: anchor.notBeforeMs, to: anchor.notAfterMs },
  ];
  for (const w of windows) {
    if (time < w.from) {
      return {
        reason: "not yet valid",
        detail: `${w.subject} is valid from ${new Date(w.from).toISOString()}`,
      };
    }
    if (time > w.to) {
      return { reason: "expired", detail: `${w.subject} expired ${new Date(w.to).toISOString()}` };
    }
  }

  const anchorKeyId = anchor.subjectKeyIdentifier;
  const last = facts.certificates.length - 1;
  for (const [i, cert] of facts.certificates.entries()) {
    const issuedByAnchor = i === last;
    const issuerKeyId = issuedByAnchor ? anchorKeyId : facts.certificates[i + 1].subjectKeyId;
    const crls = store.crls.filter((c) =>
      c.issuer === cert.issuer && keyIdsMatch(c.authorityKeyId, issuerKeyId)
    );
    const required = crlCheck === "chain" || (crlCheck === "leaf" && i === 0);
    if (required && !crls.length) {
      return {
        reason: "crl missing",
        detail: `no CRL from ${cert.issuer} to check ${cert.subject} against`,
      };
    }
    for (const { crl } of crls) {
      const failure = await crlVerdict(crl, cert, at, issuedByAnchor ? anchor : undefined);
      if (failure) return failure;
    }
  }
  return undefined;
}

/** One CRL's verdict on `cert`: its own validity (and signature, given the issuer), then the serial. */
async function crlVerdict(
  crl: x509.X509Crl,
  cert: CertificateFacts,
  at: Date,
  issuer: CertificateView | undefined,
): Promise<RecheckFailure | undefined> {
  const invalid = (detail: string): RecheckFailure => ({
    reason: "crl invalid",
    detail: `CRL of ${cert.issuer} ${detail}`,
  });
  if (issuer) {
    if (!(await crlSignedBy(crl, issuer))) return invalid("is not signed by its key");
    const usage = issuer.keyUsage;
    if (usage !== undefined && !(usage & KeyUsage.cRLSign)) {
      return invalid("is signed by a CA without cRLSign");
    }
  }
  if (at < crl.thisUpdate) return invalid(`is not valid before ${crl.thisUpdate.toISOString()}`);
  if (crl.nextUpdate && at > crl.nextUpdate) {
    return invalid(`expired ${crl.nextUpdate.toISOString()}`);
  }
  const critical = crl.extensions.find((e) => e.critical && !KNOWN_CRL_EXTENSIONS.has(e.type));
  if (critical) return invalid(`has critical extension ${critical.type}`);
  const entry = crl.findRevoked(cert.serial);
  if (entry && entry.revocationDate <= at) {
    return {
      reason: "revoked",
      detail:
        `${cert.subject} (serial ${cert.serial}) was revoked ${entry.revocationDate.toISOString()}`,
    };
  }
  return undefined;
}
