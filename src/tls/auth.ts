/**
 * Authentication steps both handshakes share: choosing a certificate and scheme from what the
 * peer accepts, making and checking CertificateVerify (RFC 8446 §4.4.3), and the post-quantum
 * policy on a peer's chain.
 */
import { CertificateView } from "../pki/certificate_view.ts";
import { subjectAltNames } from "../pki/names.ts";
import { TlsAlert } from "./alert.ts";
import { concat } from "./codec/bytes.ts";
import type { CertifiedKey, VerifiedPeer } from "./config.ts";
import {
  certificateSignatureScheme,
  isPqCertificateSignature,
  type KeyKind,
  keyKind,
  schemeInfo,
  schemeName,
  schemesForKey,
  type SignatureScheme,
  verifySignature,
} from "./sigschemes.ts";

/** How many parsed certificates are kept (each holds its DER: a few KB for an ML-DSA leaf). */
const PARSED_LIMIT = 256;
/** Parsed certificates by DER, least recently used first. */
const parsed = new Map<string, CertificateView>();
/**
 * Decodes DER into a map key. windows-1252 (what "latin1" names) gives each byte value its own
 * character, so equal keys mean equal DER; it costs a few µs where a SHA-256 costs tens.
 */
const derKeys = new TextDecoder("latin1");

/**
 * Reads a DER certificate (a view into a message is fine: the view copies what it keeps). The
 * same certificates come back every handshake (trust anchors, the client leaf of a resumed
 * session), so the last PARSED_LIMIT are kept and shared; a CertificateView does not change when
 * read. Throws `CertificateFormatError`.
 */
export function parseCertificate(der: Uint8Array): CertificateView {
  const key = derKeys.decode(der);
  let cert = parsed.get(key);
  if (cert) {
    parsed.delete(key);
  } else {
    cert = CertificateView.parse(der);
    if (parsed.size >= PARSED_LIMIT) parsed.delete(parsed.keys().next().value!);
  }
  parsed.set(key, cert);
  return cert;
}

/** What we need to know about one of our own chains, parsed once per CertifiedKey. */
interface ChainFacts {
  leaf: CertificateView;
  kind?: KeyKind;
  /** DNS names and IPs of the leaf (SAN, else CN), lower-case. */
  names: string[];
  /** The schemes of the signatures on the chain (for signature_algorithms_cert). */
  chainSchemes: (SignatureScheme | undefined)[];
}

const facts = new WeakMap<CertifiedKey, ChainFacts>();

function chainFacts(key: CertifiedKey): ChainFacts {
  let f = facts.get(key);
  if (!f) {
    const certs = key.chain.map(parseCertificate);
    const leaf = certs[0];
    f = {
      leaf,
      kind: keyKind(leaf),
      names: leafNames(leaf),
      chainSchemes: certs.map(certificateSignatureScheme),
    };
    facts.set(key, f);
  }
  return f;
}

function leafNames(leaf: CertificateView): string[] {
  const { dns, ip } = subjectAltNames(leaf);
  const names = [...dns, ...ip].map((n) => n.toLowerCase());
  if (!names.length) {
    const cn = leaf.subjectField("CN")[0];
    if (cn) names.push(cn.toLowerCase());
  }
  return names;
}

/** True when `name` matches a certificate name (one leading `*.` label wildcard). */
function nameMatches(pattern: string, name: string): boolean {
  if (pattern === name) return true;
  if (!pattern.startsWith("*.")) return false;
  const dot = name.indexOf(".");
  return dot > 0 && name.slice(dot + 1) === pattern.slice(2);
}

/** One of our chains and the scheme its key signs CertificateVerify with. */
export interface ChosenCertificate {
  key: CertifiedKey;
  scheme: SignatureScheme;
}

/**
 * Chooses the server's chain and CertificateVerify scheme, as OpenSSL does: among chains whose
 * leaf matches `serverName` (all chains when none match or no SNI), the first scheme in the
 * client's signature_algorithms order that one of them can make, preferring a chain whose
 * signatures the client also accepts (signature_algorithms_cert, else signature_algorithms).
 * handshake_failure when no chain can sign.
 */
