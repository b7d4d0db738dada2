/**
 * Both ends of a TLS 1.3 handshake as the conformance peer runs them, step by step, so a case
 * can send anything at any point: `ClientFlow` drives `qsign serve`, `ServerFlow` plays a
 * malicious server for `qsign connect`. The sequencing and every message are built here; the
 * key schedule and key shares come from the project's helpers (the math, not the protocol).
 */
import { getCryptoProvider } from "../../src/crypto/index.ts";
import { type CipherSuite, suiteById } from "../../src/tls/cipher_suites.ts";
import type { CertifiedKey } from "../../src/tls/config.ts";
import { type ClientKeyShare, GROUPS } from "../../src/tls/groups.ts";
import {
  finishedMac,
  KeySchedule,
  nextTrafficSecret as nextSecret,
  resumptionPsk,
} from "../../src/tls/key_schedule.ts";
import {
  concatBytes,
  CT,
  EXT,
  type Ext,
  ext,
  extensionsBlock,
  findExt,
  handshake,
  type Hello,
  HRR_RANDOM,
  HS,
  In,
  out,
  parseClientHello,
  parseServerHello,
  readExtensionsBlock,
  RecordConn,
  u16,
  u16List,
} from "./wire.ts";

export const SUITES = { aes256: 0x1302, aes128: 0x1301, chacha: 0x1303 } as const;
export const GROUP = {
  p384mlkem1024: 0x11ed,
  x25519mlkem768: 0x11ec,
  p256mlkem768: 0x11eb,
  mlkem1024: 0x0202,
  mlkem768: 0x0201,
  x25519: 0x001d,
} as const;
export const SCHEME = {
  mldsa65: 0x0905,
  mldsa87: 0x0906,
  mldsa44: 0x0904,
  ecdsa_p384: 0x0503,
  ecdsa_p256: 0x0403,
  rsa_pss_256: 0x0804,
  rsa_pkcs1_256: 0x0401,
  ed25519: 0x0807,
} as const;

const groupById = (id: number) => {
  const group = GROUPS.find((g) => g.id === id);
  if (!group) throw new Error(`the conformance peer has no group ${id}`);
  return group;
};

/** A running transcript hash (RFC 8446 §4.4.1) kept as the messages themselves. */
export class Transcript {
  messages: Uint8Array[] = [];
  add(...raw: Uint8Array[]): void {
    this.messages.push(...raw);
  }
  hash(suite: CipherSuite, extra?: Uint8Array): Uint8Array {
    const h = getCryptoProvider().createHash(suite.hash);
    for (const m of this.messages) h.update(m);
    if (extra) h.update(extra);
    return h.digest();
  }
  /** After a HelloRetryRequest: ClientHello1 becomes message_hash(Hash(ClientHello1)). */
  restartAfterRetry(suite: CipherSuite): void {
    const digest = this.hash(suite);
    this.messages = [handshake(HS.message_hash, digest)];
  }
}

/** The CertificateVerify input (RFC 8446 §4.4.3). */
export function certificateVerifyContent(who: "server" | "client", hash: Uint8Array): Uint8Array {
  const context = new TextEncoder().encode(`TLS 1.3, ${who} CertificateVerify\0`);
  return concatBytes(new Uint8Array(64).fill(0x20), context, hash);
}

export const certificateMessage = (
  chain: Uint8Array[],
  options: { context?: Uint8Array; entryExtensions?: Ext[] } = {},
) =>
  handshake(
    HS.certificate,
    out((o) =>
      o.vec(1, (c) => c.raw(options.context ?? [])).vec(3, (l) => {
        chain.forEach((cert, i) =>
          l.vec(3, (c) => c.raw(cert)).raw(
            extensionsBlock(i === 0 ? options.entryExtensions ?? [] : []),
          )
        );
      })
    ),
  );

export const certificateVerifyMessage = (scheme: number, signature: Uint8Array) =>
  handshake(HS.certificate_verify, out((o) => o.u16(scheme).vec(2, (s) => s.raw(signature))));

export const keyShareClient = (entries: { group: number; key: Uint8Array }[]) =>
  out((o) => o.vec(2, (l) => entries.forEach((e) => l.u16(e.group).vec(2, (k) => k.raw(e.key)))));

