/**
 * Session tickets (RFC 8446 §4.6.1, §4.2.11): what the server seals into a ticket, the rotating
 * ticket key that seals it, and the client's cache of tickets for resumption.
 *
 * Ticket keys: every `rotationSeconds` a new key is derived from one secret (HKDF over the
 * epoch number), and the previous epoch's key still opens tickets. Nodes that load the same
 * secret file (`--ticket-key-file`) therefore share keys and rotate in step without talking.
 */
import { getCryptoProvider } from "../crypto/index.ts";
import { type Aead, AeadAuthError } from "../crypto/provider.ts";
import { InputError } from "../errors.ts";
import { ByteReader, ByteWriter, concat, equalBytes } from "./codec/bytes.ts";
import { TlsAlert } from "./alert.ts";

/** Seals and opens server session state. */
export interface TicketIssuer {
  /** How long a ticket is good for (≤ 7 days, RFC 8446). */
  readonly lifetimeSeconds: number;
  seal(state: Uint8Array): Uint8Array;
  /** The state in a ticket, or undefined for a ticket this issuer cannot open (unknown/expired key). */
  open(ticket: Uint8Array): Uint8Array | undefined;
}

const NAME_LENGTH = 16;
const NONCE_LENGTH = 12;
const MIN_SECRET_LENGTH = 32;
const MAX_LIFETIME = 7 * 24 * 3600;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Options for TicketKeys. */
export interface TicketKeyOptions {
  /** Ticket lifetime (default 2 hours). */
  lifetimeSeconds?: number;
  /** How often the key changes (default: the lifetime; tickets stay openable for two periods). */
  rotationSeconds?: number;
  /** The clock, for tests. */
  now?: () => number;
}

/** Ticket keys derived from one secret, rotating by epoch. */
export class TicketKeys implements TicketIssuer {
  readonly lifetimeSeconds: number;
  readonly #rotationMs: number;
  readonly #now: () => number;
  /** The current and previous epochs' key names and AEADs, made once per epoch. */
  readonly #keys = new Map<number, { name: Uint8Array; aead: Aead }>();

  constructor(readonly secret: Uint8Array, options: TicketKeyOptions = {}) {
    if (secret.length < MIN_SECRET_LENGTH) {
      throw new RangeError(`ticket key secret must be at least ${MIN_SECRET_LENGTH} bytes`);
    }
    this.lifetimeSeconds = Math.min(options.lifetimeSeconds ?? 7200, MAX_LIFETIME);
    this.#rotationMs = (options.rotationSeconds ?? this.lifetimeSeconds) * 1000;
    this.#now = options.now ?? Date.now;
  }

  /** Keys from a fresh random secret (this process only). */
  static random(options?: TicketKeyOptions): TicketKeys {
    return new TicketKeys(getCryptoProvider().randomBytes(MIN_SECRET_LENGTH), options);
  }

  /**
   * Keys from a shared secret file: at least 32 bytes, either raw or as base64/hex text (one
   * line). Throws InputError naming the file.
   */
  static async fromFile(path: string, options?: TicketKeyOptions): Promise<TicketKeys> {
    let data: Uint8Array;
    try {
      data = await Deno.readFile(path);
    } catch (e) {
      throw new InputError(path, `cannot read ticket key file: ${(e as Error).message}`);
    }
    const secret = parseSecret(data);
    if (!secret) {
      throw new InputError(
        path,
        `ticket key file must hold at least ${MIN_SECRET_LENGTH} bytes (raw, hex or base64)`,
      );
    }
    return new TicketKeys(secret, options);
  }

