/**
 * RFC 8446 conformance of `qsign serve` (a real daemon process, one for the whole table): each
 * row drives it with the raw TLS 1.3 client of flow.ts and checks the alert it answers with,
 * or that the handshake completes. Sections: §4 handshake and extensions, §5 record layer,
 * §6 alerts, Appendix D compatibility. See docs/conformance.md.
 */
import { equal, ok } from "node:assert/strict";
import { join } from "node:path";
import { PKI_FILES } from "../../src/pki/ca.ts";
import { GROUPS } from "../../src/tls/groups.ts";
import { nextTrafficSecret } from "../../src/tls/key_schedule.ts";
import { Daemon } from "../daemon/support.ts";
import { tempDir } from "../support/env.ts";
import { makePki, type TestPki } from "../tls/support/pki.ts";
import {
  certificateMessage,
  ClientFlow,
  type ClientHelloSpec,
  GROUP,
  type HelloOptions,
  keyShareClient,
  SCHEME,
  SUITES,
  type Ticket,
} from "./flow.ts";
import { type Outcome, type Row, row, runTable } from "./table.ts";
import {
  ALERT,
  concatBytes,
  CT,
  EXT,
  type Ext,
  ext,
  findExt,
  handshake,
  HS,
  out,
  record,
  u16List,
} from "./wire.ts";

interface Ctx {
  port: number;
  pki: TestPki;
  stranger: TestPki;
  daemon: Daemon;
}

/** A case that changes the usual handshake at its named points; any alert ends it. */
interface Script {
  options?: HelloOptions;
  hello?: (spec: ClientHelloSpec, c: ClientFlow) => void | Promise<void>;
  /** Sends the first ClientHello its own way (fragments, records around it…). */
  sendHello?: (c: ClientFlow, spec: ClientHelloSpec) => Promise<void>;
  retry?: (spec: ClientHelloSpec, c: ClientFlow) => void | Promise<void>;
  sendRetry?: (c: ClientFlow, spec: ClientHelloSpec) => Promise<void>;
  /** Before our flight (read keys are the server's handshake keys; writes still plaintext). */
  beforeFlight?: (c: ClientFlow) => Promise<void>;
  ccs?: boolean;
  flight?: Parameters<ClientFlow["clientFlightMessages"]>[0];
  sendFlight?: (c: ClientFlow, messages: Uint8Array[]) => Promise<void>;
  /** After the handshake; a returned outcome ends the case, else an echo must work (`ok`). */
  after?: (c: ClientFlow) => Promise<Outcome | void>;
  /** Checks on a completed handshake (throw to fail). */
  check?: (c: ClientFlow) => void;
}

async function scenario(ctx: Ctx, s: Script): Promise<Outcome> {
  const c = await ClientFlow.open(ctx.port, ctx.pki.client);
  try {
    const spec = await c.defaultHello(s.options);
    await s.hello?.(spec, c);
    if (s.sendHello) await s.sendHello(c, spec);
    else await c.sendHello(spec);
    let sh = await c.readServerHello();
    if (sh.retry) {
      const spec2 = await c.retryHello(sh, (x) => s.retry?.(x, c));
      if (s.sendRetry) await s.sendRetry(c, spec2);
      else await c.sendHello(spec2);
      sh = await c.readServerHello();
      if (sh.retry) return "second HelloRetryRequest";
    }
    await c.handshakeKeys(s.options?.psk?.psk);
    await c.readServerFlight();
    await s.beforeFlight?.(c);
    await c.protectWrites(s.ccs ?? true);
    const messages = await c.clientFlightMessages(s.flight);
    if (s.sendFlight) await s.sendFlight(c, messages);
    else await c.sendClientFlight(messages);
    const after = await s.after?.(c);
    if (typeof after === "string") return after;
    await c.exchange();
    s.check?.(c);
    return "ok";
  } catch (e) {
    const ending = await c.rc.ending().catch(() => "timed out");
    const message = e instanceof Error ? e.message : String(e);
    // "closed" only when the server ended the stream, not when this side gave up.
    if (ending === "closed" && !message.includes('"eof"') && message !== STOPPED) {
      return `failed: ${message}`;
    }
    return ending;
  } finally {
    c.close();
  }
}

/** Thrown by a case that ends the conversation itself. */
const STOPPED = "stopped by the case";

const s = (script: Script) => (ctx: Ctx) => scenario(ctx, script);

/** Replaces (or, with `data` undefined, removes) extension `type` in a hello. */
function setExt(spec: ClientHelloSpec, type: number, data?: Uint8Array | number[]): void {
  const at = spec.extensions.findIndex((e) => e.type === type);
  if (data === undefined) {
    if (at >= 0) spec.extensions.splice(at, 1);
    return;
  }
  if (at >= 0) spec.extensions[at] = ext(type, data);
  else spec.extensions.push(ext(type, data));
}

const bytes = (...values: number[]) => Uint8Array.from(values);

/** A syntactically valid pre_shared_key for a ticket nobody issued. */
const fakePsk = (binders = 1) =>
  out((o) =>
    o.vec(2, (ids) => ids.vec(2, (t) => t.raw(new Uint8Array(40).fill(7))).u32(1000))
      .vec(2, (b) => {
        for (let i = 0; i < binders; i++) b.vec(1, (x) => x.raw(new Uint8Array(48)));
      })
  );

/** A fresh ticket from a full handshake. */
async function ticketFrom(ctx: Ctx): Promise<Ticket> {
  const c = await ClientFlow.open(ctx.port, ctx.pki.client);
  try {
    await c.handshake();
    await c.exchange();
    for (let i = 0; i < 3 && !c.tickets.length; i++) await c.exchange();
    if (!c.tickets.length) throw new Error("no NewSessionTicket");
    return c.tickets[0];
  } finally {
    c.close();
  }
}

/** A resumption attempt with a fresh ticket; `change` may break the hello. */
function resume(
  change?: (spec: ClientHelloSpec, ticket: Ticket) => void,
  options: { badBinder?: boolean; share?: number | null; expectResumed?: boolean } = {},
) {
  return async (ctx: Ctx): Promise<Outcome> => {
    const ticket = await ticketFrom(ctx);
    return await scenario(ctx, {
      options: {
        psk: ticket,
        share: options.share,
        groups: [GROUP.p384mlkem1024, GROUP.x25519mlkem768],
      },
      hello: (spec) => change?.(spec, ticket),
      sendHello: async (c, spec) => {
        // The binder goes at the end of the hello: only when pre_shared_key is last.
        const last = spec.extensions.at(-1)?.type === EXT.pre_shared_key;
        await c.sendHello(spec, {
          ticket: last ? ticket : undefined,
          badBinder: options.badBinder,
        });
      },
      sendRetry: async (c, spec) => {
        await c.sendHello(spec, { ticket });
      },
      check: (c) => {
        if (options.expectResumed !== undefined) equal(c.resumed, options.expectResumed);
      },
    });
  };
}

// ------------------------------------------------------------------ the rows

const rows: Row<Ctx>[] = [];
const add = (...r: Row<Ctx>[]) => rows.push(...r);

