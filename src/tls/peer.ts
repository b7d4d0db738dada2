/**
 * The default peer verifier: `verifyChain` from the PKI (purpose, CRLs, host name), with
 * verified chains cached so a busy mTLS server does not re-verify the same client chain
 * (ML-DSA verification of every certificate) on every handshake. A cached verdict is keyed on
 * everything it depends on: the chain's bytes, the trust store (anchors and CRLs) it was
 * reached with, the purpose, CRL policy and peer name, and it lapses when the first
 * certificate or CRL of the path does.
 *
 * Verification runs under the handshake's deadline (`withHandshakeDeadline`, set by conn.ts),
 * so a crafted chain ends with an alert before the handshake times out.
 */
import { AsyncLocalStorage } from "node:async_hooks";
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
import { toHex } from "../hex.ts";
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
    case "budget exceeded":
      return "bad_certificate";
    case "purpose mismatch":
    case "bad key usage":
    case "unsupported key":
    case "unsupported signature algorithm":
    case "unknown critical extension":
      return "unsupported_certificate";
    default:
      return "bad_certificate";
  }
}

const CACHE_LIMIT = 1024;

const handshakeDeadlines = new AsyncLocalStorage<number>();

/**
 * Runs `work` (a handshake) with `deadline` (ms since the epoch) as the deadline of every peer
 * chain verification it starts.
 */
export function withHandshakeDeadline<T>(deadline: number, work: () => T): T {
  return handshakeDeadlines.run(deadline, work);
}

/** Length-prefixed SHA-256 over the certificates: distinct chains never share a digest. */
async function chainDigest(chain: readonly Uint8Array[]): Promise<string> {
  let length = 0;
  for (const der of chain) length += 4 + der.length;
  const bytes = new Uint8Array(length);
  const view = new DataView(bytes.buffer);
  let offset = 0;
  for (const der of chain) {
    view.setUint32(offset, der.length);
    bytes.set(der, offset + 4);
    offset += 4 + der.length;
  }
  return toHex(await getCryptoProvider().hash("SHA-256", bytes));
}

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
    const trustAnchors = await this.#trustStore();
    const name = context.serverName;
    const isIp = name !== undefined && normalizeIp(name) !== undefined;
    // The peer is a server when we are the client, and vice versa.
    const purpose = context.role === "client" ? "server" : "client";
    const key = [
      trustAnchors.generation,
      purpose,
      this.crlCheck,
      isIp ? `ip:${normalizeIp(name)}` : `host:${name ?? ""}`,
      await chainDigest(chain),
    ].join("|");
    const now = Date.now();
    const hit = this.#cache.get(key);
    if (hit && hit.expiresAt > now) return hit.peer;
    this.#cache.delete(key);

    let verified;
    try {
      verified = await verifyChain(chain[0], {
        trustAnchors,
        intermediates: chain.slice(1),
        crlCheck: this.crlCheck,
        purpose,
        host: isIp ? undefined : name,
        ip: isIp ? name : undefined,
        deadline: handshakeDeadlines.getStore(),
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
 * rebuilt when the config's trust anchors, CRLs or CRL policy change, replaced or changed in
 * place (a new verifier has a new trust store, so no verdict cached by the old one applies).
 */
export function verifierFor(config: TlsServerConfig | TlsClientConfig): PeerVerifier {
  if (config.verifier) return config.verifier;
  const { trustAnchors, crls } = config;
  const crlCheck = config.crlCheck ?? "available";
  let verifier = defaults.get(config);
  if (
    !verifier || !sameItems(verifier.trustAnchors, trustAnchors) ||
    !sameItems(verifier.crls, crls) || verifier.crlCheck !== crlCheck
  ) {
    // Copies: a list changed in place later is seen as changed, not as the one verified with.
    verifier = new ChainPeerVerifier([...trustAnchors], crls && [...crls], crlCheck);
    defaults.set(config, verifier);
  }
  return verifier;
}

function sameItems<T>(a: readonly T[] | undefined, b: readonly T[] | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.length === b.length && a.every((item, i) => item === b[i]);
}
