/**
 * The conformance peer's own wire layer: TLS 1.3 records, handshake framing and the structures
 * it sends, written here from RFC 8446 rather than taken from the engine, so that a bug in the
 * engine's codec cannot hide in both ends. Only the math (AEAD, HKDF, key shares, signatures)
 * comes from the project's crypto provider and key-schedule helpers.
 */
import { getCryptoProvider } from "../../src/crypto/index.ts";
import type { Aead } from "../../src/crypto/provider.ts";
import type { CipherSuite } from "../../src/tls/cipher_suites.ts";
import { trafficKeys } from "../../src/tls/key_schedule.ts";

// ------------------------------------------------------------------ code points (RFC 8446 §B)

export const CT = { ccs: 20, alert: 21, handshake: 22, data: 23 } as const;
export const HS = {
  client_hello: 1,
  server_hello: 2,
  new_session_ticket: 4,
  end_of_early_data: 5,
  encrypted_extensions: 8,
  certificate: 11,
  certificate_request: 13,
  certificate_verify: 15,
  finished: 20,
  key_update: 24,
  message_hash: 254,
} as const;
export const EXT = {
  server_name: 0,
  max_fragment_length: 1,
  status_request: 5,
  supported_groups: 10,
  signature_algorithms: 13,
  use_srtp: 14,
  heartbeat: 15,
  alpn: 16,
  sct: 18,
  client_certificate_type: 19,
  server_certificate_type: 20,
  padding: 21,
  record_size_limit: 28,
  pre_shared_key: 41,
  early_data: 42,
  supported_versions: 43,
  cookie: 44,
  psk_key_exchange_modes: 45,
  certificate_authorities: 47,
  oid_filters: 48,
  post_handshake_auth: 49,
  signature_algorithms_cert: 50,
  key_share: 51,
} as const;

/** Alert descriptions (RFC 8446 §6), by name; what a case expects. */
export const ALERT = {
  close_notify: 0,
  unexpected_message: 10,
  bad_record_mac: 20,
  record_overflow: 22,
  handshake_failure: 40,
  bad_certificate: 42,
  certificate_unknown: 46,
  illegal_parameter: 47,
  unknown_ca: 48,
  decode_error: 50,
  decrypt_error: 51,
  protocol_version: 70,
  insufficient_security: 71,
  internal_error: 80,
  user_canceled: 90,
  missing_extension: 109,
  unsupported_extension: 110,
  unrecognized_name: 112,
  certificate_required: 116,
  no_application_protocol: 120,
} as const;
export type AlertName = keyof typeof ALERT;

export function alertNameOf(code: number): string {
  return Object.entries(ALERT).find(([, c]) => c === code)?.[0] ?? `alert_${code}`;
}

export const HRR_RANDOM = Uint8Array.from(
  "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c".match(/../g)!,
  (h) => parseInt(h, 16),
);

// ------------------------------------------------------------------ encoding

/** Big-endian fields and length-prefixed vectors. */
export class Out {
  readonly #bytes: number[] = [];

  u8(v: number): this {
    this.#bytes.push(v & 0xff);
    return this;
  }
  u16(v: number): this {
    return this.u8(v >> 8).u8(v);
  }
  u24(v: number): this {
    return this.u8(v >> 16).u8(v >> 8).u8(v);
  }
  u32(v: number): this {
    return this.u16(Math.floor(v / 0x10000)).u16(v % 0x10000);
  }
  raw(data: Uint8Array | number[]): this {
    for (const b of data) this.#bytes.push(b);
    return this;
  }
  /** A vector: `n`-byte length, then what `body` writes. */
  vec(n: 1 | 2 | 3, body: (o: Out) => void): this {
    const inner = new Out();
    body(inner);
    const bytes = inner.done();
    if (n === 1) this.u8(bytes.length);
    else if (n === 2) this.u16(bytes.length);
    else this.u24(bytes.length);
    return this.raw(bytes);
  }
  done(): Uint8Array {
    return Uint8Array.from(this.#bytes);
  }
}

export function out(body: (o: Out) => void): Uint8Array {
  const o = new Out();
  body(o);
  return o.done();
}

export interface Ext {
  type: number;
  data: Uint8Array;
}

export const ext = (type: number, data: Uint8Array | number[] = []): Ext => ({
  type,
  data: Uint8Array.from(data),
});

export function extensionsBlock(list: readonly Ext[]): Uint8Array {
  return out((o) =>
    o.vec(2, (v) => list.forEach((e) => v.u16(e.type).vec(2, (d) => d.raw(e.data))))
  );
}

export const u16List = (values: number[], prefix: 1 | 2 = 2) =>
  out((o) => o.vec(prefix, (v) => values.forEach((x) => v.u16(x))));
export const u16 = (value: number) => out((o) => o.u16(value));

/** A handshake message: type, u24 length, body (`length` overrides the length field). */
export function handshake(type: number, body: Uint8Array, length = body.length): Uint8Array {
  return out((o) => o.u8(type).u24(length).raw(body));
}

/** A record: type, legacy_record_version, u16 length, fragment. */
export function record(
  type: number,
  fragment: Uint8Array,
  version = 0x0303,
  length = fragment.length,
): Uint8Array {
  return out((o) => o.u8(type).u16(version).u16(length).raw(fragment));
}

export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return all;
}