  #epochKey(epoch: number): { name: Uint8Array; aead: Aead } {
    let entry = this.#keys.get(epoch);
    if (!entry) {
      const p = getCryptoProvider();
      const prk = p.hkdfExtractSync("SHA-256", new Uint8Array(32), this.secret);
      const info = new ByteWriter().bytes(encoder.encode("qsign ticket key v1")).u32(epoch)
        .finish();
      const material = p.hkdfExpandSync("SHA-256", prk, info, NAME_LENGTH + 32);
      entry = {
        name: material.slice(0, NAME_LENGTH),
        aead: p.aeadSync("AES-256-GCM", material.subarray(NAME_LENGTH)),
      };
      this.#keys.set(epoch, entry);
      // Keep the current and previous epochs only.
      for (const [old, { aead }] of this.#keys) {
        if (old < epoch - 1) {
          aead.dispose();
          this.#keys.delete(old);
        }
      }
    }
    return entry;
  }

  #epoch(): number {
    return Math.floor(this.#now() / this.#rotationMs);
  }

  seal(state: Uint8Array): Uint8Array {
    const { name, aead } = this.#epochKey(this.#epoch());
    const nonce = getCryptoProvider().randomBytes(NONCE_LENGTH);
    return concat(name, nonce, aead.sealSync(nonce, state, name));
  }

  open(ticket: Uint8Array): Uint8Array | undefined {
    if (ticket.length < NAME_LENGTH + NONCE_LENGTH + 16) return undefined;
    const name = ticket.subarray(0, NAME_LENGTH);
    const epoch = this.#epoch();
    for (const e of [epoch, epoch - 1]) {
      const { name: keyName, aead } = this.#epochKey(e);
      if (!equalBytes(keyName, name)) continue;
      try {
        return aead.openSync(
          ticket.subarray(NAME_LENGTH, NAME_LENGTH + NONCE_LENGTH),
          ticket.subarray(NAME_LENGTH + NONCE_LENGTH),
          name,
        );
      } catch (err) {
        if (err instanceof AeadAuthError) return undefined;
        throw err;
      }
    }
    return undefined;
  }
}

function parseSecret(data: Uint8Array): Uint8Array | undefined {
  const text = new TextDecoder("utf-8", { fatal: false }).decode(data).trim();
  if (/^[0-9a-fA-F]+$/.test(text) && text.length % 2 === 0 && text.length >= 64) {
    return Uint8Array.from(text.match(/../g)!, (h) => parseInt(h, 16));
  }
  if (/^[A-Za-z0-9+/=_-]+$/.test(text)) {
    try {
      const bin = atob(text.replaceAll("-", "+").replaceAll("_", "/"));
      if (bin.length >= MIN_SECRET_LENGTH) return Uint8Array.from(bin, (c) => c.charCodeAt(0));
    } catch {
      // not base64: treat as raw bytes below
    }
  }
  return data.length >= MIN_SECRET_LENGTH ? data : undefined;
}

// ------------------------------------------------------------------ server session state

/** What the server needs to resume a session. */
export interface ServerSession {
  suite: number;
  psk: Uint8Array;
  createdMs: number;
  ageAdd: number;
  lifetimeSeconds: number;
  alpn?: string;
  /**
   * What the session's authentication was (resumption.ts `encodeAuthentication`): kept sealed
   * and opaque here, and read only once the PSK binder has verified.
   */
  authentication: Uint8Array;
}

const STATE_VERSION = 3;

export function encodeServerSession(s: ServerSession): Uint8Array {
  return new ByteWriter(512 + s.authentication.length)
    .u8(STATE_VERSION)
    .u16(s.suite)
    .opaque(1, s.psk)
    .u32(Math.floor(s.createdMs / 2 ** 32))
    .u32(s.createdMs % 2 ** 32)
    .u32(s.ageAdd)
    .u32(s.lifetimeSeconds)
    .opaque(1, encoder.encode(s.alpn ?? ""))
    .opaque(2, s.authentication)
    .finish();
}

/** Decodes sealed state; undefined for another version (an old ticket format). */
export function decodeServerSession(bytes: Uint8Array): ServerSession | undefined {
  try {
    const r = new ByteReader(bytes, "session state");
    if (r.u8() !== STATE_VERSION) return undefined;
    const suite = r.u16();
    const psk = r.vector(1).slice();
    const createdMs = r.u32() * 2 ** 32 + r.u32();
    const ageAdd = r.u32();
    const lifetimeSeconds = r.u32();
    const alpn = decoder.decode(r.vector(1));
    const authentication = r.vector(2).slice();
    r.end();
    return {
      suite,
      psk,
      createdMs,
      ageAdd,
      lifetimeSeconds,
      alpn: alpn || undefined,
      authentication,
    };
  } catch (e) {
    if (e instanceof TlsAlert) return undefined;
    throw e;
  }
}

