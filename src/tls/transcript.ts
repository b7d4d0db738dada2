/**
 * The handshake transcript (RFC 8446 §4.4.1), hashed as it grows: each message is fed once to a
 * running hash, and reading the hash at a point clones the state and finishes the clone.
 *
 * The messages are kept as well, because a hash can be asked for before the suite is known: a
 * client's PSK binder hashes with the ticket's suite, and the server may then choose a suite
 * with another hash. The running hash of an algorithm starts at its first use, from the messages.
 */
import { getCryptoProvider } from "../crypto/index.ts";
import type { HashName, IncrementalHash } from "../crypto/provider.ts";
import type { CipherSuite } from "./cipher_suites.ts";
import { messageHash } from "./codec/messages.ts";

export class Transcript {
  #messages: Uint8Array[] = [];
  readonly #running = new Map<HashName, IncrementalHash>();

  add(...raw: Uint8Array[]): void {
    this.#messages.push(...raw);
    for (const hash of this.#running.values()) {
      for (const message of raw) hash.update(message);
    }
  }

  /** Hash of everything added so far, plus `extra` (e.g. a ClientHello truncated for binders). */
  hash(suite: CipherSuite, extra?: Uint8Array): Uint8Array {
    const fork = this.#runningHash(suite.hash).clone();
    if (extra) fork.update(extra);
    return fork.digest();
  }

  /** After a HelloRetryRequest: replaces ClientHello1 with message_hash(Hash(ClientHello1)). */
  replaceWithMessageHash(suite: CipherSuite): void {
    const replacement = messageHash(this.hash(suite));
    this.#messages = [];
    this.#running.clear();
    this.add(replacement);
  }

  #runningHash(alg: HashName): IncrementalHash {
    let hash = this.#running.get(alg);
    if (!hash) {
      hash = getCryptoProvider().createHash(alg);
      for (const message of this.#messages) hash.update(message);
      this.#running.set(alg, hash);
    }
    return hash;
  }
}