// ------------------------------------------------------------------ decoding

/** Reads fields; throws on truncation (the peer under test sent garbage: a test failure). */
export class In {
  at = 0;
  constructor(readonly bytes: Uint8Array) {}
  get left(): number {
    return this.bytes.length - this.at;
  }
  take(n: number): Uint8Array {
    if (this.left < n) throw new Error("truncated structure from the peer under test");
    return this.bytes.subarray(this.at, this.at += n);
  }
  u8(): number {
    return this.take(1)[0];
  }
  u16(): number {
    const b = this.take(2);
    return (b[0] << 8) | b[1];
  }
  u24(): number {
    const b = this.take(3);
    return (b[0] << 16) | (b[1] << 8) | b[2];
  }
  u32(): number {
    return this.u16() * 0x10000 + this.u16();
  }
  vec(n: 1 | 2 | 3): Uint8Array {
    return this.take(n === 1 ? this.u8() : n === 2 ? this.u16() : this.u24());
  }
}

export function readExtensionsBlock(r: In): Ext[] {
  const list = new In(r.vec(2));
  const exts: Ext[] = [];
  while (list.left) exts.push({ type: list.u16(), data: list.vec(2) });
  return exts;
}

export const findExt = (list: readonly Ext[], type: number) => list.find((e) => e.type === type);

export interface Hello {
  legacyVersion: number;
  random: Uint8Array;
  sessionId: Uint8Array;
  suites: number[];
  suite: number;
  extensions: Ext[];
}

export function parseClientHello(body: Uint8Array): Hello {
  const r = new In(body);
  const legacyVersion = r.u16();
  const random = r.take(32);
  const sessionId = r.vec(1);
  const suitesIn = new In(r.vec(2));
  const suites: number[] = [];
  while (suitesIn.left) suites.push(suitesIn.u16());
  r.vec(1);
  return { legacyVersion, random, sessionId, suites, suite: 0, extensions: readExtensionsBlock(r) };
}

export function parseServerHello(body: Uint8Array): Hello & { retry: boolean } {
  const r = new In(body);
  const legacyVersion = r.u16();
  const random = r.take(32);
  const sessionId = r.vec(1);
  const suite = r.u16();
  r.u8();
  const extensions = readExtensionsBlock(r);
  const retry = random.every((b, i) => b === HRR_RANDOM[i]);
  return { legacyVersion, random, sessionId, suites: [suite], suite, extensions, retry };
}

// ------------------------------------------------------------------ records over a socket

/** One direction's AEAD state. */
class Protection {
  seq = 0;
  constructor(readonly aead: Aead, readonly iv: Uint8Array) {}

  static async of(suite: CipherSuite, secret: Uint8Array): Promise<Protection> {
    const { key, iv } = await trafficKeys(suite, secret);
    return new Protection(await getCryptoProvider().aead(suite.aead, key), iv);
  }

  nonce(): Uint8Array {
    const n = this.iv.slice();
    let seq = this.seq++;
    for (let i = 11; i >= 4 && seq > 0; i--, seq = Math.floor(seq / 256)) n[i] ^= seq % 256;
    return n;
  }
}