/** A ticket the conformance client received, with the PSK it stands for. */
export interface Ticket {
  ticket: Uint8Array;
  psk: Uint8Array;
  ageAdd: number;
  receivedMs: number;
  suite: CipherSuite;
}

/** A ClientHello as parts a case may change before it is encoded. */
export interface ClientHelloSpec {
  legacyVersion: number;
  random: Uint8Array;
  sessionId: Uint8Array;
  suites: number[];
  compression: number[];
  extensions: Ext[];
  /** Bytes after the extensions block. */
  trailing?: Uint8Array;
}

export function encodeClientHello(spec: ClientHelloSpec): Uint8Array {
  return handshake(
    HS.client_hello,
    concatBytes(
      out((o) =>
        o.u16(spec.legacyVersion).raw(spec.random).vec(1, (v) => v.raw(spec.sessionId))
          .vec(2, (v) => spec.suites.forEach((s) => v.u16(s)))
          .vec(1, (v) => v.raw(spec.compression))
      ),
      extensionsBlock(spec.extensions),
      spec.trailing ?? new Uint8Array(0),
    ),
  );
}

/** Options of the default ClientHello. */
export interface HelloOptions {
  /** The group whose share is sent (default SecP384r1MLKEM1024: the server's first choice). */
  share?: number | null;
  groups?: number[];
  schemes?: number[];
  sessionId?: Uint8Array;
  psk?: Ticket;
  serverName?: string | null;
}

/** The raw client against `qsign serve`. */
export class ClientFlow {
  readonly transcript = new Transcript();
  share?: ClientKeyShare;
  suite?: CipherSuite;
  hello?: ClientHelloSpec;
  serverHello?: Hello & { retry: boolean };
  /** change_cipher_spec records read, and where: after which handshake message count. */
  readonly ccsSeenAfter: number[] = [];
  handshakeSecrets?: { client: Uint8Array; server: Uint8Array };
  appSecrets?: { client: Uint8Array; server: Uint8Array };
  schedule?: KeySchedule;
  resumed = false;
  certificateRequested = false;
  /** Handshake messages read from the server, in order (types). */
  readonly received: number[] = [];
  /** Tickets received, and KeyUpdates the server sent. */
  tickets: Ticket[] = [];
  keyUpdatesReceived = 0;

  private constructor(readonly rc: RecordConn, readonly client: CertifiedKey) {}