// §4.1.2, D.5: legacy_version and supported_versions.
for (const v of [0x0000, 0x0100, 0x0200, 0x0300]) {
  add(row(
    "D.5",
    "protocol_version",
    `legacy_version 0x${v.toString(16).padStart(4, "0")}`,
    s({
      hello: (spec) => void (spec.legacyVersion = v),
    }),
  ));
}
for (const v of [0x0301, 0x0302, 0x0303, 0x0304]) {
  add(row(
    "4.1.2",
    "ok",
    `legacy_version 0x${v.toString(16)} with supported_versions`,
    s({
      hello: (spec) => void (spec.legacyVersion = v),
    }),
  ));
}
add(
  row(
    "4.2.1",
    "protocol_version",
    "no supported_versions",
    s({
      hello: (spec) => setExt(spec, EXT.supported_versions),
    }),
  ),
  row(
    "4.1.2",
    "protocol_version",
    "no extensions at all (a TLS 1.2 ClientHello)",
    s({
      hello: (spec) => void (spec.extensions = []),
    }),
  ),
);
for (
  const [name, list, expect] of [
    ["only TLS 1.2", [0x0303], "protocol_version"],
    ["TLS 1.1 and 1.0", [0x0302, 0x0301], "protocol_version"],
    ["a TLS 1.3 draft", [0x7f1c], "protocol_version"],
    ["SSL 3.0", [0x0300], "protocol_version"],
    ["GREASE then TLS 1.3", [0x0a0a, 0x0304], "ok"],
    ["TLS 1.2 then 1.3", [0x0303, 0x0304], "ok"],
    ["1.3, 1.2, 1.1", [0x0304, 0x0303, 0x0302], "ok"],
  ] as [string, number[], string][]
) {
  add(row(
    "4.2.1",
    expect,
    `supported_versions: ${name}`,
    s({
      hello: (spec) => setExt(spec, EXT.supported_versions, u16List(list, 1)),
    }),
  ));
}
for (const v of [0x0100, 0x0300, 0x0301, 0x0303, 0xffff]) {
  add(row(
    "5.1",
    "ok",
    `ClientHello record legacy_record_version 0x${v.toString(16)} ignored`,
    s({
      sendHello: async (c, spec) => {
        const hello = await c.helloBytes(spec);
        c.transcript.add(hello);
        await c.rc.writeRaw(record(CT.handshake, hello, v));
      },
    }),
  ));
}

// §4.1.2: ClientHello fields.
add(
  row(
    "4.1.2",
    "illegal_parameter",
    "legacy_compression_methods [1]",
    s({
      hello: (spec) => void (spec.compression = [1]),
    }),
  ),
  row(
    "4.1.2",
    "illegal_parameter",
    "legacy_compression_methods [0, 1]",
    s({
      hello: (spec) => void (spec.compression = [0, 1]),
    }),
  ),
  row(
    "4.1.2",
    "decode_error",
    "legacy_compression_methods empty",
    s({
      hello: (spec) => void (spec.compression = []),
    }),
  ),
  row(
    "4.1.2",
    "decode_error",
    "legacy_session_id of 33 bytes",
    s({
      hello: (spec) => void (spec.sessionId = new Uint8Array(33)),
    }),
  ),
  row(
    "4.1.2",
    "ok",
    "legacy_session_id empty",
    s({
      hello: (spec) => void (spec.sessionId = new Uint8Array(0)),
    }),
  ),
  row(
    "4.1.2",
    "ok",
    "legacy_session_id of 1 byte",
    s({
      hello: (spec) => void (spec.sessionId = bytes(9)),
    }),
  ),
  row(
    "4.1.2",
    "decode_error",
    "cipher_suites empty",
    s({
      hello: (spec) => void (spec.suites = []),
    }),
  ),
  row(
    "4.1.2",
    "decode_error",
    "bytes after the extensions",
    s({
      hello: (spec) => void (spec.trailing = bytes(0)),
    }),
  ),
  row(
    "4.1.2",
    "decode_error",
    "ClientHello length field one short",
    s({
      sendHello: async (c, spec) => {
        const hello = await c.helloBytes(spec);
        const len = hello.length - 5;
        hello.set([len >> 16, len >> 8, len & 0xff], 1);
        await c.rc.writeRaw(record(CT.handshake, hello));
      },
    }),
  ),
);
for (
  const [name, suites, expect] of [
    ["only TLS_AES_128_CCM_SHA256 (no CCM)", [0x1304], "handshake_failure"],
    ["only TLS 1.2 suites", [0x009c, 0xc02f], "handshake_failure"],
    ["only TLS_AES_128_CCM_8_SHA256", [0x1305], "handshake_failure"],
    ["GREASE first", [0x0a0a, 0x1301], "ok"],
    ["renegotiation SCSV first", [0x00ff, 0x1301], "ok"],
    ["only ChaCha20-Poly1305", [0x1303], "ok"],
    ["only AES-128-GCM", [0x1301], "ok"],
    ["TLS_FALLBACK_SCSV with TLS 1.3", [0x5600, 0x1302], "ok"],
  ] as [string, number[], string][]
) {
  add(row(
    "4.1.2",
    expect,
    `cipher_suites: ${name}`,
    s({
      hello: (spec) => void (spec.suites = suites),
    }),
  ));
}

// §4.2: duplicates, order, unknown, misplaced and missing extensions.
const duplicable: [string, number][] = [
  ["supported_versions", EXT.supported_versions],
  ["supported_groups", EXT.supported_groups],
  ["key_share", EXT.key_share],
  ["signature_algorithms", EXT.signature_algorithms],
  ["server_name", EXT.server_name],
  ["psk_key_exchange_modes", EXT.psk_key_exchange_modes],
];
for (const [name, type] of duplicable) {
  add(row(
    "4.2",
    "illegal_parameter",
    `duplicate ${name}`,
    s({
      hello: (spec) => {
        const e = findExt(spec.extensions, type)!;
        spec.extensions.push(ext(type, e.data));
      },
    }),
  ));
}
const extraExtensions: [string, Ext][] = [
  ["unknown 0x1234", ext(0x1234, [])],
  ["unknown 0xfe00 with data", ext(0xfe00, [1, 2, 3])],
  ["GREASE 0x0a0a", ext(0x0a0a, [])],
  ["GREASE 0xfafa with data", ext(0xfafa, [0])],
  ["status_request", ext(EXT.status_request, [1, 0, 0, 0, 0])],
  ["signed_certificate_timestamp", ext(EXT.sct, [])],
  ["heartbeat", ext(EXT.heartbeat, [1])],
  ["max_fragment_length", ext(EXT.max_fragment_length, [4])],
  ["padding", ext(EXT.padding, new Uint8Array(100))],
  ["post_handshake_auth", ext(EXT.post_handshake_auth, [])],
  ["early_data without a PSK", ext(EXT.early_data, [])],
  ["client_certificate_type", ext(EXT.client_certificate_type, [1, 0])],
  ["server_certificate_type", ext(EXT.server_certificate_type, [1, 0])],
  ["certificate_authorities", ext(EXT.certificate_authorities, [0, 5, 0, 3, 0x30, 1, 0])],
  ["signature_algorithms_cert", ext(EXT.signature_algorithms_cert, u16List([0x0905]))],
  ["application_layer_protocol_negotiation", ext(EXT.alpn, [0, 3, 2, 0x68, 0x32])],
  ["record_size_limit 16385", ext(EXT.record_size_limit, [0x40, 0x01])],
  ["use_srtp", ext(EXT.use_srtp, [0, 2, 0, 1, 0])],
];
for (const [name, e] of extraExtensions) {
  add(row(
    "4.2",
    "ok",
    `${name} in ClientHello is served`,
    s({
      hello: (spec) => void spec.extensions.splice(1, 0, e),
    }),
  ));
  add(row(
    "4.2",
    "illegal_parameter",
    `duplicate ${name}`,
    s({
      hello: (spec) => void spec.extensions.splice(1, 0, e, e),
    }),
  ));
}
add(
  row(
    "4.2",
    "illegal_parameter",
    "oid_filters (CertificateRequest only) in ClientHello",
    s({
      hello: (spec) => setExt(spec, EXT.oid_filters, [0, 0]),
    }),
  ),
  row(
    "4.2",
    "ok",
    "extensions in reverse order",
    s({
      hello: (spec) => void spec.extensions.reverse(),
    }),
  ),
  row(
    "4.2",
    "ok",
    "key_share first",
    s({
      hello: (spec) => {
        const ks = findExt(spec.extensions, EXT.key_share)!;
        spec.extensions = [ks, ...spec.extensions.filter((e) => e !== ks)];
      },
    }),
  ),
  row(
    "4.2",
    "ok",
    "supported_versions last",
    s({
      hello: (spec) => {
        const v = findExt(spec.extensions, EXT.supported_versions)!;
        spec.extensions = [...spec.extensions.filter((e) => e !== v), v];
      },
    }),
  ),
  row(
    "4.2.11",
    "illegal_parameter",
    "pre_shared_key not the last extension",
    s({
      hello: (spec) => void spec.extensions.splice(1, 0, ext(EXT.pre_shared_key, fakePsk())),
    }),
  ),
  row(
    "9.2",
    "missing_extension",
    "no key_share",
    s({
      hello: (spec) => setExt(spec, EXT.key_share),
    }),
  ),
  row(
    "9.2",
    "missing_extension",
    "no supported_groups",
    s({
      hello: (spec) => setExt(spec, EXT.supported_groups),
    }),
  ),
  row(
    "9.2",
    "missing_extension",
    "neither supported_groups nor key_share",
    s({
      hello: (spec) => {
        setExt(spec, EXT.supported_groups);
        setExt(spec, EXT.key_share);
      },
    }),
  ),
  row(
    "9.2",
    "missing_extension",
    "no signature_algorithms (no PSK)",
    s({
      hello: (spec) => setExt(spec, EXT.signature_algorithms),
    }),
  ),
  row(
    "4.2.9",
    "missing_extension",
    "pre_shared_key without psk_key_exchange_modes",
    s({
      hello: (spec) => {
        setExt(spec, EXT.psk_key_exchange_modes);
        setExt(spec, EXT.pre_shared_key, fakePsk());
      },
    }),
  ),
  row(
    "4.2.11",
    "illegal_parameter",
    "two binders for one identity",
    s({
      hello: (spec) => setExt(spec, EXT.pre_shared_key, fakePsk(2)),
    }),
  ),
  row(
    "4.2.11",
    "ok",
    "a PSK no one issued: full handshake",
    s({
      hello: (spec) => setExt(spec, EXT.pre_shared_key, fakePsk()),
      check: (c) => equal(c.resumed, false),
    }),
  ),
);