/** What the peer under test sent next, as the conformance peer sees it. */
export type Received =
  | { kind: "handshake"; type: number; body: Uint8Array; raw: Uint8Array }
  | { kind: "alert"; level: number; alert: string; protected: boolean }
  | { kind: "data"; data: Uint8Array }
  | { kind: "ccs"; body: Uint8Array }
  | { kind: "eof" };

/** How long the peer under test has to answer before a case fails as hung. */
export const ANSWER_TIMEOUT_MS = 15_000;

/**
 * Records over one TCP connection: writes plaintext or protected records exactly as asked
 * (wrong versions, lengths, padding, inner types included), reads and unprotects the peer's,
 * and reassembles its handshake messages.
 */
export class RecordConn {
  #buf: Uint8Array = new Uint8Array(0);
  #read?: Protection;
  #nextRead?: Protection;
  #write?: Protection;
  #handshake: Uint8Array = new Uint8Array(0);
  readonly #decoded: Received[] = [];
  #eof = false;
  /** Handshake messages decoded so far, and after how many of them each CCS came. */
  handshakeCount = 0;
  readonly ccsAfter: number[] = [];
  /**
   * Set when the peer is to refuse our ServerHello itself: it then never had keys, and its
   * alert is rightly plaintext.
   */
  plaintextAlertExpected = false;
  /** The longest protected record read (for record size limits). */
  largestProtected = 0;
  /** The first alert the peer sent, once read. */
  alertSeen?: { alert: string; protected: boolean };

  constructor(readonly conn: Deno.Conn) {}

  get readProtected(): boolean {
    return this.#read !== undefined;
  }

  async setReadKeys(suite: CipherSuite, secret: Uint8Array): Promise<void> {
    this.#read = await Protection.of(suite, secret);
    this.#nextRead = undefined;
  }

  /**
   * The keys the peer switches to next (its application keys after its Finished): a record
   * that does not open under the current keys is tried under these, since a case may stop
   * following the handshake at any point while the peer goes on.
   */
  async expectReadKeys(suite: CipherSuite, secret: Uint8Array): Promise<void> {
    this.#nextRead = await Protection.of(suite, secret);
  }

  async #open(body: Uint8Array, header: Uint8Array): Promise<Uint8Array> {
    const read = this.#read!;
    const seq = read.seq;
    try {
      return await read.aead.open(read.nonce(), body, header);
    } catch (e) {
      if (!this.#nextRead) throw e;
      read.seq = seq;
      const next = this.#nextRead;
      const opened = await next.aead.open(next.nonce(), body, header);
      this.#read = next;
      this.#nextRead = undefined;
      return opened;
    }
  }

  async setWriteKeys(suite: CipherSuite, secret: Uint8Array): Promise<void> {
    this.#write = await Protection.of(suite, secret);
  }

