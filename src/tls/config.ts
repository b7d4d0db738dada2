/**
 * Configuration of the TLS engine and the facts a finished handshake reports.
 * Names (groups, suites, schemes) are IANA names; see groups.ts, cipher_suites.ts, sigschemes.ts.
 */
import type { CertificateView } from "../pki/certificate_view.ts";
import type { CrlCheck } from "../pki/verify.ts";
import type { KeyShareHints } from "./groups.ts";
import type { ClientOffer } from "./offer.ts";
import type { Signer } from "./sigschemes.ts";
import type { HandshakeBufferBudget } from "./record.ts";
import type { ClientSessionCache, TicketIssuer } from "./tickets.ts";

/** A certificate chain and the key that signs for its leaf. */
export interface CertifiedKey {
  /** DER certificates, leaf first (intermediates follow; the root is usually left out). */
  chain: Uint8Array[];
  signer: Signer;
}

/** A peer chain that passed verification. */
export interface VerifiedPeer {
  /** The chain as verified, leaf first, trust anchor last. */
  chain: CertificateView[];
  leaf: CertificateView;
}

/**
 * Checks a peer's certificate chain. Throws `TlsAlert` naming the alert to send (the default
 * verifier maps `ChainVerificationError` reasons to alerts, see peer.ts).
 */
export interface PeerVerifier {
  verify(
    chain: Uint8Array[],
    context: { role: "client" | "server"; serverName?: string },
  ): Promise<VerifiedPeer>;
}

/** What both sides share. */
interface CommonConfig {
  /** Trust anchors (DER) for the peer's chain; also the server's certificate_authorities. */
  trustAnchors: Uint8Array[];
  /** CRLs (DER) consulted for the peer's chain. */
  crls?: Uint8Array[];
  /**
   * Which certificates of the peer's chain must have a CRL among `crls` (see `CrlCheck`):
   * `available` (default) checks against the CRLs given; `chain` is OpenSSL's CRL_CHECK_ALL.
   */
  crlCheck?: CrlCheck;
  /** Replaces the default chain verifier (trustAnchors/crls) entirely. */
  verifier?: PeerVerifier;
  /** Key exchange groups in preference order (default: every PQ group, SecP384r1MLKEM1024 first). */
  groups?: string[];
  /** Permits the classical groups x25519, secp256r1, secp384r1. */
  allowClassical?: boolean;
  /** Refuse a peer whose chain or CertificateVerify is not post-quantum. */
  requirePqAuth?: boolean;
  /** Cipher suites in preference order (default: every suite, the fastest here first). */
  cipherSuites?: string[];
  /** ALPN protocols in preference order. */
  alpn?: string[];
  /** Give up on a handshake after this long (default 10 s). */
  handshakeTimeoutMs?: number;
  /** record_size_limit to announce (RFC 8449; 64..16385). Not sent when absent. */
  recordSizeLimit?: number;
  /**
   * Most records protected under one write key, the KeyUpdate that retires it included
   * (RFC 8446 §5.5). When the limit is reached the connection sends a KeyUpdate by itself, so
   * the sequence number never wraps and no key is used past its AEAD's limit. Default 2^23,
   * under AES-GCM's 2^24.5; at least 2. Tests set it low to exercise the rekeying.
   */
  maxRecordsPerKey?: number;
  /**
   * Where the bytes of handshake messages spanning records are counted (record.ts): one budget
   * for every connection using it. Default: one per process, 32 MiB.
   */
  handshakeBufferBudget?: HandshakeBufferBudget;
}

export interface TlsServerConfig extends CommonConfig {
  /** The server's chains; the function form lets the daemon reload without touching live conns. */
  certificates: CertifiedKey[] | (() => CertifiedKey[]);
  clientAuth: "require" | "request" | "none";
  /**
   * Access policy on the verified client's identity (on a full handshake and again on every
   * resumption): true admits; false or a reason refuses. With a policy, a client that sends no
   * certificate is refused (certificate_required), whatever `clientAuth` says.
   */
  accessPolicy?: (peer: PeerIdentity) => boolean | string;
  /** Issues and opens session tickets; no tickets without it. */
  tickets?: TicketIssuer;
  /**
   * What this server's tickets are bound to besides its trust configuration (resumption.ts):
   * the daemon gives the service name and access policy, so a ticket resumes on no other
   * service. Default: empty.
   */
  sessionBinding?: string;
  /**
   * How long after the full handshake a session may still be resumed, in seconds (tickets
   * issued on resumed connections keep the original authentication time). Default 24 h.
   */
  resumptionMaxAgeSeconds?: number;
}

/** Who the peer's leaf certificate names: what access policies and logs use. */
export interface PeerIdentity {
  subject: string;
  /** Serial number, lowercase hex. */
  serial: string;
  /** SHA-256 of the leaf's DER, lowercase hex. */
  fingerprint: string;
  /** Subject common names and organizational units, in the order of the subject. */
  cn: string[];
  ou: string[];
  /** DNS and URI subjectAltNames. */
  dns: string[];
  uri: string[];
}

export interface TlsClientConfig extends CommonConfig {
  /** The name to send in SNI and to check the server's certificate against (DNS name or IP). */
  serverName?: string;
  /** The client certificate, sent when the server asks for one. */
  certificate?: CertifiedKey;
  /**
   * The signature schemes to accept from the server, as offered in signature_algorithms (names
   * as in sigschemes.ts, e.g. `mldsa65`, `ecdsa_secp384r1_sha384`; the server picks in this
   * order). Default: every scheme qsign knows (the post-quantum ones with requirePqAuth). The
   * certificates of the server's chain are still judged by signature_algorithms_cert, and our
   * own CertificateVerify by the server's CertificateRequest.
   */
  signatureSchemes?: string[];
  /** Where tickets from the server are kept for resumption. */
  sessionCache?: ClientSessionCache;
  /**
   * Middlebox compatibility mode (RFC 8446 D.4), on by default as in OpenSSL, BoringSSL and Go:
   * a random 32-byte legacy_session_id and one change_cipher_spec before the second flight.
   * False sends an empty session id and no change_cipher_spec.
   */
  middleboxCompat?: boolean;
  /**
   * Where the group a server asked for in a HelloRetryRequest is remembered, per server name
   * and address, to offer its share first next time (default: one store per process).
   */
  keyShareHints?: KeyShareHints;
}

/** The facts of a completed handshake. */
export interface HandshakeInfo {
  version: "TLSv1.3";
  role: "client" | "server";
  cipherSuite: string;
  group: string;
  /** The scheme of our CertificateVerify (absent when we did not sign: resumption, no client cert). */
  signatureScheme?: string;
  /** The scheme of the peer's CertificateVerify (absent on resumption or without a client cert). */
  peerSignatureScheme?: string;
  resumed: boolean;
  helloRetry: boolean;
  alpn?: string;
  serverName?: string;
  /**
   * The peer's certificates as sent (DER, leaf first). A resumed server has none (the ticket
   * holds the client's identity, not its certificates); a resumed client, the server's chain
   * from its ticket cache.
   */
  peerCertificates: Uint8Array[];
  peerLeaf?: CertificateView;
  /**
   * Server side: the client's identity, from its certificate or, on resumption, from the
   * ticket once re-checked. Absent when the client sent no certificate.
   */
  peerIdentity?: PeerIdentity;
  /** Server side: why an offered ticket was declined for a full handshake. */
  resumptionDeclined?: string;
  timings: { startMs: number; handshakeMs: number };
  /** Server side: what the client offered. */
  clientOffer?: ClientOffer;
}