// §4.2 bodies that do not parse: decode_error (RFC 8446 §6: "a message could not be parsed").
const malformed: [string, number, number[]][] = [
  ["supported_groups of odd length", EXT.supported_groups, [0, 3, 0x11, 0xed, 0]],
  ["supported_groups empty", EXT.supported_groups, [0, 0]],
  ["supported_groups with a trailing byte", EXT.supported_groups, [0, 2, 0x11, 0xed, 9]],
  ["key_share entry cut short", EXT.key_share, [0, 4, 0x11, 0xed, 0, 9]],
  ["key_share with an empty key_exchange", EXT.key_share, [0, 4, 0x11, 0xed, 0, 0]],
  ["key_share list overrunning the extension", EXT.key_share, [0, 9, 0x11, 0xed]],
  ["signature_algorithms of odd length", EXT.signature_algorithms, [0, 3, 9, 5, 9]],
  ["signature_algorithms empty", EXT.signature_algorithms, [0, 0]],
  ["signature_algorithms_cert of odd length", EXT.signature_algorithms_cert, [0, 1, 9]],
  ["supported_versions of odd length", EXT.supported_versions, [3, 3, 4, 3]],
  ["supported_versions empty", EXT.supported_versions, [0]],
  ["server_name list empty", EXT.server_name, [0, 0]],
  ["server_name with a space", EXT.server_name, [0, 6, 0, 0, 3, 0x61, 0x20, 0x62]],
  ["server_name cut short", EXT.server_name, [0, 6, 0, 0, 9, 0x61]],
  ["ALPN list empty", EXT.alpn, [0, 0]],
  ["ALPN with an empty protocol name", EXT.alpn, [0, 1, 0]],
  ["psk_key_exchange_modes empty", EXT.psk_key_exchange_modes, [0]],
  ["record_size_limit of 3 bytes", EXT.record_size_limit, [0, 64, 0]],
  ["cookie empty", EXT.cookie, [0, 0]],
  ["pre_shared_key without identities", EXT.pre_shared_key, [0, 0, 0, 0]],
];
for (const [name, type, data] of malformed) {
  add(row("4.2", "decode_error", name, s({ hello: (spec) => setExt(spec, type, data) })));
}
add(
  row(
    "4.2",
    "decode_error",
    "extension length overrunning the block",
    s({
      hello: (spec) => void (spec.trailing = bytes(0, 9, 0, 4)),
    }),
  ),
  row(
    "4.2 (RFC 6066 §3)",
    "illegal_parameter",
    "two host names in server_name",
    s({
      hello: (spec) => setExt(spec, EXT.server_name, [0, 8, 0, 0, 1, 0x61, 0, 0, 1, 0x62]),
    }),
  ),
  row(
    "4.2 (RFC 8449 §4)",
    "illegal_parameter",
    "record_size_limit 63",
    s({
      hello: (spec) => setExt(spec, EXT.record_size_limit, [0, 63]),
    }),
  ),
  row(
    "4.2 (RFC 8449 §4)",
    "ok",
    "record_size_limit 64: every record of the server fits",
    s({
      hello: (spec) => setExt(spec, EXT.record_size_limit, [0, 64]),
      // 64 bytes of TLSInnerPlaintext (content type included) and the 16-byte tag.
      check: (c) => ok(c.rc.largestProtected <= 80, `a record of ${c.rc.largestProtected} bytes`),
    }),
  ),
);

// §4.2.7, §4.2.8: groups and key shares.
add(
  row(
    "4.2.8",
    "illegal_parameter",
    "a share for a group not in supported_groups",
    s({
      options: { groups: [GROUP.x25519mlkem768], share: GROUP.p384mlkem1024 },
    }),
  ),
  row(
    "4.2.8",
    "illegal_parameter",
    "two shares for the same group",
    s({
      hello: (spec, c) => {
        const share = c.share!.share;
        setExt(
          spec,
          EXT.key_share,
          keyShareClient([{ group: GROUP.p384mlkem1024, key: share }, {
            group: GROUP.p384mlkem1024,
            key: share,
          }]),
        );
      },
    }),
  ),
  row(
    "4.2.8",
    "illegal_parameter",
    "a share of the wrong length",
    s({
      hello: (spec, c) =>
        setExt(
          spec,
          EXT.key_share,
          keyShareClient([{ group: GROUP.p384mlkem1024, key: c.share!.share.subarray(1) }]),
        ),
    }),
  ),
  row("4.2.8", "ok", "an empty key_share: HelloRetryRequest", s({ options: { share: null } })),
  row(
    "4.2.8",
    "ok",
    "shares for two groups, the server's first choice second",
    s({
      hello: async (spec, c) => {
        const extra = await groupOf(GROUP.x25519mlkem768).generateShare();
        setExt(
          spec,
          EXT.key_share,
          keyShareClient([{ group: GROUP.x25519mlkem768, key: extra.share }, {
            group: GROUP.p384mlkem1024,
            key: c.share!.share,
          }]),
        );
      },
    }),
  ),
  row(
    "4.2.7",
    "ok",
    "GREASE among supported_groups",
    s({
      options: { groups: [0x0a0a, GROUP.p384mlkem1024] },
    }),
  ),
  row(
    "4.2.7 (qsign: post-quantum only)",
    "insufficient_security",
    "only x25519",
    s({
      options: { groups: [GROUP.x25519], share: GROUP.x25519 },
    }),
  ),
  row(
    "4.2.7 (qsign: no FFDHE)",
    "insufficient_security",
    "only ffdhe2048",
    s({
      options: { groups: [0x0100], share: null },
    }),
  ),
  row(
    "4.2.7",
    "ok",
    "X25519MLKEM768 only",
    s({
      options: { groups: [GROUP.x25519mlkem768], share: GROUP.x25519mlkem768 },
    }),
  ),
  row(
    "4.2.7",
    "ok",
    "MLKEM1024 only",
    s({
      options: { groups: [GROUP.mlkem1024], share: GROUP.mlkem1024 },
    }),
  ),
  row(
    "4.2.3",
    "handshake_failure",
    "only rsa_pkcs1_sha256 (not for TLS 1.3 handshakes)",
    s({
      options: { schemes: [SCHEME.rsa_pkcs1_256] },
    }),
  ),
  row(
    "4.2.3",
    "handshake_failure",
    "only schemes the server's key cannot make",
    s({
      options: { schemes: [SCHEME.ecdsa_p256, SCHEME.ed25519] },
    }),
  ),
  row(
    "4.2.3",
    "ok",
    "GREASE among signature_algorithms",
    s({
      options: { schemes: [0x0a0a, SCHEME.mldsa65] },
    }),
  ),
  row(
    "4.4.2.2",
    "ok",
    "server_name of another host: the one certificate",
    s({
      options: { serverName: "other.example" },
    }),
  ),
  row(
    "4.2",
    "ok",
    "no server_name: EncryptedExtensions answers none",
    s({
      options: { serverName: null },
    }),
  ),
);

