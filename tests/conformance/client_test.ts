/**
 * RFC 8446 conformance of `qsign connect` (real CLI processes, in forwarder mode so one process
 * serves the whole table): the conformance peer plays a malicious server built from flow.ts and
 * checks the alert the client sends, protected once it has handshake keys, or that the
 * handshake completes and data flows. See docs/conformance.md.
 */
import { AssertionError, equal, ok } from "node:assert/strict";
import { join } from "node:path";
import { PKI_FILES } from "../../src/pki/ca.ts";
import { nextTrafficSecret } from "../../src/tls/key_schedule.ts";
import { Daemon } from "../daemon/support.ts";
import { tempDir } from "../support/env.ts";
import { makePki, type TestPki } from "../tls/support/pki.ts";
import {
  certificateMessage,
  certificateVerifyMessage,
  encodeServerHello,
  GROUP,
  SCHEME,
  ServerFlow,
  type ServerHelloSpec,
  SUITES,
} from "./flow.ts";
import { type Outcome, type Row, row, runTable } from "./table.ts";
import {
  concatBytes,
  CT,
  EXT,
  type Ext,
  ext,
  extensionsBlock,
  findExt,
  handshake,
  HS,
  In,
  out,
  record,
  RecordConn,
  u16,
} from "./wire.ts";

/** A `qsign connect --listen` forwarder and the malicious server it forwards to. */
interface Forwarder {
  daemon: Daemon;
  port: number;
  upstream: Deno.Listener;
}

interface Ctx {
  pki: TestPki;
  stranger: TestPki;
  compat: Forwarder;
  plain: Forwarder;
}

interface ServerScript {
  /** The client is to refuse the ServerHello: its alert is plaintext (it has no keys). */
  refusesServerHello?: boolean;
  /** The forwarder with middlebox compatibility turned off. */
  plain?: boolean;
  /** A HelloRetryRequest first (its parts changeable), then the second ClientHello. */
  retry?: (f: ServerFlow) => ServerHelloSpec;
  afterRetry?: (f: ServerFlow) => void;
  hello?: (sh: ServerHelloSpec, f: ServerFlow) => void;
  sendServerHello?: (f: ServerFlow, sh: ServerHelloSpec) => Promise<void>;
  ee?: Ext[];
  flight?: (f: ServerFlow) => Promise<Uint8Array[]>;
  sendFlight?: (f: ServerFlow, messages: Uint8Array[]) => Promise<void>;
  /** After our Finished, before the client's; a returned outcome ends the case. */
  beforeClientFinished?: (f: ServerFlow) => Promise<Outcome | void>;
  /** After the handshake; a returned outcome ends the case, else data must flow (`ok`). */
  after?: (f: ServerFlow) => Promise<Outcome | void>;
  check?: (f: ServerFlow) => void;
}

const STOPPED = "stopped by the case";

async function serve(ctx: Ctx, s: ServerScript): Promise<Outcome> {
  const fw = s.plain ? ctx.plain : ctx.compat;
  const local = await Deno.connect({ hostname: "127.0.0.1", port: fw.port });
  const tcp = await fw.upstream.accept();
  const f = new ServerFlow(new RecordConn(tcp), ctx.pki.server);
  f.rc.plaintextAlertExpected = s.refusesServerHello ?? false;
  try {
    await f.readClientHello();
    if (s.retry) {
      await f.sendRetry(s.retry(f));
      await f.readClientHello();
      s.afterRetry?.(f);
    }
    const sh = await f.serverHello();
    s.hello?.(sh, f);
    if (s.sendServerHello) await s.sendServerHello(f, sh);
    else await f.sendServerHello(sh);
    const messages = s.flight ? await s.flight(f) : await f.flight(s.ee);
    if (s.sendFlight) await s.sendFlight(f, messages);
    else await f.sendFlight(messages);
    const early = await s.beforeClientFinished?.(f);
    if (typeof early === "string") return early;
    await f.readClientFinished();
    const after = await s.after?.(f);
    if (typeof after === "string") return after;
    await local.write(new TextEncoder().encode("ping"));
    for (;;) {
      const r = await f.rc.next();
      if (r.kind === "data") break;
      if (r.kind !== "ccs") throw new Error(`expected data, got ${r.kind}`);
    }
    s.check?.(f);
    return "ok";
  } catch (e) {
    if (e instanceof AssertionError) return `failed: ${e.message}`;
    const ending = await f.rc.ending().catch(() => "timed out");
    const message = e instanceof Error ? e.message : String(e);
    if (ending === "closed" && !message.includes('"eof"') && message !== STOPPED) {
      return `failed: ${message}`;
    }
    return ending;
  } finally {
    f.rc.close();
    try {
      local.close();
    } catch {
      // closed by the forwarder
    }
  }
}

const s = (script: ServerScript) => (ctx: Ctx) => serve(ctx, script);
/** A row whose ServerHello the client must refuse (before it has any keys). */
const sh = (script: ServerScript) => s({ ...script, refusesServerHello: true });
const bytes = (...values: number[]) => Uint8Array.from(values);

function setExt(list: Ext[], type: number, data?: Uint8Array | number[]): void {
  const at = list.findIndex((e) => e.type === type);
  if (data === undefined) {
    if (at >= 0) list.splice(at, 1);
    return;
  }
  if (at >= 0) list[at] = ext(type, data);
  else list.push(ext(type, data));
}

/** A group the client supports but sent no share for (what a HelloRetryRequest may ask). */
const unsharedGroup = (f: ServerFlow) =>
  f.supportedGroups().find((g) => !f.sharedGroups().includes(g))!;