export function selectCertificate(
  keys: readonly CertifiedKey[],
  serverName: string | undefined,
  peerSchemes: readonly SignatureScheme[],
  peerCertSchemes: readonly SignatureScheme[] | undefined,
): ChosenCertificate {
  const named = serverName
    ? keys.filter((k) => chainFacts(k).names.some((p) => nameMatches(p, serverName)))
    : [];
  const candidates = named.length ? named : keys;
  const certSchemes = peerCertSchemes ?? peerSchemes;
  const chainAccepted = (key: CertifiedKey) => {
    const schemes = chainFacts(key).chainSchemes;
    // The last certificate may be a self-signed root whose signature nobody checks.
    return schemes.slice(0, Math.max(1, schemes.length - 1))
      .every((s) => s !== undefined && certSchemes.includes(s));
  };
  let fallback: ChosenCertificate | undefined;
  for (const scheme of peerSchemes) {
    for (const key of candidates) {
      if (signerScheme(key, [scheme]) === undefined) continue;
      if (chainAccepted(key)) return { key, scheme };
      fallback ??= { key, scheme };
    }
  }
  if (fallback) return fallback;
  throw new TlsAlert(
    "handshake_failure",
    `no certificate can sign with a scheme the peer accepts (${
      peerSchemes.map(schemeName).join(", ")
    })`,
  );
}

/** The first scheme (in the signer's preference) that the peer accepts and the key can make. */
export function signerScheme(
  key: CertifiedKey,
  peerSchemes: readonly SignatureScheme[],
): SignatureScheme | undefined {
  const kind = chainFacts(key).kind;
  const possible = kind ? schemesForKey(kind) : [];
  return key.signer.schemes.find((s) => possible.includes(s) && peerSchemes.includes(s));
}

const SERVER_CONTEXT = new TextEncoder().encode("TLS 1.3, server CertificateVerify\0");
const CLIENT_CONTEXT = new TextEncoder().encode("TLS 1.3, client CertificateVerify\0");
const PAD = new Uint8Array(64).fill(0x20);

/** The content a CertificateVerify signs (RFC 8446 §4.4.3). */
export function certificateVerifyInput(
  signer: "client" | "server",
  transcriptHash: Uint8Array,
): Uint8Array {
  return concat(PAD, signer === "server" ? SERVER_CONTEXT : CLIENT_CONTEXT, transcriptHash);
}

/**
 * Checks the peer's CertificateVerify: the scheme must be one we offered and fit the leaf's key
 * (illegal_parameter), and the signature must verify (decrypt_error).
 */
export async function checkCertificateVerify(
  peer: VerifiedPeer,
  scheme: SignatureScheme,
  signature: Uint8Array,
  signer: "client" | "server",
  transcriptHash: Uint8Array,
  offered: readonly SignatureScheme[],
): Promise<void> {
  const kind = keyKind(peer.leaf);
  if (!offered.includes(scheme) || !kind || !schemesForKey(kind).includes(scheme)) {
    throw new TlsAlert(
      "illegal_parameter",
      `CertificateVerify uses ${schemeName(scheme)}, not offered or not the leaf's key type`,
    );
  }
  const spki = peer.leaf.subjectPublicKeyInfo;
  const input = certificateVerifyInput(signer, transcriptHash);
  if (!await verifySignature(scheme, spki, input, signature)) {
    throw new TlsAlert("decrypt_error", `${schemeName(scheme)} CertificateVerify does not verify`);
  }
}

/**
 * The requirePqAuth policy: the CertificateVerify and every signature in the chain below the
 * trust anchor must be post-quantum.
 */
export function checkPqAuth(peer: VerifiedPeer, scheme: SignatureScheme | undefined): void {
  if (scheme !== undefined && !schemeInfo(scheme)?.pq) {
    throw new TlsAlert("insufficient_security", `peer signed with classical ${schemeName(scheme)}`);
  }
  const classical = peer.chain.slice(0, Math.max(1, peer.chain.length - 1))
    .find((c) => !isPqCertificateSignature(c));
  if (classical) {
    throw new TlsAlert(
      "insufficient_security",
      `certificate ${classical.subject} has a classical signature`,
    );
  }
}