  static async open(port: number, client: CertifiedKey): Promise<ClientFlow> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    return new ClientFlow(new RecordConn(conn), client);
  }

  /** A ClientHello qsign accepts as it is (a share for the server's first group). */
  async defaultHello(options: HelloOptions = {}): Promise<ClientHelloSpec> {
    const shareGroup = options.share === undefined ? GROUP.p384mlkem1024 : options.share;
    const groups = options.groups ?? [GROUP.p384mlkem1024, GROUP.x25519mlkem768];
    const shares: { group: number; key: Uint8Array }[] = [];
    if (shareGroup !== null) {
      this.share = await groupById(shareGroup).generateShare();
      shares.push({ group: shareGroup, key: this.share.share });
    }
    const extensions: Ext[] = [
      ext(EXT.supported_versions, u16List([0x0304], 1)),
      ext(EXT.supported_groups, u16List(groups)),
      ext(EXT.key_share, keyShareClient(shares)),
      ext(
        EXT.signature_algorithms,
        u16List(options.schemes ?? [SCHEME.mldsa65, SCHEME.ecdsa_p384]),
      ),
    ];
    if (options.serverName !== null) {
      const name = new TextEncoder().encode(options.serverName ?? "localhost");
      extensions.push(
        ext(EXT.server_name, out((o) => o.vec(2, (l) => l.u8(0).vec(2, (n) => n.raw(name))))),
      );
    }
    extensions.push(ext(EXT.psk_key_exchange_modes, [1, 1]));
    if (options.psk) extensions.push(this.#pskExtension(options.psk));
    this.hello = {
      legacyVersion: 0x0303,
      random: getCryptoProvider().randomBytes(32),
      sessionId: options.sessionId ?? getCryptoProvider().randomBytes(32),
      suites: [SUITES.aes256, SUITES.aes128, SUITES.chacha],
      compression: [0],
      extensions,
    };
    return this.hello;
  }

  #pskExtension(ticket: Ticket, binder?: Uint8Array): Ext {
    const age = (Date.now() - ticket.receivedMs + ticket.ageAdd) >>> 0;
    return ext(
      EXT.pre_shared_key,
      out((o) =>
        o.vec(2, (ids) => ids.vec(2, (t) => t.raw(ticket.ticket)).u32(age))
          .vec(2, (b) => b.vec(1, (x) => x.raw(binder ?? new Uint8Array(ticket.suite.hashLength))))
      ),
    );
  }

  /**
   * The ClientHello of `spec`, with the PSK binder of `ticket` computed over it (RFC 8446
   * §4.2.11.2) unless `badBinder`.
   */
  async helloBytes(spec: ClientHelloSpec, ticket?: Ticket, badBinder = false): Promise<Uint8Array> {
    const bytes = encodeClientHello(spec);
    if (!ticket) return bytes;
    const bindersLength = 2 + 1 + ticket.suite.hashLength;
    const truncated = bytes.subarray(0, bytes.length - bindersLength);
    const binderKey = await (await KeySchedule.start(ticket.suite, ticket.psk)).binderKey();
    const binder = await finishedMac(
      ticket.suite,
      binderKey,
      this.transcript.hash(ticket.suite, truncated),
    );
    if (badBinder) binder[0] ^= 1;
    bytes.set(binder, bytes.length - ticket.suite.hashLength);
    return bytes;
  }

  /** Sends a ClientHello (in records of `fragment` bytes) and adds it to the transcript. */
  async sendHello(
    spec: ClientHelloSpec,
    options: { fragment?: number; ticket?: Ticket; badBinder?: boolean } = {},
  ): Promise<Uint8Array> {
    const bytes = await this.helloBytes(spec, options.ticket, options.badBinder);
    this.transcript.add(bytes);
    await this.rc.sendHandshake(bytes, options.fragment);
    return bytes;
  }

  /** Reads ServerHello or HelloRetryRequest, noting change_cipher_spec records around it. */
  async readServerHello(): Promise<Hello & { retry: boolean }> {
    for (;;) {
      const r = await this.rc.next();
      if (r.kind === "ccs") {
        this.ccsSeenAfter.push(this.received.length);
        continue;
      }
      if (r.kind !== "handshake" || r.type !== HS.server_hello) {
        throw new Error(
          `expected ServerHello, got ${JSON.stringify(r.kind === "alert" ? r : r.kind)}`,
        );
      }
      this.received.push(r.type);
      const sh = parseServerHello(r.body);
      const suite = suiteById(sh.suite);
      if (!suite) throw new Error(`server chose suite ${sh.suite}`);
      this.suite = suite;
      if (sh.retry) {
        this.transcript.restartAfterRetry(suite);
        this.transcript.add(r.raw);
      } else {
        this.transcript.add(r.raw);
      }
      this.serverHello = sh;
      return sh;
    }
  }

  /**
   * The second ClientHello for a HelloRetryRequest: the first with the requested share and the
   * cookie (RFC 8446 §4.1.2), before `change` lets a case break it.
   */
  async retryHello(
    hrr: Hello,
    change?: (spec: ClientHelloSpec) => void | Promise<void>,
  ): Promise<ClientHelloSpec> {
    const spec = structuredClone(this.hello!);
    const wanted = findExt(hrr.extensions, EXT.key_share);
    if (wanted) {
      const group = new In(wanted.data).u16();
      this.share = await groupById(group).generateShare();
      spec.extensions = spec.extensions.map((e) =>
        e.type === EXT.key_share
          ? ext(EXT.key_share, keyShareClient([{ group, key: this.share!.share }]))
          : e
      );
    }
    const cookie = findExt(hrr.extensions, EXT.cookie);
    spec.extensions = spec.extensions.filter((e) => e.type !== EXT.early_data);
    if (cookie) {
      const at = spec.extensions.findIndex((e) => e.type === EXT.pre_shared_key);
      spec.extensions.splice(at < 0 ? spec.extensions.length : at, 0, ext(EXT.cookie, cookie.data));
    }
    await change?.(spec);
    this.hello = spec;
    return spec;
  }

  /** The handshake secrets from the ServerHello; read keys switch to the server's. */
  async handshakeKeys(psk?: Uint8Array): Promise<void> {
    const sh = this.serverHello!;
    const keyShare = findExt(sh.extensions, EXT.key_share)!;
    const r = new In(keyShare.data);
    r.u16();
    const secret = await this.share!.complete(r.vec(2));
    this.resumed = findExt(sh.extensions, EXT.pre_shared_key) !== undefined;
    this.schedule = await KeySchedule.start(this.suite!, this.resumed ? psk : undefined);
    await this.schedule.enterHandshake(secret);
    this.handshakeSecrets = await this.schedule.trafficSecrets(
      "hs",
      this.transcript.hash(this.suite!),
    );
    await this.rc.setReadKeys(this.suite!, this.handshakeSecrets.server);
  }

  /** Reads EncryptedExtensions … Finished, checks the server's Finished, derives the app secrets. */
  async readServerFlight(): Promise<Ext[]> {
    const suite = this.suite!;
    let ee: Ext[] = [];
    for (;;) {
      const m = await this.rc.handshakeMessage();
      this.received.push(m.type);
      if (m.type === HS.finished) {
        const expected = await finishedMac(
          suite,
          this.handshakeSecrets!.server,
          this.transcript.hash(suite),
        );
        if (expected.some((b, i) => b !== m.body[i])) throw new Error("server Finished is wrong");
        this.transcript.add(m.raw);
        break;
      }
      if (m.type === HS.encrypted_extensions) ee = readExtensionsBlock(new In(m.body));
      if (m.type === HS.certificate_request) this.certificateRequested = true;
      this.transcript.add(m.raw);
    }
    await this.schedule!.enterMaster();
    this.appSecrets = await this.schedule!.trafficSecrets("ap", this.transcript.hash(suite));
    await this.rc.expectReadKeys(suite, this.appSecrets.server);
    return ee;
  }

  /**
   * Our Certificate (the `chain`, default ours), CertificateVerify (signed with `scheme`, or the
   * `signature` given) and Finished, as bytes, each added to the transcript; `finished`
   * replaces the verify_data.
   */
  async clientFlightMessages(options: {
    chain?: Uint8Array[];
    certificate?: Uint8Array;
    scheme?: number;
    signature?: (real: Uint8Array) => Uint8Array;
    skipVerify?: boolean;
    finished?: (real: Uint8Array) => Uint8Array;
  } = {}): Promise<Uint8Array[]> {
    const suite = this.suite!;
    const messages: Uint8Array[] = [];
    if (this.certificateRequested) {
      const chain = options.chain ?? this.client.chain;
      const cert = options.certificate ?? certificateMessage(chain);
      messages.push(cert);
      this.transcript.add(cert);
      if (chain.length && !options.skipVerify) {
        const scheme = options.scheme ?? SCHEME.mldsa65;
        const content = certificateVerifyContent("client", this.transcript.hash(suite));
        let signature = await this.client.signer.sign(SCHEME.mldsa65, content);
        if (options.signature) signature = options.signature(signature);
        const cv = certificateVerifyMessage(scheme, signature);
        messages.push(cv);
        this.transcript.add(cv);
      }
    }
    let verify = await finishedMac(
      suite,
      this.handshakeSecrets!.client,
      this.transcript.hash(suite),
    );
    if (options.finished) verify = options.finished(verify);
    const fin = handshake(HS.finished, verify);
    messages.push(fin);
    this.transcript.add(fin);
    return messages;
  }

  /** Switches write protection to our handshake keys (after an optional compatibility CCS). */
  async protectWrites(ccs = true): Promise<void> {
    if (ccs) await this.rc.send(CT.ccs, Uint8Array.of(1));
    await this.rc.setWriteKeys(this.suite!, this.handshakeSecrets!.client);
  }

  /** Sends our flight and switches both directions to application keys. */
  async sendClientFlight(messages: Uint8Array[], fragment?: number): Promise<void> {
    await this.rc.sendHandshake(concatBytes(...messages), fragment);
    await this.enterApplicationKeys();
  }

  async enterApplicationKeys(): Promise<void> {
    await this.rc.setWriteKeys(this.suite!, this.appSecrets!.client);
    await this.rc.setReadKeys(this.suite!, this.appSecrets!.server);
  }

  /** A complete handshake from `spec` (default hello), HRR included. */
  async handshake(options: HelloOptions & { ticket?: Ticket } = {}): Promise<void> {
    const spec = this.hello ?? await this.defaultHello({ ...options, psk: options.ticket });
    await this.sendHello(spec, { ticket: options.ticket });
    let sh = await this.readServerHello();
    if (sh.retry) {
      const spec2 = await this.retryHello(sh);
      if (options.ticket) {
        spec2.extensions = spec2.extensions.map((e) =>
          e.type === EXT.pre_shared_key ? this.#pskExtension(options.ticket!) : e
        );
      }
      await this.sendHello(spec2, { ticket: options.ticket });
      sh = await this.readServerHello();
    }
    await this.handshakeKeys(options.ticket?.psk);
    await this.readServerFlight();
    await this.protectWrites();
    await this.sendClientFlight(await this.clientFlightMessages());
  }

  /** Sends `text` as application data and waits for the echo service's answer. */
  async exchange(text = "ping"): Promise<boolean> {
    await this.rc.send(CT.data, new TextEncoder().encode(text));
    for (;;) {
      const r = await this.rc.next();
      if (r.kind === "data") return true;
      if (r.kind === "handshake" && r.type === HS.new_session_ticket) {
        await this.#storeTicket(r.body);
        continue;
      }
      if (r.kind === "handshake" && r.type === HS.key_update) {
        this.appSecrets!.server = await nextSecret(this.suite!, this.appSecrets!.server);
        await this.rc.setReadKeys(this.suite!, this.appSecrets!.server);
        this.keyUpdatesReceived++;
        continue;
      }
      throw new Error(
        `expected application data, got ${JSON.stringify(r.kind === "alert" ? r : r.kind)}`,
      );
    }
  }

  async #storeTicket(body: Uint8Array): Promise<void> {
    const r = new In(body);
    const lifetime = r.u32();
    const ageAdd = r.u32();
    const nonce = r.vec(1);
    const ticket = r.vec(2);
    readExtensionsBlock(r);
    if (r.left) throw new Error("NewSessionTicket has trailing bytes");
    if (lifetime > 604800) throw new Error(`ticket lifetime ${lifetime} over 7 days`);
    const rms = await this.schedule!.resumptionMasterSecret(this.transcript.hash(this.suite!));
    this.tickets.push({
      ticket: ticket.slice(),
      psk: await resumptionPsk(this.suite!, rms, nonce),
      ageAdd,
      receivedMs: Date.now(),
      suite: this.suite!,
    });
  }

  /** Sends a KeyUpdate and switches our write key. */
  async keyUpdate(requested: boolean): Promise<void> {
    await this.rc.send(CT.handshake, handshake(HS.key_update, Uint8Array.of(requested ? 1 : 0)));
    this.appSecrets!.client = await nextSecret(this.suite!, this.appSecrets!.client);
    await this.rc.setWriteKeys(this.suite!, this.appSecrets!.client);
  }

  close(): void {
    this.rc.close();
  }
}