add(row(
  "4.2.7 (qsign: post-quantum only)",
  "insufficient_security",
  "x448, secp521r1, ffdhe2048 and GREASE only: the log names each group, scheme and suite",
  async (ctx) => {
    const c = await ClientFlow.open(ctx.port, ctx.pki.client);
    try {
      const spec = await c.defaultHello({
        groups: [0x001e, 0x0019, 0x0100, 0x0a0a],
        share: null,
        schemes: [0x0603, 0x0a0a, 0x0808, 0x0806, 0x0201],
      });
      spec.suites = [0x2a2a, 0x1304, 0x1302];
      await c.sendHello(spec);
      const ending = await c.rc.ending();
      const port = (c.rc.conn.localAddr as Deno.NetAddr).port;
      const event = await ctx.daemon.waitFor((e) =>
        e.event === "handshake_failed" && String(e.peer).endsWith(`:${port}`)
      );
      const offer = event.client_offer as Record<string, string[]>;
      equal(offer.groups.join(), "x448,secp521r1,ffdhe2048,grease");
      equal(
        offer.signature_schemes.join(),
        "ecdsa_secp521r1_sha512,grease,ed448,rsa_pss_rsae_sha512,rsa_pkcs1_sha1",
      );
      equal(offer.cipher_suites.join(), "grease,TLS_AES_128_CCM_SHA256,TLS_AES_256_GCM_SHA384");
      return ending;
    } finally {
      c.close();
    }
  },
));

// §5, D.4: change_cipher_spec.
const ccs = (c: ClientFlow, body = bytes(1)) => c.rc.writeRaw(record(CT.ccs, body));
add(
  row(
    "5",
    "unexpected_message",
    "change_cipher_spec before the ClientHello",
    s({
      sendHello: async (c, spec) => {
        await ccs(c);
        await c.sendHello(spec);
      },
    }),
  ),
  row("D.4", "ok", "change_cipher_spec after the ClientHello is dropped", s({})),
  row("D.4", "ok", "no change_cipher_spec at all", s({ ccs: false })),
  row(
    "5",
    "ok",
    "three change_cipher_spec records",
    s({
      beforeFlight: async (c) => {
        await ccs(c);
        await ccs(c);
      },
    }),
  ),
  row(
    "5",
    "unexpected_message",
    "change_cipher_spec of value 2",
    s({
      beforeFlight: (c) => ccs(c, bytes(2)).then(() => {}),
    }),
  ),
  row(
    "5",
    "unexpected_message",
    "empty change_cipher_spec",
    s({
      beforeFlight: (c) => ccs(c, bytes()).then(() => {}),
    }),
  ),
  row(
    "5",
    "unexpected_message",
    "change_cipher_spec of two bytes",
    s({
      beforeFlight: (c) => ccs(c, bytes(1, 1)).then(() => {}),
    }),
  ),
  row(
    "5.1",
    "unexpected_message",
    "change_cipher_spec between ClientHello fragments",
    s({
      sendHello: async (c, spec) => {
        const hello = await c.helloBytes(spec);
        await c.rc.writeRaw(concatBytes(
          record(CT.handshake, hello.subarray(0, 100)),
          record(CT.ccs, bytes(1)),
          record(CT.handshake, hello.subarray(100)),
        ));
      },
    }),
  ),
  row(
    "5.1",
    "unexpected_message",
    "change_cipher_spec between fragments of our Certificate",
    s({
      sendFlight: async (c, messages) => {
        const all = concatBytes(...messages);
        await c.rc.writeRaw(concatBytes(
          await c.rc.encode(CT.handshake, all.subarray(0, 50)),
          record(CT.ccs, bytes(1)),
          await c.rc.encode(CT.handshake, all.subarray(50)),
        ));
      },
    }),
  ),
  row(
    "5",
    "unexpected_message",
    "a protected change_cipher_spec",
    s({
      sendFlight: async (c, messages) => {
        await c.rc.send(CT.ccs, bytes(1));
        await c.sendClientFlight(messages);
      },
    }),
  ),
  row(
    "5",
    "unexpected_message",
    "change_cipher_spec after the handshake",
    s({
      after: async (c) => {
        await c.exchange();
        await ccs(c);
      },
    }),
  ),
  row(
    "D.4",
    "ok",
    "the server sends one change_cipher_spec right after ServerHello",
    s({
      check: (c) => equal(c.rc.ccsAfter.join(), "1"),
    }),
  ),
  row(
    "D.4",
    "ok",
    "no change_cipher_spec for an empty legacy_session_id",
    s({
      options: { sessionId: new Uint8Array(0) },
      check: (c) => equal(c.rc.ccsAfter.length, 0),
    }),
  ),
  row(
    "D.4",
    "ok",
    "after a HelloRetryRequest: one change_cipher_spec, after it",
    s({
      options: { share: GROUP.x25519mlkem768 },
      check: (c) => equal(c.rc.ccsAfter.join(), "1"),
    }),
  ),
  row(
    "D.4",
    "ok",
    "our change_cipher_spec between HelloRetryRequest and ClientHello2",
    s({
      options: { share: GROUP.x25519mlkem768 },
      sendRetry: async (c, spec) => {
        await ccs(c);
        await c.sendHello(spec);
      },
      ccs: false,
    }),
  ),
);