/** A flight of our own making: EE, [CR], Certificate, CertificateVerify, Finished. */
async function flightWith(
  f: ServerFlow,
  parts: {
    ee?: Ext[];
    request?: Uint8Array;
    certificate?: Uint8Array;
    verify?: (pending: Uint8Array[]) => Promise<Uint8Array | undefined>;
    finished?: (v: Uint8Array) => Uint8Array;
  },
): Promise<Uint8Array[]> {
  const messages = [f.encryptedExtensions(parts.ee ?? [])];
  if (parts.request) messages.push(parts.request);
  messages.push(parts.certificate ?? f.certificate());
  const cv = parts.verify ? await parts.verify(messages) : await f.certificateVerify(messages);
  if (cv) messages.push(cv);
  messages.push(await f.finished(messages, parts.finished));
  return messages;
}

const certificateRequest = (extensions: Ext[], context = bytes()) =>
  handshake(
    HS.certificate_request,
    concatBytes(out((o) => o.vec(1, (c) => c.raw(context))), extensionsBlock(extensions)),
  );
const SIGALGS = ext(EXT.signature_algorithms, out((o) => o.vec(2, (v) => v.u16(SCHEME.mldsa65))));

/** Sends raw bytes after ServerHello in place of the flight. */
const instead = (build: (f: ServerFlow) => Promise<Uint8Array> | Uint8Array) => ({
  sendFlight: async (f: ServerFlow) => {
    await f.rc.writeRaw(await build(f));
  },
});

// ------------------------------------------------------------------ the rows

const rows: Row<Ctx>[] = [];
const add = (...r: Row<Ctx>[]) => rows.push(...r);

// Baseline and middlebox compatibility (D.4).
add(
  row(
    "D.4",
    "ok",
    "compatibility mode: a 32-byte session id, one CCS before the second flight",
    s({
      check: (f) => {
        equal(f.clientHello!.sessionId.length, 32);
        equal(f.rc.ccsAfter.join(), "1");
      },
    }),
  ),
  row(
    "D.4",
    "ok",
    "--no-middlebox-compat: empty session id, no CCS",
    s({
      plain: true,
      check: (f) => {
        equal(f.clientHello!.sessionId.length, 0);
        equal(f.rc.ccsAfter.length, 0);
      },
    }),
  ),
  row(
    "D.4",
    "ok",
    "a server that sends no CCS",
    s({
      sendServerHello: (f, sh) => f.sendServerHello(sh, { ccs: false }),
    }),
  ),
  row(
    "5",
    "ok",
    "a CCS before the ServerHello is dropped",
    s({
      sendServerHello: async (f, sh) => {
        await f.rc.writeRaw(record(CT.ccs, bytes(1)));
        await f.sendServerHello(sh);
      },
    }),
  ),
  row(
    "5",
    "ok",
    "two CCS records after ServerHello",
    s({
      sendFlight: async (f, messages) => {
        await f.rc.writeRaw(record(CT.ccs, bytes(1)));
        await f.sendFlight(messages);
      },
    }),
  ),
  row(
    "5",
    "unexpected_message",
    "a CCS of value 2",
    s({
      sendFlight: async (f, messages) => {
        await f.rc.writeRaw(record(CT.ccs, bytes(2)));
        await f.sendFlight(messages);
      },
    }),
  ),
  row(
    "5",
    "unexpected_message",
    "a protected CCS",
    s({
      sendFlight: async (f, messages) => {
        await f.rc.send(CT.ccs, bytes(1));
        await f.sendFlight(messages);
      },
    }),
  ),
  row(
    "5",
    "unexpected_message",
    "a CCS after the handshake",
    s({
      after: async (f) => {
        await f.rc.writeRaw(record(CT.ccs, bytes(1)));
        return await f.rc.ending();
      },
    }),
  ),
  row(
    "5.1",
    "unexpected_message",
    "a CCS between fragments of the server's flight",
    s({
      sendFlight: async (f, messages) => {
        f.transcript.add(...messages);
        const all = concatBytes(...messages);
        await f.rc.writeRaw(concatBytes(
          await f.rc.encode(CT.handshake, all.subarray(0, 40)),
          record(CT.ccs, bytes(1)),
          await f.rc.encode(CT.handshake, all.subarray(40)),
        ));
        throw new Error(STOPPED);
      },
    }),
  ),
);

