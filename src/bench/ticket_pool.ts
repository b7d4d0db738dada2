/**
 * The client session cache of a resumption benchmark: the engine's MemorySessionCache, sized for
 * C connections at once, that offers a server's newest ticket again when no fresh one is left.
 * Each ticket is used once while the server keeps issuing new ones; a server that issues none on
 * resumed connections (OpenSSL with client authentication) gets its newest ticket again, as
 * `openssl s_client -sess_in` would. (A real client should not reuse tickets, RFC 8446 §C.4,
 * which is why the engine's cache does not.)
 */
import {
  type ClientSession,
  type ClientSessionCache,
  MemorySessionCache,
  ticketUsable,
} from "../tls/tickets.ts";

export class TicketPool implements ClientSessionCache {
  readonly #tickets: MemorySessionCache;
  readonly #newest = new Map<string, ClientSession>();
  /** How many times a ticket was offered again for want of a fresh one. */
  reuses = 0;

  /** Keeps up to `capacity` fresh tickets per server. Throws RangeError as MemorySessionCache. */
  constructor(capacity: number) {
    this.#tickets = new MemorySessionCache({ ticketsPerServer: capacity });
  }

  put(key: string, session: ClientSession): void {
    this.#tickets.put(key, session);
    this.#newest.set(key, session);
  }

  take(key: string): ClientSession | undefined {
    const fresh = this.#tickets.take(key);
    if (fresh) return fresh;
    const newest = this.#newest.get(key);
    if (!newest || !ticketUsable(newest, Date.now())) return undefined;
    this.reuses++;
    return newest;
  }

  /** Fresh tickets held, every server together. */
  get size(): number {
    return this.#tickets.size;
  }
}