// §5.1, §5.2, §5.4: records.
for (const type of [0, 19, 24, 25, 255]) {
  add(row(
    "5",
    "unexpected_message",
    `record of unknown type ${type}`,
    s({
      sendHello: (c) => c.rc.writeRaw(record(type, bytes(1, 2, 3))).then(() => {}),
    }),
  ));
}
add(
  row(
    "5.1",
    "record_overflow",
    "plaintext record of 2^14 + 1 bytes",
    s({
      sendHello: (c) => c.rc.writeRaw(record(CT.handshake, new Uint8Array(16385))).then(() => {}),
    }),
  ),
  row(
    "5.2",
    "record_overflow",
    "record of 2^14 + 256 + 1 bytes",
    s({
      sendHello: (c) => c.rc.writeRaw(record(CT.handshake, new Uint8Array(16641))).then(() => {}),
    }),
  ),
  row(
    "5.2",
    "record_overflow",
    "protected record of 2^14 + 256 + 1 bytes",
    s({
      after: async (c) => {
        await c.rc.writeRaw(record(CT.data, new Uint8Array(16641)));
      },
    }),
  ),
  row(
    "5.4",
    "record_overflow",
    "inner plaintext of 2^14 + 2 bytes",
    s({
      after: async (c) => {
        await c.rc.send(CT.data, new Uint8Array(16384), { padding: 1 });
      },
    }),
  ),
  row(
    "5.4",
    "ok",
    "inner plaintext of exactly 2^14 + 1 bytes",
    s({
      after: async (c) => {
        await c.rc.send(CT.data, new Uint8Array(16384));
        await c.exchange();
      },
    }),
  ),
  row(
    "5.1",
    "unexpected_message",
    "empty plaintext handshake record",
    s({
      sendHello: (c) => c.rc.writeRaw(record(CT.handshake, bytes())).then(() => {}),
    }),
  ),
  row(
    "5.1",
    "unexpected_message",
    "empty plaintext alert record",
    s({
      sendHello: (c) => c.rc.writeRaw(record(CT.alert, bytes())).then(() => {}),
    }),
  ),
  row(
    "5.1",
    "unexpected_message",
    "empty protected handshake record",
    s({
      after: async (c) => {
        await c.rc.send(CT.handshake, bytes());
      },
    }),
  ),
  row(
    "5.1",
    "ok",
    "empty protected application data record",
    s({
      after: async (c) => {
        await c.rc.send(CT.data, bytes());
      },
    }),
  ),
  row(
    "5",
    "unexpected_message",
    "application data before the ClientHello",
    s({
      sendHello: (c) => c.rc.writeRaw(record(CT.data, bytes(1, 2))).then(() => {}),
    }),
  ),
  row(
    "5",
    "unexpected_message",
    "protected application data before our Finished",
    s({
      sendFlight: async (c, messages) => {
        await c.rc.send(CT.data, bytes(1, 2, 3));
        await c.sendClientFlight(messages);
      },
    }),
  ),
  row(
    "5.2",
    "bad_record_mac",
    "a flipped bit in a protected record",
    s({
      after: async (c) => {
        const rec = await c.rc.encode(CT.data, bytes(1, 2, 3));
        rec[7] ^= 1;
        await c.rc.writeRaw(rec);
      },
    }),
  ),
  row(
    "5.2",
    "bad_record_mac",
    "a protected record shorter than its tag",
    s({
      after: async (c) => {
        await c.rc.writeRaw(record(CT.data, new Uint8Array(10)));
      },
    }),
  ),
  row(
    "5.3",
    "bad_record_mac",
    "a protected record replayed (sequence number)",
    s({
      after: async (c) => {
        const rec = await c.rc.encode(CT.data, bytes(1, 2, 3));
        await c.rc.writeRaw(concatBytes(rec, rec));
        return await c.rc.ending();
      },
    }),
  ),
  row(
    "5.2",
    "ok",
    "protected record with legacy_record_version 0x0301",
    s({
      after: async (c) => {
        await c.rc.send(CT.data, bytes(0x41), { version: 0x0301 });
      },
    }),
  ),
  row(
    "5.2",
    "unexpected_message",
    "a plaintext Finished after the keys changed",
    s({
      sendFlight: async (c, messages) => {
        await c.rc.writeRaw(record(CT.handshake, concatBytes(...messages)));
      },
    }),
  ),
  row(
    "5.4",
    "unexpected_message",
    "inner plaintext of zeros only",
    s({
      after: async (c) => {
        await c.rc.send(CT.data, bytes(), { innerType: 0, padding: 8 });
      },
    }),
  ),
);
for (const [inner, name] of [[0x99, "0x99"], [24, "heartbeat (24)"], [19, "19"], [25, "25"]]) {
  add(row(
    "5.2",
    "unexpected_message",
    `inner content type ${name}`,
    s({
      after: async (c) => {
        await c.rc.send(CT.data, handshake(HS.key_update, bytes(1)), {
          innerType: inner as number,
        });
      },
    }),
  ));
}
for (const padding of [1, 200, 16000]) {
  add(row(
    "5.4",
    "ok",
    `application data with ${padding} bytes of padding`,
    s({
      after: async (c) => {
        await c.rc.send(CT.data, bytes(0x68, 0x69), { padding });
      },
    }),
  ));
}
add(row(
  "5.4",
  "ok",
  "our Finished padded to 1000 bytes",
  s({
    sendFlight: async (c, messages) => {
      await c.rc.send(CT.handshake, concatBytes(...messages), { padding: 1000 });
      await c.enterApplicationKeys();
    },
  }),
));

// §5.1: fragmentation and coalescing of handshake messages.
for (const size of [1, 3, 5, 100]) {
  add(row(
    "5.1",
    "ok",
    `ClientHello in records of ${size} bytes`,
    s({
      sendHello: async (c, spec) => {
        await c.sendHello(spec, { fragment: size });
      },
    }),
  ));
}
add(
  row(
    "5.1",
    "ok",
    "our flight in records of 7 bytes",
    s({
      sendFlight: (c, messages) => c.sendClientFlight(messages, 7),
    }),
  ),
  row(
    "5.1",
    "ok",
    "our flight one message per record",
    s({
      sendFlight: async (c, messages) => {
        for (const m of messages) await c.rc.send(CT.handshake, m);
        await c.enterApplicationKeys();
      },
    }),
  ),
  row(
    "5.1",
    "unexpected_message",
    "ClientHello and a Finished in one record (straddles keys)",
    s({
      sendHello: async (c, spec) => {
        const hello = await c.helloBytes(spec);
        c.transcript.add(hello);
        await c.rc.writeRaw(
          record(CT.handshake, concatBytes(hello, handshake(HS.finished, new Uint8Array(48)))),
        );
      },
    }),
  ),
  row(
    "5.1",
    "unexpected_message",
    "application data between ClientHello fragments",
    s({
      sendHello: async (c, spec) => {
        const hello = await c.helloBytes(spec);
        await c.rc.writeRaw(concatBytes(
          record(CT.handshake, hello.subarray(0, 60)),
          record(CT.data, bytes(1)),
          record(CT.handshake, hello.subarray(60)),
        ));
      },
    }),
  ),
  row(
    "5.1",
    "unexpected_message",
    "an alert between ClientHello fragments",
    s({
      sendHello: async (c, spec) => {
        const hello = await c.helloBytes(spec);
        await c.rc.writeRaw(concatBytes(
          record(CT.handshake, hello.subarray(0, 60)),
          record(CT.alert, bytes(1, 90)),
          record(CT.handshake, hello.subarray(60)),
        ));
      },
    }),
  ),
  row(
    "5.1",
    "unexpected_message",
    "our Finished and a KeyUpdate in one record (straddles keys)",
    s({
      sendFlight: async (c, messages) => {
        await c.rc.send(CT.handshake, concatBytes(...messages, handshake(HS.key_update, bytes(0))));
        await c.enterApplicationKeys();
      },
    }),
  ),
  row(
    "5.1",
    "ok",
    "a KeyUpdate split over two records",
    s({
      after: async (c) => {
        const ku = handshake(HS.key_update, bytes(0));
        await c.rc.send(CT.handshake, ku.subarray(0, 2));
        await c.rc.send(CT.handshake, ku.subarray(2));
        await c.rc.setWriteKeys(c.suite!, c.appSecrets!.client = await nextKey(c));
      },
    }),
  ),
);

