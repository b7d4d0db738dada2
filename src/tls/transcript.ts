/**
 * The handshake transcript (RFC 8446 §4.4.1). The provider hashes one-shot, so the transcript
 * keeps the messages and hashes their concatenation on demand; a handshake is a few tens of KB.
 */
import { getCryptoProvider } from "../crypto/index.ts";
import type { CipherSuite } from "./cipher_suites.ts";
import { concat } from "./codec/bytes.ts";
import { messageHash } from "./codec/messages.ts";

export class Transcript {
  #messages: Uint8Array[] = [];

  add(...raw: Uint8Array[]): void {
    this.#messages.push(...raw);
  }

  /** Hash of everything added so far, plus `extra` (e.g. a ClientHello truncated for binders). */
  hash(suite: CipherSuite, extra?: Uint8Array): Promise<Uint8Array> {
    const parts = extra ? [...this.#messages, extra] : this.#messages;
    return getCryptoProvider().hash(suite.hash, concat(...parts));
  }

  /** After a HelloRetryRequest: replaces ClientHello1 with message_hash(Hash(ClientHello1)). */
  async replaceWithMessageHash(suite: CipherSuite): Promise<void> {
    const digest = await this.hash(suite);
    this.#messages = [messageHash(digest)];
  }
}
