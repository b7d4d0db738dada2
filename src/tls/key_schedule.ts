/**
 * The TLS 1.3 key schedule (RFC 8446 §7): HKDF-Expand-Label, Derive-Secret, the secrets of each
 * stage, traffic keys, Finished MACs, KeyUpdate and resumption. All crypto goes through the
 * provider, synchronously: an HKDF step takes microseconds, less than the promise an async call
 * would cost, so a handshake makes none for its key schedule. This module only knows the labels
 * and the order.
 */
import { getCryptoProvider } from "../crypto/index.ts";
import type { HashName } from "../crypto/provider.ts";
import { fromHex } from "../hex.ts";
import { ByteWriter } from "./codec/bytes.ts";
import type { CipherSuite } from "./cipher_suites.ts";

const LABEL_PREFIX = "tls13 ";
const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();

/**
 * The HkdfLabel bytes before the context (length, then "tls13 " + label), by length and label.
 * A handshake expands a dozen labels, all constants of this module but for exporter labels, which
 * come from callers: so the cache holds at most `LABEL_CACHE_LIMIT` entries and is not an unbounded
 * record of what callers asked for.
 */
const labelHeads = new Map<string, Uint8Array>();
const LABEL_CACHE_LIMIT = 64;

function labelHead(length: number, label: string): Uint8Array {
  const id = `${length} ${label}`;
  const cached = labelHeads.get(id);
  if (cached) return cached;
  const head = new ByteWriter(32).u16(length).opaque(1, encoder.encode(LABEL_PREFIX + label))
    .finish();
  if (labelHeads.size < LABEL_CACHE_LIMIT) labelHeads.set(id, head);
  return head;
}

/**
 * Where each HkdfLabel is assembled: the expansion reads it synchronously and keeps nothing of
 * it, so one buffer serves every call without a new array per label (small_bytes.ts). Its size
 * is the largest HkdfLabel: length, label and context, each at most 255 bytes with its prefix.
 */
const infoScratch = new Uint8Array(2 + 1 + 255 + 1 + 255);

/** HKDF-Expand-Label(secret, label, context, length). */
export function hkdfExpandLabel(
  hash: HashName,
  secret: Uint8Array,
  label: string,
  context: Uint8Array,
  length: number,
): Uint8Array {
  if (context.length > 255) throw new RangeError(`HkdfLabel context of ${context.length} bytes`);
  const head = labelHead(length, label);
  const info = infoScratch.subarray(0, head.length + 1 + context.length);
  info.set(head);
  info[head.length] = context.length;
  info.set(context, head.length + 1);
  return getCryptoProvider().hkdfExpandSync(hash, secret, info, length);
}

/** Derive-Secret(secret, label, messages) with the transcript hash already computed. */
export function deriveSecret(
  suite: CipherSuite,
  secret: Uint8Array,
  label: string,
  transcriptHash: Uint8Array,
): Uint8Array {
  return hkdfExpandLabel(suite.hash, secret, label, transcriptHash, suite.hashLength);
}

/** The key and IV of one direction's record protection. */
export interface TrafficKeys {
  key: Uint8Array;
  iv: Uint8Array;
}

export function trafficKeys(suite: CipherSuite, secret: Uint8Array): TrafficKeys {
  return {
    key: hkdfExpandLabel(suite.hash, secret, "key", EMPTY, suite.keyLength),
    iv: hkdfExpandLabel(suite.hash, secret, "iv", EMPTY, 12),
  };
}

/** application_traffic_secret_N+1 (RFC 8446 §7.2). */
export function nextTrafficSecret(suite: CipherSuite, secret: Uint8Array): Uint8Array {
  return hkdfExpandLabel(suite.hash, secret, "traffic upd", EMPTY, suite.hashLength);
}

/** The Finished verify_data for `baseKey` (a handshake traffic secret or binder key). */
export function finishedMac(
  suite: CipherSuite,
  baseKey: Uint8Array,
  transcriptHash: Uint8Array,
): Uint8Array {
  const finishedKey = hkdfExpandLabel(
    suite.hash,
    baseKey,
    "finished",
    EMPTY,
    suite.hashLength,
  );
  return getCryptoProvider().hmacSync(suite.hash, finishedKey, transcriptHash);
}

/** The PSK a NewSessionTicket stands for (RFC 8446 §4.6.1). */
export function resumptionPsk(
  suite: CipherSuite,
  resumptionMasterSecret: Uint8Array,
  ticketNonce: Uint8Array,
): Uint8Array {
  return hkdfExpandLabel(
    suite.hash,
    resumptionMasterSecret,
    "resumption",
    ticketNonce,
    suite.hashLength,
  );
}

/**
 * Hash of the empty string (FIPS 180-4), the context of the "derived" and binder secrets: the
 * same every handshake, so not computed in any.
 */
const EMPTY_HASHES: Record<HashName, Uint8Array> = {
  "SHA-256": fromHex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
  "SHA-384": fromHex(
    "38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da" +
      "274edebfe76f65fbd51ad2f14898b95b",
  ),
  "SHA-512": fromHex(
    "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce" +
      "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
  ),
};

/** Hash of the empty string with `suite`'s hash. */
export function emptyHash(suite: CipherSuite): Uint8Array {
  return EMPTY_HASHES[suite.hash];
}

/** The all-zero salt and input keying material of the key schedule; never written. */
const ZEROS = new Uint8Array(64);

/**
 * The secrets of one handshake, advanced stage by stage:
 * `KeySchedule.start` (early secret) → `enterHandshake` (with the (EC)DHE/KEM secret) →
 * `enterMaster`. Each accessor derives from the stage it belongs to.
 */
export class KeySchedule {
  private constructor(readonly suite: CipherSuite, private secret: Uint8Array) {}

  /** Starts with the early secret from `psk` (or zeros when there is none). */
  static start(suite: CipherSuite, psk?: Uint8Array): KeySchedule {
    const zeros = ZEROS.subarray(0, suite.hashLength);
    const early = getCryptoProvider().hkdfExtractSync(suite.hash, zeros, psk ?? zeros);
    return new KeySchedule(suite, early);
  }

  /** binder_key for resumption PSKs (early stage). */
  binderKey(): Uint8Array {
    return deriveSecret(this.suite, this.secret, "res binder", emptyHash(this.suite));
  }

  #advance(ikm: Uint8Array): void {
    const derived = deriveSecret(this.suite, this.secret, "derived", emptyHash(this.suite));
    this.secret = getCryptoProvider().hkdfExtractSync(this.suite.hash, derived, ikm);
  }

  /** Early → handshake secret, from the key exchange's shared secret. */
  enterHandshake(sharedSecret: Uint8Array): void {
    return this.#advance(sharedSecret);
  }

  /** Handshake → master secret. */
  enterMaster(): void {
    return this.#advance(ZEROS.subarray(0, this.suite.hashLength));
  }

  /** Client and server traffic secrets of the current stage (hs or ap) at `transcriptHash`. */
  trafficSecrets(
    stage: "hs" | "ap",
    transcriptHash: Uint8Array,
  ): { client: Uint8Array; server: Uint8Array } {
    return {
      client: deriveSecret(this.suite, this.secret, `c ${stage} traffic`, transcriptHash),
      server: deriveSecret(this.suite, this.secret, `s ${stage} traffic`, transcriptHash),
    };
  }

  /** resumption_master_secret (master stage), at the transcript through client Finished. */
  resumptionMasterSecret(transcriptHash: Uint8Array): Uint8Array {
    return deriveSecret(this.suite, this.secret, "res master", transcriptHash);
  }
}