// §4.1.3, D.5: ServerHello version, session id, suite, compression.
for (const v of [0x0000, 0x0100, 0x0200, 0x0300]) {
  add(
    row(
      "D.5",
      "protocol_version",
      `ServerHello legacy_version 0x${v.toString(16).padStart(4, "0")}`,
      sh({
        hello: (sh) => void (sh.legacyVersion = v),
      }),
    ),
  );
}
for (const v of [0x0301, 0x0302, 0x0304]) {
  add(row(
    "4.2.1",
    "ok",
    `ServerHello legacy_version 0x${v.toString(16)} is ignored`,
    sh({
      hello: (sh) => void (sh.legacyVersion = v),
    }),
  ));
}
add(
  row(
    "4.1.3",
    "protocol_version",
    "ServerHello without supported_versions (TLS 1.2)",
    sh({
      hello: (sh) => setExt(sh.extensions, EXT.supported_versions),
    }),
  ),
);
for (const v of [0x0303, 0x0305, 0x7f1c, 0x0a0a]) {
  add(row(
    "4.2.1",
    "illegal_parameter",
    `ServerHello selects version 0x${v.toString(16)}`,
    sh({
      hello: (sh) => setExt(sh.extensions, EXT.supported_versions, u16(v)),
    }),
  ));
}
add(
  row(
    "4.1.3",
    "illegal_parameter",
    "legacy_session_id_echo empty",
    sh({
      hello: (sh) => void (sh.sessionId = bytes()),
    }),
  ),
  row(
    "4.1.3",
    "illegal_parameter",
    "legacy_session_id_echo of other bytes",
    sh({
      hello: (sh) => void (sh.sessionId = new Uint8Array(32).fill(3)),
    }),
  ),
  row(
    "4.1.3",
    "illegal_parameter",
    "a session id echoed to a client that sent none",
    sh({
      plain: true,
      hello: (sh) => void (sh.sessionId = new Uint8Array(32)),
    }),
  ),
  row(
    "4.1.3",
    "illegal_parameter",
    "legacy_compression_method 1",
    sh({
      hello: (sh) => void (sh.compression = 1),
    }),
  ),
);
for (
  const [name, suite] of [["TLS_AES_128_CCM_SHA256", 0x1304], ["a TLS 1.2 suite", 0xc02f], [
    "GREASE",
    0x0a0a,
  ]] as const
) {
  add(row(
    "4.1.3",
    "illegal_parameter",
    `ServerHello selects ${name}`,
    sh({
      hello: (sh) => void (sh.suite = suite),
    }),
  ));
}

// §4.2.8: the server's key share.
add(
  row(
    "4.2.8",
    "illegal_parameter",
    "a share for a group the client did not offer (x25519)",
    sh({
      hello: (sh) =>
        setExt(
          sh.extensions,
          EXT.key_share,
          out((o) => o.u16(GROUP.x25519).vec(2, (k) => k.raw(new Uint8Array(32).fill(9)))),
        ),
    }),
  ),
  row(
    "4.2.8",
    "illegal_parameter",
    "a share for an offered group the client sent no share for",
    sh({
      hello: (sh, f) =>
        setExt(
          sh.extensions,
          EXT.key_share,
          out((o) => o.u16(unsharedGroup(f)).vec(2, (k) => k.raw(new Uint8Array(1120)))),
        ),
    }),
  ),
  row(
    "4.2.8",
    "illegal_parameter",
    "a server share of the wrong length",
    sh({
      hello: (sh) => {
        const ks = findExt(sh.extensions, EXT.key_share)!;
        const r = new In(ks.data);
        const group = r.u16();
        const share = r.vec(2);
        setExt(
          sh.extensions,
          EXT.key_share,
          out((o) => o.u16(group).vec(2, (k) => k.raw(share.subarray(1)))),
        );
      },
    }),
  ),
  row(
    "4.2.8",
    "missing_extension",
    "ServerHello without key_share",
    sh({
      hello: (sh) => setExt(sh.extensions, EXT.key_share),
    }),
  ),
  row(
    "4.2.11",
    "unsupported_extension",
    "a pre_shared_key the client did not offer",
    sh({
      hello: (sh) => setExt(sh.extensions, EXT.pre_shared_key, u16(0)),
    }),
  ),
  row(
    "4.2",
    "illegal_parameter",
    "duplicate supported_versions in ServerHello",
    sh({
      hello: (sh) => void sh.extensions.push(ext(EXT.supported_versions, u16(0x0304))),
    }),
  ),
);

// §4.2: extensions the ServerHello and HelloRetryRequest may not carry.
const notInServerHello: [string, number, number[]][] = [
  ["server_name", EXT.server_name, []],
  ["max_fragment_length", EXT.max_fragment_length, [4]],
  ["status_request", EXT.status_request, []],
  ["supported_groups", EXT.supported_groups, [0, 2, 0x11, 0xed]],
  ["signature_algorithms", EXT.signature_algorithms, [0, 2, 9, 5]],
  ["use_srtp", EXT.use_srtp, [0, 2, 0, 1, 0]],
  ["heartbeat", EXT.heartbeat, [1]],
  ["application_layer_protocol_negotiation", EXT.alpn, [0, 3, 2, 0x68, 0x32]],
  ["signed_certificate_timestamp", EXT.sct, []],
  ["client_certificate_type", EXT.client_certificate_type, [0]],
  ["server_certificate_type", EXT.server_certificate_type, [0]],
  ["padding", EXT.padding, [0, 0]],
  ["record_size_limit", EXT.record_size_limit, [0x40, 0]],
  ["early_data", EXT.early_data, []],
  ["psk_key_exchange_modes", EXT.psk_key_exchange_modes, [1, 1]],
  ["certificate_authorities", EXT.certificate_authorities, [0, 0]],
  ["oid_filters", EXT.oid_filters, [0, 0]],
  ["post_handshake_auth", EXT.post_handshake_auth, []],
  ["signature_algorithms_cert", EXT.signature_algorithms_cert, [0, 2, 9, 5]],
];
const unknownExtensions: [string, number][] = [["0xfe00", 0xfe00], ["0x1234", 0x1234], [
  "GREASE 0x1a1a",
  0x1a1a,
]];
for (
  const [name, type, data] of [
    ...notInServerHello,
    ["cookie", EXT.cookie, [0, 1, 1]] as [string, number, number[]],
  ]
) {
  add(row(
    "4.2",
    "illegal_parameter",
    `${name} in ServerHello`,
    sh({
      hello: (sh) => void sh.extensions.push(ext(type, data)),
    }),
  ));
}
for (const [name, type] of unknownExtensions) {
  add(row(
    "4.2",
    "unsupported_extension",
    `unknown extension ${name} in ServerHello`,
    sh({
      hello: (sh) => void sh.extensions.push(ext(type, [])),
    }),
  ));
}