// §4.1.1, §4.4: messages in the wrong place, and the client's authentication.
const firstMessages: [string, number][] = [
  ["ServerHello", HS.server_hello],
  ["NewSessionTicket", HS.new_session_ticket],
  ["EndOfEarlyData", HS.end_of_early_data],
  ["EncryptedExtensions", HS.encrypted_extensions],
  ["Certificate", HS.certificate],
  ["CertificateRequest", HS.certificate_request],
  ["CertificateVerify", HS.certificate_verify],
  ["Finished", HS.finished],
  ["KeyUpdate", HS.key_update],
  ["message_hash", HS.message_hash],
  ["unknown type 99", 99],
];
for (const [name, type] of firstMessages) {
  add(row(
    "4",
    "unexpected_message",
    `${name} instead of ClientHello`,
    s({
      sendHello: (c) =>
        c.rc.writeRaw(record(CT.handshake, handshake(type, bytes(0, 0)))).then(() => {}),
    }),
  ));
}
const inFlight = (build: (m: Uint8Array[]) => Uint8Array[]) => ({
  sendFlight: async (c: ClientFlow, messages: Uint8Array[]) => {
    await c.rc.send(CT.handshake, concatBytes(...build(messages)));
    await c.enterApplicationKeys();
  },
});
add(
  row(
    "4.4.2",
    "unexpected_message",
    "Finished without the requested Certificate",
    s(inFlight((m) => [m[2]])),
  ),
  row(
    "4.4.3",
    "unexpected_message",
    "Certificate then Finished, no CertificateVerify",
    s(inFlight((m) => [m[0], m[2]])),
  ),
  row(
    "4.4.3",
    "unexpected_message",
    "CertificateVerify before Certificate",
    s(inFlight((m) => [m[1], m[0], m[2]])),
  ),
  row(
    "4.5",
    "unexpected_message",
    "EndOfEarlyData without early data",
    s(inFlight((m) => [handshake(HS.end_of_early_data, bytes()), ...m])),
  ),
  row(
    "4.1.2",
    "unexpected_message",
    "a second ClientHello in our flight",
    s({
      sendFlight: async (c, messages) => {
        await c.rc.send(CT.handshake, encodeHelloAgain(c));
        await c.sendClientFlight(messages);
      },
    }),
  ),
  row(
    "4.6.3",
    "unexpected_message",
    "KeyUpdate before our Finished",
    s(inFlight((m) => [handshake(HS.key_update, bytes(0)), ...m])),
  ),
  row("4.4.2.4", "certificate_required", "an empty Certificate", s({ flight: { chain: [] } })),
  row(
    "4.4.2",
    "illegal_parameter",
    "Certificate with a request context",
    s({
      flight: { certificate: certificateMessage([new Uint8Array(4)], { context: bytes(1) }) },
    }),
  ),
  row(
    "4.4.2.4",
    "bad_certificate",
    "a certificate that is not DER",
    s({
      flight: { chain: [bytes(0x30, 3, 1, 2, 3)], skipVerify: true },
    }),
  ),
  row(
    "4.4.2",
    "decode_error",
    "Certificate with a trailing byte",
    s({
      sendFlight: async (c, messages) => {
        const bad = handshake(HS.certificate, concatBytes(messages[0].subarray(4), bytes(0)));
        await c.rc.send(CT.handshake, concatBytes(bad, ...messages.slice(1)));
        await c.enterApplicationKeys();
      },
    }),
  ),
  row(
    "4.4.2",
    "unsupported_extension",
    "status_request in our certificate entry (not requested)",
    s({
      sendFlight: async (c, messages) => {
        const cert = certificateMessage(c.client.chain, {
          entryExtensions: [ext(EXT.status_request, [1, 0, 0, 0, 0])],
        });
        await c.rc.send(CT.handshake, concatBytes(cert, ...messages.slice(1)));
        await c.enterApplicationKeys();
      },
    }),
  ),
  row(
    "4.4.2",
    "unsupported_extension",
    "an unknown extension in our certificate entry",
    s({
      sendFlight: async (c, messages) => {
        const cert = certificateMessage(c.client.chain, { entryExtensions: [ext(0x1234, [])] });
        await c.rc.send(CT.handshake, concatBytes(cert, ...messages.slice(1)));
        await c.enterApplicationKeys();
      },
    }),
  ),
  row(
    "4.2",
    "illegal_parameter",
    "oid_filters in our certificate entry",
    s({
      sendFlight: async (c, messages) => {
        const cert = certificateMessage(c.client.chain, {
          entryExtensions: [ext(EXT.oid_filters, [0, 0])],
        });
        await c.rc.send(CT.handshake, concatBytes(cert, ...messages.slice(1)));
        await c.enterApplicationKeys();
      },
    }),
  ),
  row(
    "4.4.2.4",
    "unknown_ca",
    "a chain from a CA the server does not trust",
    (ctx) => scenario(ctx, { flight: { chain: ctx.stranger.client.chain } }),
  ),
  row(
    "4.4.3",
    "illegal_parameter",
    "CertificateVerify with rsa_pkcs1_sha256",
    s({
      flight: { scheme: SCHEME.rsa_pkcs1_256 },
    }),
  ),
  row(
    "4.4.3",
    "illegal_parameter",
    "CertificateVerify with a scheme of another key type",
    s({
      flight: { scheme: SCHEME.ecdsa_p384 },
    }),
  ),
  row(
    "4.4.3",
    "illegal_parameter",
    "CertificateVerify with an unknown scheme",
    s({
      flight: { scheme: 0x1234 },
    }),
  ),
  row(
    "4.4.3",
    "decrypt_error",
    "CertificateVerify that does not verify",
    s({
      flight: { signature: (sig) => (sig[5] ^= 1, sig) },
    }),
  ),
  row(
    "4.4.3",
    "decode_error",
    "CertificateVerify with an empty signature",
    s({
      flight: { signature: () => bytes() },
    }),
  ),
  row(
    "4.4.4",
    "decrypt_error",
    "Finished that does not verify",
    s({
      flight: { finished: (v) => (v[0] ^= 1, v) },
    }),
  ),
  row(
    "4.4.4",
    "decode_error",
    "Finished one byte short",
    s({
      flight: { finished: (v) => v.subarray(1) },
    }),
  ),
  row(
    "4.4.4",
    "decode_error",
    "Finished one byte long",
    s({
      flight: { finished: (v) => concatBytes(v, bytes(0)) },
    }),
  ),
  row("4.4.4", "decode_error", "empty Finished", s({ flight: { finished: () => bytes() } })),
  row(
    "4.4.4",
    "decode_error",
    "Finished of SHA-256 length under a SHA-384 suite",
    s({
      flight: { finished: (v) => v.subarray(0, 32) },
    }),
  ),
);

// §4.1.2, §4.1.4: HelloRetryRequest and the second ClientHello.
const retry = (change: (spec: ClientHelloSpec, c: ClientFlow) => void | Promise<void>) =>
  s({ options: { share: GROUP.x25519mlkem768 }, retry: change });
