/**
 * The default peer verifier: `verifyChain` from the PKI (purpose, CRLs, host name), with
 * verified chains cached by fingerprint so a busy mTLS server does not re-verify the same
 * client chain (ML-DSA verification of every certificate) on every handshake.
 */
import { getCryptoProvider } from "../crypto/index.ts";
import { normalizeIp } from "../pki/certificate.ts";
import {
  type ChainFailureReason,
  ChainVerificationError,
  type CrlCheck,
  TrustStore,
  verifyChain,
} from "../pki/verify.ts";
import { type AlertName, TlsAlert } from "./alert.ts";
import { concat, toHex } from "./codec/bytes.ts";
import type { PeerVerifier, TlsClientConfig, TlsServerConfig, VerifiedPeer } from "./config.ts";

/** The alert for each chain failure (contracts.md; OpenSSL's choices where it makes one). */
export function alertForChainFailure(reason: ChainFailureReason): AlertName {
  switch (reason) {
    case "expired":
    case "not yet valid":
      return "certificate_expired";
    case "unknown issuer":
    case "crl missing":
      return "unknown_ca";
    case "revoked":
      return "certificate_revoked";
    case "purpose mismatch":
    case "bad key usage":
    case "unknown critical extension":
      return "unsupported_certificate";
    default:
      return "bad_certificate";
  }
}

const CACHE_LIMIT = 1024;

/** Verifies chains against fixed trust anchors and CRLs; caches successes until expiry. */
export class ChainPeerVerifier implements PeerVerifier {
  readonly #cache = new Map<string, { peer: VerifiedPeer; expiresAt: number }>();
  #store?: Promise<TrustStore>;

  constructor(
    readonly trustAnchors: Uint8Array[],
    readonly crls?: Uint8Array[],
    readonly crlCheck: CrlCheck = "available",
  ) {}

  /** Anchors and CRLs parsed once per verifier (not per handshake). */
  async #trustStore(): Promise<TrustStore> {
    this.#store ??= TrustStore.create(this.trustAnchors, this.crls ?? []);
    try {
      return await this.#store;
    } catch (e) {
      throw new TlsAlert(
        "internal_error",
        `trust anchors or CRLs unusable: ${(e as Error).message}`,
      );
    }
  }

  async verify(
    chain: Uint8Array[],
    context: { role: "client" | "server"; serverName?: string },
  ): Promise<VerifiedPeer> {
    if (!chain.length) throw new TlsAlert("certificate_required", "empty certificate chain");
    const key = `${context.role}|${context.serverName ?? ""}|${
      toHex(await getCryptoProvider().hash("SHA-256", concat(...chain)))
    }`;
    const now = Date.now();
    const hit = this.#cache.get(key);
    if (hit && hit.expiresAt > now) return hit.peer;
    this.#cache.delete(key);

    const name = context.serverName;
    const isIp = name !== undefined && normalizeIp(name) !== undefined;
    const trustAnchors = await this.#trustStore();
    let verified;
    try {
      verified = await verifyChain(chain[0], {
        trustAnchors,
        intermediates: chain.slice(1),
        crlCheck: this.crlCheck,
        // The peer is a server when we are the client, and vice versa.
        purpose: context.role === "client" ? "server" : "client",
        host: isIp ? undefined : name,
        ip: isIp ? name : undefined,
      });
    } catch (e) {
      if (e instanceof ChainVerificationError) {
        throw new TlsAlert(alertForChainFailure(e.reason), e.message);
      }
      throw new TlsAlert("bad_certificate", `certificate chain unusable: ${(e as Error).message}`);
    }
    const peer = { chain: verified.chain, leaf: verified.leaf };
    // Until the first certificate expires or a CRL used reaches its nextUpdate.
    const expiresAt = verified.validUntil.getTime();
    if (this.#cache.size >= CACHE_LIMIT) {
      this.#cache.delete(this.#cache.keys().next().value!);
    }
    this.#cache.set(key, { peer, expiresAt });
    return peer;
  }
}

const defaults = new WeakMap<object, ChainPeerVerifier>();

/**
 * The verifier for a config: its own `verifier`, else a ChainPeerVerifier kept per config and
 * rebuilt when the config's trust anchors, CRLs or CRL policy are replaced (so a new CRL empties
 * the cache).
 */
export function verifierFor(config: TlsServerConfig | TlsClientConfig): PeerVerifier {
  if (config.verifier) return config.verifier;
  const { trustAnchors, crls } = config;
  const crlCheck = config.crlCheck ?? "available";
  let verifier = defaults.get(config);
  if (
    !verifier || verifier.trustAnchors !== trustAnchors || verifier.crls !== crls ||
    verifier.crlCheck !== crlCheck
  ) {
    verifier = new ChainPeerVerifier(trustAnchors, crls, crlCheck);
    defaults.set(config, verifier);
  }
  return verifier;
}
