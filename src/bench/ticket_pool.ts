/**
 * The client session cache of a resumption benchmark. The engine's `MemorySessionCache` keeps a
 * few tickets per server, enough for one user; C concurrent connections need C tickets at once,
 * so this pool keeps up to `capacity` per server. Each ticket is used once while the server keeps
 * issuing new ones; a server that issues none on resumed connections (OpenSSL with client
 * authentication) gets its newest ticket offered again, as `openssl s_client -sess_in` would.
 */
import type { ClientSession, ClientSessionCache } from "../tls/tickets.ts";

export class TicketPool implements ClientSessionCache {
  readonly #fresh = new Map<string, ClientSession[]>();
  readonly #newest = new Map<string, ClientSession>();
  /** How many times a ticket was offered again for want of a fresh one. */
  reuses = 0;

  constructor(readonly capacity: number) {}

  put(key: string, session: ClientSession): void {
    const list = this.#fresh.get(key) ?? [];
    list.push(session);
    if (list.length > this.capacity) list.shift();
    this.#fresh.set(key, list);
    this.#newest.set(key, session);
  }

  take(key: string): ClientSession | undefined {
    const list = this.#fresh.get(key);
    while (list?.length) {
      const session = list.pop()!;
      if (isValid(session)) return session;
    }
    const newest = this.#newest.get(key);
    if (!newest || !isValid(newest)) return undefined;
    this.reuses++;
    return newest;
  }

  /** Fresh tickets held, every server together. */
  get size(): number {
    let total = 0;
    for (const list of this.#fresh.values()) total += list.length;
    return total;
  }
}

function isValid(session: ClientSession): boolean {
  return Date.now() - session.receivedMs < session.lifetimeSeconds * 1000;
}