add(
  row(
    "4.1.4",
    "ok",
    "HelloRetryRequest for the server's group, with a cookie",
    s({
      options: { share: GROUP.x25519mlkem768 },
      check: (c) =>
        ok(findExt(c.hello!.extensions, EXT.cookie), "the HelloRetryRequest had a cookie"),
    }),
  ),
  row(
    "4.2.2",
    "illegal_parameter",
    "second ClientHello without the cookie",
    retry((spec) => setExt(spec, EXT.cookie)),
  ),
  row(
    "4.2.2",
    "illegal_parameter",
    "second ClientHello with another cookie",
    retry((spec) => setExt(spec, EXT.cookie, [0, 2, 1, 2])),
  ),
  row(
    "4.2.8",
    "illegal_parameter",
    "second ClientHello sharing the first group again",
    retry(async (spec) => {
      const g = groupOf(GROUP.x25519mlkem768);
      setExt(
        spec,
        EXT.key_share,
        keyShareClient([{ group: g.id, key: (await g.generateShare()).share }]),
      );
    }),
  ),
  row(
    "4.2.8",
    "illegal_parameter",
    "second ClientHello with two shares",
    retry(async (spec, c) => {
      const g = groupOf(GROUP.x25519mlkem768);
      setExt(
        spec,
        EXT.key_share,
        keyShareClient([
          { group: GROUP.p384mlkem1024, key: c.share!.share },
          { group: g.id, key: (await g.generateShare()).share },
        ]),
      );
    }),
  ),
  row(
    "4.2.8",
    "illegal_parameter",
    "second ClientHello with an empty key_share",
    retry((spec) => setExt(spec, EXT.key_share, [0, 0])),
  ),
  row(
    "4.1.2",
    "illegal_parameter",
    "second ClientHello with another random",
    retry((spec) => void (spec.random = new Uint8Array(32).fill(1))),
  ),
  row(
    "4.1.2",
    "illegal_parameter",
    "second ClientHello with another legacy_session_id",
    retry((spec) => void (spec.sessionId = new Uint8Array(32).fill(2))),
  ),
  row(
    "4.1.2",
    "illegal_parameter",
    "second ClientHello with the suites reordered",
    retry((spec) => void spec.suites.reverse()),
  ),
  row(
    "4.1.2",
    "illegal_parameter",
    "second ClientHello with a suite less",
    retry((spec) => void spec.suites.pop()),
  ),
  row(
    "4.1.2",
    "illegal_parameter",
    "second ClientHello with legacy_version 0x0301",
    retry((spec) => void (spec.legacyVersion = 0x0301)),
  ),
  row(
    "4.1.2",
    "illegal_parameter",
    "second ClientHello with supported_groups reordered",
    retry((spec) =>
      setExt(spec, EXT.supported_groups, u16List([GROUP.x25519mlkem768, GROUP.p384mlkem1024]))
    ),
  ),
  row(
    "4.1.2",
    "illegal_parameter",
    "second ClientHello with other signature_algorithms",
    retry((spec) => setExt(spec, EXT.signature_algorithms, u16List([SCHEME.mldsa65]))),
  ),
  row(
    "4.1.2",
    "illegal_parameter",
    "second ClientHello naming another server",
    retry((spec) => setExt(spec, EXT.server_name, [0, 6, 0, 0, 3, 0x61, 0x62, 0x63])),
  ),
  row(
    "4.1.2",
    "illegal_parameter",
    "second ClientHello adding ALPN",
    retry((spec) => setExt(spec, EXT.alpn, [0, 3, 2, 0x68, 0x32])),
  ),
  row(
    "4.1.2",
    "illegal_parameter",
    "second ClientHello dropping psk_key_exchange_modes",
    retry((spec) => setExt(spec, EXT.psk_key_exchange_modes)),
  ),
  row(
    "4.1.2",
    "illegal_parameter",
    "second ClientHello with two extensions swapped",
    retry((spec) => {
      const [a, b] = [spec.extensions[0], spec.extensions[1]];
      spec.extensions[0] = b;
      spec.extensions[1] = a;
    }),
  ),
  row(
    "4.1.2",
    "illegal_parameter",
    "second ClientHello adding record_size_limit",
    retry((spec) => setExt(spec, EXT.record_size_limit, [0x40, 0])),
  ),
  row(
    "4.1.2",
    "illegal_parameter",
    "second ClientHello with supported_versions changed",
    retry((spec) => setExt(spec, EXT.supported_versions, u16List([0x0304, 0x0303], 1))),
  ),
  row(
    "4.2.10",
    "illegal_parameter",
    "second ClientHello with early_data",
    retry((spec) => void spec.extensions.splice(1, 0, ext(EXT.early_data, []))),
  ),
  row(
    "4.2.11",
    "illegal_parameter",
    "second ClientHello adding a PSK",
    retry((spec) => setExt(spec, EXT.pre_shared_key, fakePsk())),
  ),
  row(
    "4.1.2 (RFC 7685)",
    "ok",
    "second ClientHello adding padding",
    retry((spec) => void spec.extensions.splice(1, 0, ext(EXT.padding, new Uint8Array(32)))),
  ),
  row(
    "4.1.4",
    "unexpected_message",
    "application data after the HelloRetryRequest",
    s({
      options: { share: GROUP.x25519mlkem768 },
      sendRetry: (c) => c.rc.writeRaw(record(CT.data, bytes(1))).then(() => {}),
    }),
  ),
  row(
    "4.1.4",
    "unexpected_message",
    "a Finished instead of the second ClientHello",
    s({
      options: { share: GROUP.x25519mlkem768 },
      sendRetry: (c) =>
        c.rc.writeRaw(record(CT.handshake, handshake(HS.finished, new Uint8Array(48)))).then(
          () => {},
        ),
    }),
  ),
  row(
    "5.1",
    "unexpected_message",
    "change_cipher_spec between fragments of ClientHello2",
    s({
      options: { share: GROUP.x25519mlkem768 },
      sendRetry: async (c, spec) => {
        const hello = await c.helloBytes(spec);
        await c.rc.writeRaw(concatBytes(
          record(CT.handshake, hello.subarray(0, 80)),
          record(CT.ccs, bytes(1)),
          record(CT.handshake, hello.subarray(80)),
        ));
      },
    }),
  ),
  row(
    "5.1",
    "ok",
    "second ClientHello in records of 50 bytes",
    s({
      options: { share: GROUP.x25519mlkem768 },
      sendRetry: async (c, spec) => {
        await c.sendHello(spec, { fragment: 50 });
      },
    }),
  ),
);

// §4.2.11, §4.6.1: resumption, PSKs and binders.
add(
  row(
    "4.2.11",
    "ok",
    "resumption with a ticket: no certificates",
    resume(undefined, { expectResumed: true }),
  ),
  row(
    "4.2.11.2",
    "decrypt_error",
    "a binder that does not verify",
    resume(undefined, { badBinder: true }),
  ),
  row(
    "4.2.11",
    "ok",
    "resumption after a HelloRetryRequest, binder recomputed",
    resume(undefined, { share: GROUP.x25519mlkem768, expectResumed: true }),
  ),
  row(
    "4.2.9",
    "ok",
    "a ticket offered for psk_ke only: full handshake",
    resume((spec) => setExt(spec, EXT.psk_key_exchange_modes, [1, 0]), { expectResumed: false }),
  ),
  row(
    "4.2.9",
    "missing_extension",
    "a ticket without psk_key_exchange_modes",
    resume((spec) => setExt(spec, EXT.psk_key_exchange_modes)),
  ),
  row(
    "4.2.11",
    "illegal_parameter",
    "a ticket whose pre_shared_key is not last",
    resume((spec) => {
      const psk = findExt(spec.extensions, EXT.pre_shared_key)!;
      spec.extensions = [psk, ...spec.extensions.filter((e) => e !== psk)];
    }),
  ),
  row(
    "4.6.1",
    "ok",
    "the server's NewSessionTicket: lifetime at most 7 days, fields well formed",
    async (ctx) => {
      await ticketFrom(ctx);
      return "ok";
    },
  ),
);

// §4.6: post-handshake messages and KeyUpdate.
add(
  row("4.6.3", "ok", "KeyUpdate update_not_requested", s({ after: (c) => c.keyUpdate(false) })),
  row(
    "4.6.3",
    "ok",
    "KeyUpdate update_requested: the server updates too",
    s({
      after: async (c) => {
        await c.keyUpdate(true);
        await c.exchange();
        equal(c.keyUpdatesReceived, 1);
      },
    }),
  ),
  row(
    "4.6.3",
    "ok",
    "three KeyUpdates in a row",
    s({
      after: async (c) => {
        for (let i = 0; i < 3; i++) await c.keyUpdate(false);
      },
    }),
  ),
  row(
    "4.6.3",
    "illegal_parameter",
    "KeyUpdate request_update 2",
    s({
      after: async (c) => {
        await c.rc.send(CT.handshake, handshake(HS.key_update, bytes(2)));
      },
    }),
  ),
  row(
    "4.6.3",
    "decode_error",
    "KeyUpdate of two bytes",
    s({
      after: async (c) => {
        await c.rc.send(CT.handshake, handshake(HS.key_update, bytes(0, 0)));
      },
    }),
  ),
  row(
    "4.6.3",
    "decode_error",
    "empty KeyUpdate",
    s({
      after: async (c) => {
        await c.rc.send(CT.handshake, handshake(HS.key_update, bytes()));
      },
    }),
  ),
  row(
    "4.6.3",
    "bad_record_mac",
    "data under the old key after our KeyUpdate",
    s({
      after: async (c) => {
        await c.rc.send(CT.handshake, handshake(HS.key_update, bytes(0)));
        await c.rc.send(CT.data, bytes(1));
      },
    }),
  ),
);