// §4.1.4: HelloRetryRequest.
const hrr = (change?: (spec: ServerHelloSpec, f: ServerFlow) => void) => (f: ServerFlow) => {
  const spec = f.helloRetryRequest({ group: unsharedGroup(f) });
  change?.(spec, f);
  return spec;
};
for (
  const [name, type, data] of [
    ...notInServerHello,
    ["pre_shared_key", EXT.pre_shared_key, [0, 0]] as [string, number, number[]],
  ]
) {
  add(row(
    "4.2",
    "illegal_parameter",
    `${name} in HelloRetryRequest`,
    s({
      retry: hrr((spec) => void spec.extensions.push(ext(type, data))),
    }),
  ));
}
for (const [name, type] of unknownExtensions) {
  add(row(
    "4.2",
    "unsupported_extension",
    `unknown extension ${name} in HelloRetryRequest`,
    s({
      retry: hrr((spec) => void spec.extensions.push(ext(type, []))),
    }),
  ));
}
add(
  row(
    "4.1.4",
    "ok",
    "HelloRetryRequest for another group: ClientHello2 as §4.1.2 says",
    s({
      retry: hrr(),
      afterRetry: (f) => {
        const [first] = f.transcript.messages;
        ok(first[0] === HS.message_hash);
        equal(f.sharedGroups().length, 1);
        ok(findExt(f.clientHello!.extensions, EXT.cookie), "the cookie is echoed");
        equal(f.clientHello!.extensions.some((e) => e.type === EXT.early_data), false);
        equal(f.rc.ccsAfter.join(), "1");
      },
    }),
  ),
  row(
    "4.1.4",
    "ok",
    "a HelloRetryRequest with only a cookie (a change: the cookie)",
    s({
      retry: (f) => f.helloRetryRequest({ cookie: true }),
      afterRetry: (f) => ok(findExt(f.clientHello!.extensions, EXT.cookie)),
    }),
  ),
  row(
    "4.1.4",
    "illegal_parameter",
    "a HelloRetryRequest that changes nothing",
    s({
      retry: (f) => f.helloRetryRequest({ cookie: false }),
    }),
  ),
  row(
    "4.2.8",
    "illegal_parameter",
    "HelloRetryRequest for the group already shared",
    s({
      retry: (f) => f.helloRetryRequest({ group: f.sharedGroups()[0] }),
    }),
  ),
  row(
    "4.2.8",
    "illegal_parameter",
    "HelloRetryRequest for a group not offered",
    s({
      retry: (f) => f.helloRetryRequest({ group: GROUP.x25519 }),
    }),
  ),
  row(
    "4.1.4",
    "illegal_parameter",
    "HelloRetryRequest with a suite not offered",
    s({
      retry: (f) => f.helloRetryRequest({ group: unsharedGroup(f), suite: 0x1304 }),
    }),
  ),
  row(
    "4.1.4",
    "illegal_parameter",
    "HelloRetryRequest without a session id echo",
    s({
      retry: hrr((spec) => void (spec.sessionId = bytes())),
    }),
  ),
  row(
    "4.1.4",
    "illegal_parameter",
    "HelloRetryRequest selecting TLS 1.2",
    s({
      retry: hrr((spec) => setExt(spec.extensions, EXT.supported_versions, u16(0x0303))),
    }),
  ),
  row(
    "4.1.4",
    "unexpected_message",
    "a second HelloRetryRequest",
    s({
      retry: hrr(),
      sendServerHello: async (f) => {
        const again = encodeServerHello(f.helloRetryRequest({ cookie: true }));
        await f.rc.writeRaw(record(CT.handshake, again));
        throw new Error(STOPPED);
      },
    }),
  ),
  row(
    "4.1.4",
    "illegal_parameter",
    "ServerHello after HelloRetryRequest with another suite",
    sh({
      retry: hrr(),
      hello: (sh) => void (sh.suite = SUITES.aes128),
    }),
  ),
  row(
    "4.1.4",
    "illegal_parameter",
    "ServerHello after HelloRetryRequest sharing another group",
    sh({
      retry: (f) => f.helloRetryRequest({ group: unsharedGroup(f) }),
      hello: (sh, f) => {
        const other = [GROUP.mlkem768, GROUP.x25519mlkem768].find((g) =>
          g !== f.sharedGroups()[0]
        )!;
        const share = out((o) => o.u16(other).vec(2, (k) => k.raw(new Uint8Array(1088))));
        setExt(sh.extensions, EXT.key_share, share);
      },
    }),
  ),
  row("4.1.4", "ok", "the group of a HelloRetryRequest is offered first next time", async (ctx) => {
    let wanted = 0;
    const first = await serve(ctx, {
      retry: (f) => {
        wanted = f.supportedGroups().filter((g) => !f.sharedGroups().includes(g)).at(-1)!;
        return f.helloRetryRequest({ group: wanted });
      },
    });
    if (first !== "ok") return `first connection: ${first}`;
    let shared = 0;
    const second = await serve(ctx, { check: (f) => void (shared = f.sharedGroups()[0]) });
    return second === "ok" && shared !== wanted ? `offered ${shared}, not ${wanted}` : second;
  }),
);