  /** Raw bytes on the wire; false if the peer already closed. */
  async writeRaw(bytes: Uint8Array): Promise<boolean> {
    try {
      for (let at = 0; at < bytes.length;) at += await this.conn.write(bytes.subarray(at));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * One record of `type` with `fragment`: protected when write keys are set (inner type
   * `innerType`, `padding` zero bytes), plaintext otherwise.
   */
  async send(
    type: number,
    fragment: Uint8Array,
    options: { padding?: number; innerType?: number; version?: number; plain?: boolean } = {},
  ): Promise<boolean> {
    return await this.writeRaw(await this.encode(type, fragment, options));
  }

  async encode(
    type: number,
    fragment: Uint8Array,
    options: { padding?: number; innerType?: number; version?: number; plain?: boolean } = {},
  ): Promise<Uint8Array> {
    const w = this.#write;
    if (!w || options.plain) return record(type, fragment, options.version);
    const inner = concatBytes(
      fragment,
      options.innerType === undefined ? Uint8Array.of(type) : Uint8Array.of(options.innerType),
      new Uint8Array(options.padding ?? 0),
    );
    const length = inner.length + w.aead.tagLength;
    const header = record(CT.data, new Uint8Array(0), options.version, length);
    const sealed = await w.aead.seal(w.nonce(), inner, header);
    return concatBytes(header, sealed);
  }

  /** Handshake messages, split into records of at most `fragment` bytes. */
  async sendHandshake(messages: Uint8Array, fragment = 16384): Promise<boolean> {
    const parts: Uint8Array[] = [];
    for (let at = 0; at < messages.length; at += fragment) {
      parts.push(await this.encode(CT.handshake, messages.subarray(at, at + fragment)));
    }
    return await this.writeRaw(concatBytes(...parts));
  }

  async #fill(n: number, deadline: number): Promise<boolean> {
    while (this.#buf.length < n) {
      if (this.#eof) return false;
      const chunk = new Uint8Array(65536);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("the peer under test did not answer in time");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const got = await Promise.race([
        this.conn.read(chunk).catch(() => null),
        new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), left)),
      ]).finally(() => clearTimeout(timer));
      if (got === "timeout") throw new Error("the peer under test did not answer in time");
      if (got === null) {
        this.#eof = true;
        return false;
      }
      this.#buf = concatBytes(this.#buf, chunk.subarray(0, got));
    }
    return true;
  }

  /** The next thing the peer sent. */
  async next(timeoutMs = ANSWER_TIMEOUT_MS): Promise<Received> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const decoded = this.#decoded.shift();
      if (decoded) return decoded;
      if (!await this.#fill(5, deadline)) return { kind: "eof" };
      const length = (this.#buf[3] << 8) | this.#buf[4];
      if (!await this.#fill(5 + length, deadline)) return { kind: "eof" };
      const header = this.#buf.slice(0, 5);
      const body = this.#buf.slice(5, 5 + length);
      this.#buf = this.#buf.slice(5 + length);
      let type = header[0];
      let data: Uint8Array = body;
      let isProtected = false;
      if (type === CT.data && this.#read) {
        this.largestProtected = Math.max(this.largestProtected, length);
        const opened = await this.#open(body, header);
        let end = opened.length - 1;
        while (end >= 0 && opened[end] === 0) end--;
        type = opened[end];
        data = opened.subarray(0, end);
        isProtected = true;
      }
      if (type === CT.ccs) {
        this.ccsAfter.push(this.handshakeCount);
        return { kind: "ccs", body: data };
      }
      if (type === CT.alert) {
        const alert = alertNameOf(data[1]);
        this.alertSeen ??= { alert, protected: isProtected };
        return { kind: "alert", level: data[0], alert, protected: isProtected };
      }
      if (type === CT.data) return { kind: "data", data };
      this.#handshake = concatBytes(this.#handshake, data);
      while (this.#handshake.length >= 4) {
        const len = (this.#handshake[1] << 16) | (this.#handshake[2] << 8) | this.#handshake[3];
        if (this.#handshake.length < 4 + len) break;
        const raw = this.#handshake.slice(0, 4 + len);
        this.#handshake = this.#handshake.slice(4 + len);
        this.handshakeCount++;
        this.#decoded.push({ kind: "handshake", type: raw[0], body: raw.subarray(4), raw });
      }
    }
  }

  /** The next handshake message (dropping change_cipher_spec); throws on anything else. */
  async handshakeMessage(
    type?: number,
  ): Promise<{ type: number; body: Uint8Array; raw: Uint8Array }> {
    for (;;) {
      const r = await this.next();
      if (r.kind === "ccs") continue;
      if (r.kind !== "handshake") {
        throw new Error(`expected a handshake message, got ${JSON.stringify(describe(r))}`);
      }
      if (type !== undefined && r.type !== type) {
        throw new Error(`expected handshake message ${type}, got ${r.type}`);
      }
      return r;
    }
  }

  /**
   * How the peer under test ended: its first alert (`close_notify` included), `closed` for an
   * end of stream without one, or a note that an alert after the handshake keys came in
   * plaintext (RFC 8446 §5: alerts are protected once keys are in use).
   */
  async ending(): Promise<string> {
    while (!this.alertSeen) {
      let r: Received;
      try {
        r = await this.next();
      } catch (e) {
        // A reset after the alert, or a record we can no longer decrypt, ends the wait.
        if (String(e).includes("did not answer")) throw e;
        break;
      }
      if (r.kind === "eof") break;
    }
    if (!this.alertSeen) return "closed";
    const { alert } = this.alertSeen;
    return this.readProtected && !this.alertSeen.protected && !this.plaintextAlertExpected
      ? `${alert} in plaintext after ServerHello`
      : alert;
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }
}

export function describe(r: Received): unknown {
  if (r.kind === "handshake") return { kind: r.kind, type: r.type };
  if (r.kind === "data") return { kind: r.kind, length: r.data.length };
  return r;
}