/**
 * The length the echo service names in its next reply (it answers each chunk it reads with one
 * line naming the chunk's length), skipping the NewSessionTickets that come first.
 */
async function repliedLength(c: ClientFlow): Promise<number> {
  for (;;) {
    const r = await c.rc.next();
    if (r.kind === "handshake" && r.type === HS.new_session_ticket) continue;
    if (r.kind !== "data") throw new Error(`expected an echo reply, got ${r.kind}`);
    const length = /\((\d+) /.exec(new TextDecoder().decode(r.data))?.[1];
    if (length === undefined) throw new Error("echo reply without a length");
    return Number(length);
  }
}

// §5.1: records that arrive together are read together, in order, up to what does not decrypt.
add(
  row(
    "5.1",
    "ok",
    "three data records in one segment are read as one chunk",
    s({
      after: async (c) => {
        const records = [];
        for (let i = 0; i < 3; i++) records.push(await c.rc.encode(CT.data, new Uint8Array(100)));
        await c.rc.writeRaw(concatBytes(...records));
        equal(await repliedLength(c), 300);
      },
    }),
  ),
  row(
    "5.1",
    "ok",
    "data, KeyUpdate and data in one segment: the KeyUpdate is taken between them",
    s({
      after: async (c) => {
        const first = await c.rc.encode(CT.data, new Uint8Array(100));
        const update = await c.rc.encode(CT.handshake, handshake(HS.key_update, bytes(0)));
        c.appSecrets!.client = nextKey(c);
        await c.rc.setWriteKeys(c.suite!, c.appSecrets!.client);
        const second = await c.rc.encode(CT.data, new Uint8Array(50));
        await c.rc.writeRaw(concatBytes(first, update, second));
        equal(await repliedLength(c), 100);
        equal(await repliedLength(c), 50);
      },
    }),
  ),
  row(
    "5.2",
    "bad_record_mac",
    "a tampered record after a good one in one segment: the good one is answered first",
    s({
      after: async (c) => {
        const good = await c.rc.encode(CT.data, new Uint8Array(100));
        const bad = await c.rc.encode(CT.data, new Uint8Array(100));
        bad[7] ^= 1;
        await c.rc.writeRaw(concatBytes(good, bad));
        equal(await repliedLength(c), 100);
        throw new Error(STOPPED);
      },
    }),
  ),
);
const postHandshake: [string, number, Uint8Array][] = [
  ["ClientHello (renegotiation)", HS.client_hello, new Uint8Array(40)],
  ["NewSessionTicket from the client", HS.new_session_ticket, new Uint8Array(12)],
  ["CertificateRequest from the client", HS.certificate_request, bytes(0, 0, 0)],
  ["Certificate without a request", HS.certificate, bytes(0, 0, 0, 0)],
  ["a second Finished", HS.finished, new Uint8Array(48)],
  ["EndOfEarlyData", HS.end_of_early_data, bytes()],
  ["ServerHello", HS.server_hello, new Uint8Array(40)],
  ["unknown handshake type 99", 99, bytes(1)],
];
for (const [name, type, body] of postHandshake) {
  add(row(
    "4.6",
    "unexpected_message",
    `${name} after the handshake`,
    s({
      after: async (c) => {
        await c.rc.send(CT.handshake, handshake(type, body));
      },
    }),
  ));
}

// §6: alerts.
add(
  row(
    "6.1",
    "close_notify",
    "our close_notify is answered with close_notify",
    s({
      after: async (c) => {
        await c.exchange();
        await c.rc.send(CT.alert, bytes(1, ALERT.close_notify));
        return await c.rc.ending();
      },
    }),
  ),
  row(
    "6",
    "decode_error",
    "an alert of one byte",
    s({
      after: async (c) => {
        await c.rc.send(CT.alert, bytes(2));
      },
    }),
  ),
  row(
    "6",
    "decode_error",
    "an alert of three bytes",
    s({
      after: async (c) => {
        await c.rc.send(CT.alert, bytes(2, 40, 0));
      },
    }),
  ),
  row(
    "6.1",
    "closed",
    "user_canceled then close_notify during the handshake",
    s({
      beforeFlight: async (c) => {
        await c.protectWrites();
        await c.rc.send(CT.alert, bytes(1, ALERT.user_canceled));
        await c.rc.send(CT.alert, bytes(1, ALERT.close_notify));
        throw new Error(STOPPED);
      },
    }),
  ),
);
const received: [string, number][] = [
  ["unknown_ca", ALERT.unknown_ca],
  ["bad_certificate", ALERT.bad_certificate],
  ["certificate_unknown", ALERT.certificate_unknown],
  ["decrypt_error", ALERT.decrypt_error],
  ["handshake_failure", ALERT.handshake_failure],
  ["illegal_parameter", ALERT.illegal_parameter],
  ["internal_error", ALERT.internal_error],
  ["general_error", 117],
  ["alert_255", 255],
];
for (const [name, code] of received) {
  for (const how of ["protected", "plaintext", "warning-level"] as const) {
    add(row(
      how === "plaintext" ? "6.2, D.4" : "6.2",
      "closed",
      `the client's ${how} ${name} after ServerHello: logged as received, not answered`,
      async (ctx) => {
        const c = await ClientFlow.open(ctx.port, ctx.pki.client);
        try {
          await c.sendHello(await c.defaultHello());
          await c.readServerHello();
          await c.handshakeKeys();
          await c.readServerFlight();
          if (how !== "plaintext") await c.protectWrites();
          await c.rc.send(CT.alert, bytes(how === "warning-level" ? 1 : 2, code));
          const ending = await c.rc.ending();
          const port = (c.rc.conn.localAddr as Deno.NetAddr).port;
          const event = await ctx.daemon.waitFor((e) =>
            e.event === "handshake_failed" && String(e.peer).endsWith(`:${port}`)
          );
          equal(event.alert, name);
          equal(event.sent, false);
          ok(String(event.reason).length > 0, "the log gives the received alert a reason");
          return ending;
        } finally {
          c.close();
        }
      },
    ));
  }
}

function nextKey(c: ClientFlow): Uint8Array {
  return nextTrafficSecret(c.suite!, c.appSecrets!.client);
}

/** A bare ClientHello (no extensions) repeating the first one's random. */
function encodeHelloAgain(c: ClientFlow): Uint8Array {
  return handshake(
    HS.client_hello,
    out((o) =>
      o.u16(0x0303).raw(c.hello!.random).vec(1, () => {}).vec(2, (v) => v.u16(SUITES.aes256))
        .vec(1, (v) => v.u8(0)).vec(2, () => {})
    ),
  );
}

function groupOf(id: number) {
  return GROUPS.find((g) => g.id === id)!;
}

Deno.test({
  name: "RFC 8446 conformance: qsign serve",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    await using dir = await tempDir();
    const [pki, stranger] = await Promise.all([
      makePki(`${dir.path}/pki`, "mldsa65"),
      makePki(`${dir.path}/stranger`, "mldsa65"),
    ]);
    const file = (name: string) => join(pki.dir, name);
    await using daemon = await Daemon.start([
      "--listen",
      "127.0.0.1:0",
      "--metrics-listen",
      "127.0.0.1:0",
      "--cert",
      file(PKI_FILES.serverCert),
      "--key",
      file(PKI_FILES.serverKey),
      "--ca",
      file(PKI_FILES.rootCert),
      "--max-handshakes-per-ip",
      "0",
      "--handshake-timeout",
      "8s",
    ]);
    await runTable(t, rows, { port: daemon.port(), pki, stranger, daemon }, { batch: 4 });
  },
});