// §4.3.1, §4.2: EncryptedExtensions.
const notInEncryptedExtensions: [string, number, number[]][] = [
  ["supported_versions", EXT.supported_versions, [3, 4]],
  ["key_share", EXT.key_share, [0x11, 0xed, 0, 1, 0]],
  ["pre_shared_key", EXT.pre_shared_key, [0, 0]],
  ["signature_algorithms", EXT.signature_algorithms, [0, 2, 9, 5]],
  ["cookie", EXT.cookie, [0, 1, 1]],
  ["psk_key_exchange_modes", EXT.psk_key_exchange_modes, [1, 1]],
  ["certificate_authorities", EXT.certificate_authorities, [0, 0]],
  ["post_handshake_auth", EXT.post_handshake_auth, []],
  ["padding", EXT.padding, [0]],
  ["oid_filters", EXT.oid_filters, [0, 0]],
  ["signature_algorithms_cert", EXT.signature_algorithms_cert, [0, 2, 9, 5]],
  ["status_request", EXT.status_request, []],
  ["signed_certificate_timestamp", EXT.sct, []],
];
for (const [name, type, data] of notInEncryptedExtensions) {
  add(
    row("4.2", "illegal_parameter", `${name} in EncryptedExtensions`, s({ ee: [ext(type, data)] })),
  );
}
const unsolicitedInEncryptedExtensions: [string, number, number[]][] = [
  ["record_size_limit not sent", EXT.record_size_limit, [0x40, 0]],
  ["ALPN not offered", EXT.alpn, [0, 3, 2, 0x68, 0x32]],
  ["early_data not offered", EXT.early_data, []],
  ["max_fragment_length", EXT.max_fragment_length, [4]],
  ["use_srtp", EXT.use_srtp, [0, 2, 0, 1, 0]],
  ["heartbeat", EXT.heartbeat, [1]],
  ["client_certificate_type", EXT.client_certificate_type, [0]],
  ["server_certificate_type", EXT.server_certificate_type, [0]],
  ["unknown 0xfe00", 0xfe00, [1]],
  ["unknown 0x1234", 0x1234, []],
];
for (const [name, type, data] of unsolicitedInEncryptedExtensions) {
  add(
    row(
      "4.2",
      "unsupported_extension",
      `unsolicited ${name} in EncryptedExtensions`,
      s({ ee: [ext(type, data)] }),
    ),
  );
}
add(
  row(
    "4.3.1",
    "ok",
    "an empty server_name answering the client's SNI",
    s({ ee: [ext(EXT.server_name, [])] }),
  ),
  row(
    "4.2.7",
    "ok",
    "supported_groups in EncryptedExtensions (the server's preference)",
    s({
      ee: [ext(EXT.supported_groups, [0, 2, 0x11, 0xec])],
    }),
  ),
  row(
    "4.3.1 (RFC 6066 §3)",
    "decode_error",
    "a server_name answer that is not empty",
    s({ ee: [ext(EXT.server_name, [0, 0])] }),
  ),
  row(
    "4.2",
    "illegal_parameter",
    "duplicate server_name in EncryptedExtensions",
    s({
      ee: [ext(EXT.server_name, []), ext(EXT.server_name, [])],
    }),
  ),
  row(
    "4.3.1",
    "unexpected_message",
    "Certificate without EncryptedExtensions",
    s({
      flight: async (f) => (await f.flight()).slice(1),
    }),
  ),
  row(
    "4.3.1",
    "decode_error",
    "EncryptedExtensions with a trailing byte",
    s({
      flight: async (f) => {
        const messages = await f.flight();
        messages[0] = handshake(HS.encrypted_extensions, bytes(0, 0, 0));
        return messages;
      },
    }),
  ),
);

// §4.4.2: the server's Certificate.
add(
  row(
    "4.4.2.4",
    "decode_error",
    "an empty Certificate",
    s({
      flight: (f) =>
        flightWith(f, {
          certificate: certificateMessage([]),
          verify: () => Promise.resolve(undefined),
        }),
    }),
  ),
  row(
    "4.4.2",
    "illegal_parameter",
    "Certificate with a request context",
    s({
      flight: (f) => flightWith(f, { certificate: f.certificate({ context: bytes(1) }) }),
    }),
  ),
  row(
    "4.4.2.4",
    "unknown_ca",
    "a chain from a CA the client does not trust",
    (ctx) =>
      serve(ctx, {
        flight: (f) =>
          flightWith(f, { certificate: f.certificate({ chain: ctx.stranger.server.chain }) }),
      }),
  ),
  row(
    "4.4.2.4",
    "bad_certificate",
    "a certificate that is not DER",
    s({
      flight: (f) => flightWith(f, { certificate: certificateMessage([bytes(0x30, 1, 0)]) }),
    }),
  ),
  row(
    "4.4.2",
    "unsupported_extension",
    "status_request in the certificate entry (not requested)",
    s({
      flight: (f) =>
        flightWith(f, {
          certificate: f.certificate({
            entryExtensions: [ext(EXT.status_request, [1, 0, 0, 0, 0])],
          }),
        }),
    }),
  ),
  row(
    "4.4.2",
    "unsupported_extension",
    "signed_certificate_timestamp in the entry (not requested)",
    s({
      flight: (f) =>
        flightWith(f, { certificate: f.certificate({ entryExtensions: [ext(EXT.sct, [0, 0])] }) }),
    }),
  ),
  row(
    "4.4.2",
    "unsupported_extension",
    "an unknown extension in the certificate entry",
    s({
      flight: (f) =>
        flightWith(f, { certificate: f.certificate({ entryExtensions: [ext(0x1234, [])] }) }),
    }),
  ),
  row(
    "4.2",
    "illegal_parameter",
    "key_share in the certificate entry",
    s({
      flight: (f) =>
        flightWith(f, {
          certificate: f.certificate({ entryExtensions: [ext(EXT.key_share, [0, 0])] }),
        }),
    }),
  ),
  row(
    "4.4.2",
    "unexpected_message",
    "CertificateVerify without Certificate",
    s({
      flight: async (f) => (await f.flight()).filter((m) => m[0] !== HS.certificate),
    }),
  ),
);