/** How far the client's idea of a ticket's age may be from the server's (RFC 8446 §8.3). */
export const TICKET_AGE_TOLERANCE_MS = 10_000;

/**
 * Whether a ticket presented with `obfuscatedAge` is still good: within its lifetime and with
 * the client's reported age close to the server's own view.
 */
export function ticketAgeAcceptable(s: ServerSession, obfuscatedAge: number, nowMs: number) {
  const serverAge = nowMs - s.createdMs;
  if (serverAge < 0 || serverAge > s.lifetimeSeconds * 1000) return false;
  const clientAge = (obfuscatedAge - s.ageAdd) >>> 0;
  return Math.abs(clientAge - serverAge) <= TICKET_AGE_TOLERANCE_MS;
}

// ------------------------------------------------------------------ client cache

/** A ticket the client holds, and what it needs to resume with it. */
export interface ClientSession {
  ticket: Uint8Array;
  psk: Uint8Array;
  suite: number;
  ageAdd: number;
  receivedMs: number;
  lifetimeSeconds: number;
  alpn?: string;
  /** The server's chain as verified on the full handshake (DER, leaf first). */
  peerCertificates: Uint8Array[];
}

/** Where a client keeps tickets, keyed by server (name and port). Tickets are single-use. */
export interface ClientSessionCache {
  put(key: string, session: ClientSession): void;
  /** Removes and returns the newest unexpired ticket for `key`. */
  take(key: string): ClientSession | undefined;
}

/** How many servers and tickets a MemorySessionCache keeps. */
export interface MemorySessionCacheOptions {
  /** Servers with tickets kept (default 256); the least recently given a ticket go first. */
  maxServers?: number;
  /**
   * Tickets kept per server (default 4), the oldest going first. One is enough for one
   * connection at a time; C connections at once to one server want C or more.
   */
  ticketsPerServer?: number;
}

/** Upper bound of both MemorySessionCache limits. */
export const MEMORY_SESSION_CACHE_LIMIT = 65_536;

/** Whether a ticket received at `receivedMs` is still within its lifetime at `nowMs`. */
export function ticketUsable(session: ClientSession, nowMs: number): boolean {
  return nowMs - session.receivedMs < session.lifetimeSeconds * 1000;
}

/** An in-memory cache: a few tickets per server, newest taken first. */
export class MemorySessionCache implements ClientSessionCache {
  readonly #map = new Map<string, ClientSession[]>();
  readonly maxServers: number;
  readonly ticketsPerServer: number;

  /** Throws RangeError for a limit that is not an integer from 1 to MEMORY_SESSION_CACHE_LIMIT. */
  constructor(options: MemorySessionCacheOptions = {}) {
    this.maxServers = checkLimit("maxServers", options.maxServers ?? 256);
    this.ticketsPerServer = checkLimit("ticketsPerServer", options.ticketsPerServer ?? 4);
  }

  put(key: string, session: ClientSession): void {
    const list = this.#map.get(key) ?? [];
    this.#map.delete(key);
    list.push(session);
    if (list.length > this.ticketsPerServer) list.shift();
    this.#map.set(key, list);
    if (this.#map.size > this.maxServers) this.#map.delete(this.#map.keys().next().value!);
  }

  take(key: string): ClientSession | undefined {
    const list = this.#map.get(key);
    const now = Date.now();
    while (list?.length) {
      const s = list.pop()!;
      if (ticketUsable(s, now)) return s;
    }
    return undefined;
  }

  /** Tickets held, every server together (expired ones until a `take` passes them). */
  get size(): number {
    let total = 0;
    for (const list of this.#map.values()) total += list.length;
    return total;
  }
}

function checkLimit(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1 || value > MEMORY_SESSION_CACHE_LIMIT) {
    throw new RangeError(
      `MemorySessionCache ${name} must be an integer from 1 to ${MEMORY_SESSION_CACHE_LIMIT}, ` +
        `got ${value}`,
    );
  }
  return value;
}