// ------------------------------------------------------------------ the malicious server

/** A ServerHello as parts. */
export interface ServerHelloSpec {
  legacyVersion: number;
  random: Uint8Array;
  sessionId: Uint8Array;
  suite: number;
  compression: number;
  extensions: Ext[];
}

export function encodeServerHello(spec: ServerHelloSpec): Uint8Array {
  return handshake(
    HS.server_hello,
    concatBytes(
      out((o) =>
        o.u16(spec.legacyVersion).raw(spec.random).vec(1, (v) => v.raw(spec.sessionId))
          .u16(spec.suite).u8(spec.compression)
      ),
      extensionsBlock(spec.extensions),
    ),
  );
}

/** The malicious server's side of one connection from `qsign connect`. */
export class ServerFlow {
  readonly transcript = new Transcript();
  clientHello?: Hello;
  clientHelloRaw?: Uint8Array;
  suite?: CipherSuite;
  secret?: Uint8Array;
  handshakeSecrets?: { client: Uint8Array; server: Uint8Array };
  appSecrets?: { client: Uint8Array; server: Uint8Array };
  schedule?: KeySchedule;

  constructor(readonly rc: RecordConn, readonly server: CertifiedKey) {}

  /** Reads a ClientHello (the first or, after a HelloRetryRequest, the second). */
  async readClientHello(): Promise<Hello> {
    for (;;) {
      const r = await this.rc.next();
      if (r.kind === "ccs") continue;
      if (r.kind !== "handshake" || r.type !== HS.client_hello) {
        throw new Error(
          `expected ClientHello, got ${JSON.stringify(r.kind === "alert" ? r : r.kind)}`,
        );
      }
      this.clientHelloRaw = r.raw;
      this.transcript.add(r.raw);
      this.clientHello = parseClientHello(r.body);
      return this.clientHello;
    }
  }