// §4.3.2: CertificateRequest.
add(
  row(
    "4.3.2",
    "ok",
    "a CertificateRequest: the client authenticates",
    s({
      flight: (f) => flightWith(f, { request: certificateRequest([SIGALGS]) }),
    }),
  ),
  row(
    "4.3.2",
    "ok",
    "an unknown extension in CertificateRequest is ignored",
    s({
      flight: (f) => flightWith(f, { request: certificateRequest([SIGALGS, ext(0x1234, [1])]) }),
    }),
  ),
  row(
    "4.3.2",
    "missing_extension",
    "a CertificateRequest without signature_algorithms",
    s({
      flight: (f) => flightWith(f, { request: certificateRequest([]) }),
    }),
  ),
  row(
    "4.3.2",
    "illegal_parameter",
    "a CertificateRequest with a context during the handshake",
    s({
      flight: (f) => flightWith(f, { request: certificateRequest([SIGALGS], bytes(1)) }),
    }),
  ),
  row(
    "4.2",
    "illegal_parameter",
    "key_share in CertificateRequest",
    s({
      flight: (f) =>
        flightWith(f, { request: certificateRequest([SIGALGS, ext(EXT.key_share, [0, 0])]) }),
    }),
  ),
  row(
    "4.2",
    "illegal_parameter",
    "duplicate signature_algorithms in CertificateRequest",
    s({
      flight: (f) => flightWith(f, { request: certificateRequest([SIGALGS, SIGALGS]) }),
    }),
  ),
  row(
    "4.3.2",
    "unexpected_message",
    "CertificateRequest after Certificate",
    s({
      flight: async (f) => {
        const m = await f.flight();
        return [m[0], m[1], certificateRequest([SIGALGS]), m[2], m[3]];
      },
    }),
  ),
);

// §4.4.3, §4.4.4: CertificateVerify and Finished.
add(
  row(
    "4.4.3",
    "illegal_parameter",
    "CertificateVerify with rsa_pkcs1_sha256",
    s({
      flight: (f) =>
        flightWith(f, { verify: (p) => f.certificateVerify(p, { scheme: SCHEME.rsa_pkcs1_256 }) }),
    }),
  ),
  row(
    "4.4.3",
    "illegal_parameter",
    "CertificateVerify with a scheme of another key type",
    s({
      flight: (f) =>
        flightWith(f, { verify: (p) => f.certificateVerify(p, { scheme: SCHEME.ecdsa_p384 }) }),
    }),
  ),
  row(
    "4.4.3",
    "decrypt_error",
    "CertificateVerify that does not verify",
    s({
      flight: (f) => flightWith(f, { verify: (p) => f.certificateVerify(p, { corrupt: true }) }),
    }),
  ),
  row(
    "4.4.3",
    "decode_error",
    "CertificateVerify with an empty signature",
    s({
      flight: (f) =>
        flightWith(f, {
          verify: () => Promise.resolve(certificateVerifyMessage(SCHEME.mldsa65, bytes())),
        }),
    }),
  ),
  row(
    "4.4.3",
    "unexpected_message",
    "Finished without CertificateVerify",
    s({
      flight: (f) => flightWith(f, { verify: () => Promise.resolve(undefined) }),
    }),
  ),
  row(
    "4.4.4",
    "decrypt_error",
    "Finished that does not verify",
    s({
      flight: (f) => flightWith(f, { finished: (v) => (v[3] ^= 1, v) }),
    }),
  ),
  row(
    "4.4.4",
    "decode_error",
    "Finished one byte short",
    s({ flight: (f) => flightWith(f, { finished: (v) => v.subarray(1) }) }),
  ),
  row(
    "4.4.4",
    "decode_error",
    "Finished one byte long",
    s({ flight: (f) => flightWith(f, { finished: (v) => concatBytes(v, bytes(0)) }) }),
  ),
  row(
    "4.4.4",
    "decode_error",
    "empty Finished",
    s({ flight: (f) => flightWith(f, { finished: () => bytes() }) }),
  ),
);