  /** The groups the client offered shares for, in order. */
  sharedGroups(hello = this.clientHello!): number[] {
    const ks = findExt(hello.extensions, EXT.key_share);
    if (!ks) return [];
    const r = new In(new In(ks.data).vec(2));
    const groups: number[] = [];
    while (r.left) {
      groups.push(r.u16());
      r.vec(2);
    }
    return groups;
  }

  supportedGroups(hello = this.clientHello!): number[] {
    const r = new In(new In(findExt(hello.extensions, EXT.supported_groups)!.data).vec(2));
    const groups: number[] = [];
    while (r.left) groups.push(r.u16());
    return groups;
  }

  #clientShare(group: number): Uint8Array {
    const r = new In(new In(findExt(this.clientHello!.extensions, EXT.key_share)!.data).vec(2));
    while (r.left) {
      const g = r.u16();
      const key = r.vec(2);
      if (g === group) return key;
    }
    throw new Error(`no client share for ${group}`);
  }

  /**
   * A ServerHello answering the ClientHello with the client's first share (or `group`): the
   * server share is computed now, so `change` may still break any field.
   */
  async serverHello(options: { group?: number; suite?: number } = {}): Promise<ServerHelloSpec> {
    const ch = this.clientHello!;
    const group = options.group ?? this.sharedGroups()[0];
    const { serverShare, sharedSecret } = await groupById(group).respond(this.#clientShare(group));
    this.secret = sharedSecret;
    this.suite = suiteById(options.suite ?? SUITES.aes256)!;
    return {
      legacyVersion: 0x0303,
      random: getCryptoProvider().randomBytes(32),
      sessionId: ch.sessionId,
      suite: this.suite.id,
      compression: 0,
      extensions: [
        ext(EXT.supported_versions, u16(0x0304)),
        ext(EXT.key_share, out((o) => o.u16(group).vec(2, (k) => k.raw(serverShare)))),
      ],
    };
  }

  /** A HelloRetryRequest asking for `group` with a cookie (either may be left out). */
  helloRetryRequest(
    options: { group?: number; cookie?: boolean; suite?: number } = {},
  ): ServerHelloSpec {
    const extensions = [ext(EXT.supported_versions, u16(0x0304))];
    if (options.group !== undefined) extensions.push(ext(EXT.key_share, u16(options.group)));
    if (options.cookie ?? true) {
      extensions.push(
        ext(EXT.cookie, out((o) => o.vec(2, (c) => c.raw([1, 2, 3, 4, 5, 6, 7, 8])))),
      );
    }
    // The transcript hash of an unknown suite: the default's (the client refuses it anyway).
    this.suite = suiteById(options.suite ?? SUITES.aes256) ?? suiteById(SUITES.aes256)!;
    return {
      legacyVersion: 0x0303,
      random: HRR_RANDOM,
      sessionId: this.clientHello!.sessionId,
      suite: options.suite ?? SUITES.aes256,
      compression: 0,
      extensions,
    };
  }

  /** Sends a HelloRetryRequest (and a compatibility CCS), restarting the transcript. */
  async sendRetry(spec: ServerHelloSpec): Promise<void> {
    const bytes = encodeServerHello(spec);
    this.transcript.restartAfterRetry(this.suite!);
    this.transcript.add(bytes);
    await this.rc.writeRaw(concatBytes(
      await this.rc.encode(CT.handshake, bytes),
      await this.rc.encode(CT.ccs, Uint8Array.of(1)),
    ));
  }

  /** Sends the ServerHello (plus a CCS) and switches both directions to handshake keys. */
  async sendServerHello(
    spec: ServerHelloSpec,
    options: { ccs?: boolean; fragment?: number; psk?: Uint8Array } = {},
  ): Promise<void> {
    const bytes = encodeServerHello(spec);
    this.transcript.add(bytes);
    const parts: Uint8Array[] = [];
    const size = options.fragment ?? bytes.length;
    for (let at = 0; at < bytes.length; at += size) {
      parts.push(await this.rc.encode(CT.handshake, bytes.subarray(at, at + size)));
    }
    if (options.ccs ?? true) parts.push(await this.rc.encode(CT.ccs, Uint8Array.of(1)));
    await this.rc.writeRaw(concatBytes(...parts));
    const suite = this.suite!;
    this.schedule = await KeySchedule.start(suite, options.psk);
    await this.schedule.enterHandshake(this.secret!);
    this.handshakeSecrets = await this.schedule.trafficSecrets("hs", this.transcript.hash(suite));
    await this.rc.setWriteKeys(suite, this.handshakeSecrets.server);
    await this.rc.setReadKeys(suite, this.handshakeSecrets.client);
  }

  /** EncryptedExtensions with `extensions`. */
  encryptedExtensions(extensions: Ext[] = []): Uint8Array {
    return handshake(HS.encrypted_extensions, extensionsBlock(extensions));
  }

  certificate(
    options: { chain?: Uint8Array[]; context?: Uint8Array; entryExtensions?: Ext[] } = {},
  ) {
    return certificateMessage(options.chain ?? this.server.chain, options);
  }

  /** CertificateVerify over the transcript so far plus `pending` (messages not yet added). */
  async certificateVerify(
    pending: Uint8Array[],
    options: { scheme?: number; corrupt?: boolean } = {},
  ): Promise<Uint8Array> {
    const hash = this.transcript.hash(this.suite!, concatBytes(...pending));
    const signature = await this.server.signer.sign(
      this.server.signer.schemes[0],
      certificateVerifyContent("server", hash),
    );
    if (options.corrupt) signature[10] ^= 1;
    return certificateVerifyMessage(options.scheme ?? this.server.signer.schemes[0], signature);
  }

  /** Finished over the transcript plus `pending`; `change` may break it. */
  async finished(
    pending: Uint8Array[],
    change?: (v: Uint8Array) => Uint8Array,
  ): Promise<Uint8Array> {
    const hash = this.transcript.hash(this.suite!, concatBytes(...pending));
    let verify = await finishedMac(this.suite!, this.handshakeSecrets!.server, hash);
    if (change) verify = change(verify);
    return handshake(HS.finished, verify);
  }

  /** The usual flight: EE, Certificate, CertificateVerify, Finished. */
  async flight(ee: Ext[] = []): Promise<Uint8Array[]> {
    const messages = [this.encryptedExtensions(ee), this.certificate()];
    messages.push(await this.certificateVerify(messages));
    messages.push(await this.finished(messages));
    return messages;
  }

  /** Sends the flight (added to the transcript) and derives the application secrets. */
  async sendFlight(messages: Uint8Array[]): Promise<void> {
    this.transcript.add(...messages);
    await this.rc.sendHandshake(concatBytes(...messages));
    if (messages.at(-1)?.[0] === HS.finished) await this.enterMaster();
  }

  /** After our Finished: the application secrets, and the client's next read keys. */
  async enterMaster(): Promise<void> {
    await this.schedule!.enterMaster();
    this.appSecrets = await this.schedule!.trafficSecrets("ap", this.transcript.hash(this.suite!));
    await this.rc.expectReadKeys(this.suite!, this.appSecrets.client);
  }

  /**
   * A NewSessionTicket for the finished handshake (call after the client's Finished) and the
   * PSK it stands for (RFC 8446 §4.6.1).
   */
  async newSessionTicket(): Promise<{ message: Uint8Array; psk: Uint8Array }> {
    const nonce = Uint8Array.of(1, 2, 3, 4);
    const rms = await this.schedule!.resumptionMasterSecret(this.transcript.hash(this.suite!));
    const message = handshake(
      HS.new_session_ticket,
      out((o) =>
        o.u32(3600).u32(0).vec(1, (n) => n.raw(nonce)).vec(
          2,
          (t) => t.raw(new Uint8Array(32).fill(5)),
        )
          .vec(2, () => {})
      ),
    );
    return { message, psk: await resumptionPsk(this.suite!, rms, nonce) };
  }

  /** Reads the client's Finished (and whatever precedes it) and enters application keys. */
  async readClientFinished(): Promise<void> {
    for (;;) {
      const m = await this.rc.handshakeMessage();
      this.transcript.add(m.raw);
      if (m.type === HS.finished) break;
    }
    await this.rc.setWriteKeys(this.suite!, this.appSecrets!.server);
    await this.rc.setReadKeys(this.suite!, this.appSecrets!.client);
  }
}