// §5: records from the server.
add(
  row(
    "5.2",
    "unexpected_message",
    "a plaintext EncryptedExtensions after ServerHello",
    s(instead((f) => record(CT.handshake, f.encryptedExtensions()))),
  ),
  row(
    "5",
    "unexpected_message",
    "a record of unknown type 25",
    s(instead(() => record(25, bytes(1)))),
  ),
  row(
    "5.2",
    "record_overflow",
    "a record of 2^14 + 256 + 1 bytes",
    s(instead(() => record(CT.data, new Uint8Array(16641)))),
  ),
  row(
    "5.4",
    "record_overflow",
    "an inner plaintext of 2^14 + 2 bytes",
    s(instead((f) => f.rc.encode(CT.handshake, new Uint8Array(16384), { padding: 1 }))),
  ),
  row(
    "5.2",
    "unexpected_message",
    "inner content type 0x99",
    s(instead((f) => f.rc.encode(CT.handshake, f.encryptedExtensions(), { innerType: 0x99 }))),
  ),
  row(
    "5.4",
    "unexpected_message",
    "an inner plaintext of zeros only",
    s(instead((f) => f.rc.encode(CT.handshake, bytes(), { innerType: 0, padding: 4 }))),
  ),
  row(
    "5.2",
    "bad_record_mac",
    "a flipped bit in the server's flight",
    s(instead(async (f) => {
      const rec = await f.rc.encode(CT.handshake, f.encryptedExtensions());
      rec[6] ^= 1;
      return rec;
    })),
  ),
  row(
    "5.1",
    "unexpected_message",
    "ServerHello and EncryptedExtensions in one record (straddles keys)",
    s({
      sendServerHello: async (f, sh) => {
        await f.rc.writeRaw(
          record(CT.handshake, concatBytes(encodeServerHello(sh), f.encryptedExtensions())),
        );
        throw new Error(STOPPED);
      },
    }),
  ),
  row(
    "5.1",
    "ok",
    "ServerHello in records of 10 bytes",
    s({
      sendServerHello: (f, sh) => f.sendServerHello(sh, { fragment: 10 }),
    }),
  ),
  row(
    "5.1",
    "ok",
    "the server's flight in records of 7 bytes",
    s({
      sendFlight: async (f, messages) => {
        f.transcript.add(...messages);
        await f.rc.sendHandshake(concatBytes(...messages), 7);
        await f.enterMaster();
      },
    }),
  ),
  row(
    "5.4",
    "ok",
    "the server's flight with 500 bytes of padding",
    s({
      sendFlight: async (f, messages) => {
        f.transcript.add(...messages);
        await f.rc.send(CT.handshake, concatBytes(...messages), { padding: 500 });
        await f.enterMaster();
      },
    }),
  ),
);

// §5.1, §4.4.4: what may not come with or before the server's Finished.
const flightThen = (extra: (f: ServerFlow) => Promise<Uint8Array>) =>
  s({
    sendFlight: async (f, messages) => {
      f.transcript.add(...messages);
      await f.rc.writeRaw(concatBytes(
        await f.rc.encode(CT.handshake, concatBytes(...messages.slice(0, -1))),
        await extra(f),
        await f.rc.encode(CT.handshake, messages.at(-1)!),
      ));
      throw new Error(STOPPED);
    },
  });
add(
  row(
    "5",
    "unexpected_message",
    "application data before the server's Finished",
    flightThen((f) => f.rc.encode(CT.data, bytes(1, 2, 3))),
  ),
  row(
    "4.6.3",
    "unexpected_message",
    "a KeyUpdate before the server's Finished",
    flightThen((f) => f.rc.encode(CT.handshake, handshake(HS.key_update, bytes(0)))),
  ),
  row(
    "4.6.1",
    "unexpected_message",
    "a NewSessionTicket before the server's Finished",
    flightThen((f) =>
      f.rc.encode(
        CT.handshake,
        handshake(HS.new_session_ticket, bytes(0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0)),
      )
    ),
  ),
  row(
    "5.1",
    "unexpected_message",
    "the server's Finished and a ticket in one record (straddles keys)",
    s({
      sendFlight: async (f, messages) => {
        f.transcript.add(...messages);
        const ticket = handshake(
          HS.new_session_ticket,
          bytes(0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0),
        );
        await f.rc.send(CT.handshake, concatBytes(...messages, ticket));
        await f.enterMaster();
        throw new Error(STOPPED);
      },
    }),
  ),
);

// §6: the server's alerts, and the client's own.
add(
  row(
    "6.2, D.4",
    "closed",
    "the server's plaintext unknown_ca after ServerHello: not answered",
    s(instead(() => record(CT.alert, bytes(2, 48)))),
  ),
  row(
    "6.2",
    "closed",
    "the server's protected handshake_failure: not answered",
    s(instead((f) => f.rc.encode(CT.alert, bytes(2, 40)))),
  ),
  row(
    "6",
    "decode_error",
    "an alert of three bytes",
    s(instead((f) => f.rc.encode(CT.alert, bytes(2, 40, 0)))),
  ),
);

// §4.6: post-handshake messages from the server.
add(
  row(
    "4.6.3",
    "ok",
    "KeyUpdate update_not_requested",
    s({
      after: async (f) => {
        await f.rc.send(CT.handshake, handshake(HS.key_update, bytes(0)));
        f.appSecrets!.server = await nextTrafficSecret(f.suite!, f.appSecrets!.server);
        await f.rc.setWriteKeys(f.suite!, f.appSecrets!.server);
      },
    }),
  ),
  row(
    "4.6.3",
    "illegal_parameter",
    "KeyUpdate request_update 2",
    s({
      after: async (f) => {
        await f.rc.send(CT.handshake, handshake(HS.key_update, bytes(2)));
        return await f.rc.ending();
      },
    }),
  ),
  row(
    "4.6.3",
    "decode_error",
    "an empty KeyUpdate",
    s({
      after: async (f) => {
        await f.rc.send(CT.handshake, handshake(HS.key_update, bytes()));
        return await f.rc.ending();
      },
    }),
  ),
  row(
    "4.6.2",
    "unexpected_message",
    "a CertificateRequest after the handshake (no post_handshake_auth)",
    s({
      after: async (f) => {
        await f.rc.send(CT.handshake, certificateRequest([SIGALGS], bytes(1)));
        return await f.rc.ending();
      },
    }),
  ),
  row(
    "4.6",
    "unexpected_message",
    "a ServerHello after the handshake",
    s({
      after: async (f) => {
        await f.rc.send(CT.handshake, handshake(HS.server_hello, new Uint8Array(40)));
        return await f.rc.ending();
      },
    }),
  ),
  row(
    "4.6",
    "unexpected_message",
    "a second Finished after the handshake",
    s({
      after: async (f) => {
        await f.rc.send(CT.handshake, handshake(HS.finished, new Uint8Array(48)));
        return await f.rc.ending();
      },
    }),
  ),
  row(
    "4.6.1",
    "decode_error",
    "a NewSessionTicket with an empty ticket",
    s({
      after: async (f) => {
        await f.rc.send(
          CT.handshake,
          handshake(
            HS.new_session_ticket,
            out((o) => o.u32(60).u32(1).vec(1, () => {}).vec(2, () => {}).vec(2, () => {})),
          ),
        );
        return await f.rc.ending();
      },
    }),
  ),
  row(
    "4.6.1",
    "ok",
    "a NewSessionTicket with an unknown extension",
    s({
      after: async (f) => {
        await f.rc.send(
          CT.handshake,
          handshake(
            HS.new_session_ticket,
            out((o) =>
              o.u32(0).u32(1).vec(1, () => {}).vec(2, (t) => t.raw(bytes(1, 2))).raw(
                extensionsBlock([ext(0x1234, [])]),
              )
            ),
          ),
        );
      },
    }),
  ),
);

// §4.2.11, §4.6.1: resumption with a ticket this server issued.
/** A full handshake that leaves the client one ticket; returns its PSK. */
async function issueTicket(ctx: Ctx): Promise<Uint8Array | string> {
  let psk: Uint8Array | undefined;
  const outcome = await serve(ctx, {
    after: async (f) => {
      const ticket = await f.newSessionTicket();
      psk = ticket.psk;
      await f.rc.send(CT.handshake, ticket.message);
    },
  });
  return outcome === "ok" && psk ? psk : `issuing the ticket: ${outcome}`;
}

/** Issues a ticket, then answers the next connection's PSK offer as `script` says. */
function resumption(
  script: (psk: Uint8Array) => ServerScript,
): (ctx: Ctx) => Promise<Outcome> {
  return async (ctx) => {
    const psk = await issueTicket(ctx);
    if (typeof psk === "string") return psk;
    return await serve(ctx, script(psk));
  };
}

/** A resumed server flight: EncryptedExtensions and Finished, nothing else. */
const resumedFlight = async (f: ServerFlow) => {
  const messages = [f.encryptedExtensions()];
  messages.push(await f.finished(messages));
  return messages;
};
const selectPsk = (identity: number) => (sh: ServerHelloSpec) =>
  void sh.extensions.push(ext(EXT.pre_shared_key, u16(identity)));

add(
  row(
    "4.2.11",
    "ok",
    "the client resumes with our ticket: no certificates",
    resumption((psk) => ({
      hello: (sh, f) => {
        ok(findExt(f.clientHello!.extensions, EXT.pre_shared_key), "the client offers the ticket");
        equal(f.clientHello!.extensions.at(-1)!.type, EXT.pre_shared_key);
        selectPsk(0)(sh);
      },
      sendServerHello: (f, sh) => f.sendServerHello(sh, { psk }),
      flight: resumedFlight,
    })),
  ),
  row(
    "4.2.11",
    "illegal_parameter",
    "selected_identity out of range",
    resumption((psk) => ({
      refusesServerHello: true,
      hello: selectPsk(1),
      sendServerHello: (f, sh) => f.sendServerHello(sh, { psk }),
      flight: resumedFlight,
    })),
  ),
  row(
    "4.2.11",
    "illegal_parameter",
    "resumption under a suite of another hash",
    resumption((psk) => ({
      refusesServerHello: true,
      hello: (sh) => {
        sh.suite = SUITES.aes128;
        selectPsk(0)(sh);
      },
      sendServerHello: (f, sh) => f.sendServerHello(sh, { psk }),
      flight: resumedFlight,
    })),
  ),
  row(
    "4.4.2",
    "unexpected_message",
    "a Certificate in a resumed handshake",
    resumption((psk) => ({
      hello: selectPsk(0),
      sendServerHello: (f, sh) => f.sendServerHello(sh, { psk }),
      flight: async (f) => {
        const messages = [f.encryptedExtensions(), f.certificate()];
        messages.push(await f.finished(messages));
        return messages;
      },
    })),
  ),
  row("4.2.11", "ok", "the server declines the ticket: a full handshake", resumption(() => ({}))),
);

Deno.test({
  name: "RFC 8446 conformance: qsign connect against a malicious server",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    await using dir = await tempDir();
    const [pki, stranger] = await Promise.all([
      makePki(`${dir.path}/pki`, "mldsa65"),
      makePki(`${dir.path}/stranger`, "mldsa65"),
    ]);
    const file = (name: string) => join(pki.dir, name);
    const forwarder = async (extra: string[]): Promise<Forwarder> => {
      const upstream = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const daemon = await Daemon.start([
        "--listen",
        "127.0.0.1:0",
        "--target",
        `127.0.0.1:${(upstream.addr as Deno.NetAddr).port}`,
        "--servername",
        "localhost",
        "--ca",
        file(PKI_FILES.rootCert),
        "--cert",
        file(PKI_FILES.clientCert),
        "--key",
        file(PKI_FILES.clientKey),
        "--handshake-timeout",
        "8s",
        ...extra,
      ], { command: "connect", readyEvent: "listening" });
      return { daemon, port: daemon.port(), upstream };
    };
    const [compat, plain] = await Promise.all([
      forwarder([]),
      forwarder(["--no-middlebox-compat"]),
    ]);
    try {
      await runTable(t, rows, { pki, stranger, compat, plain }, { batch: 1 });
    } finally {
      for (const fw of [compat, plain]) {
        fw.upstream.close();
        await fw.daemon.stop("SIGKILL");
      }
    }
  },
});
