/**
 * What a resumed session stands for, decided in one place: a resumption re-establishes the
 * authentication a full handshake would give on this service now, or it does not happen.
 *
 * A ticket seals, beside the PSK (tickets.ts), a `SessionAuthentication`:
 * - the service binding: SHA-256 over the service's name and its trust configuration (trust
 *   anchors, CRL policy, client-auth mode, require_pq_auth, access policy), so a ticket earned
 *   on one service never resumes on another, nor after that configuration changed (a ticket
 *   whose full handshake met require_pq_auth and the client-auth mode meets them again);
 * - when the client was first authenticated (kept, not renewed, in tickets issued on a resumed
 *   connection), for `resumptionMaxAgeSeconds`;
 * - for a client that sent a certificate: the facts of its verified chain (pki/recheck.ts) and
 *   the identity the access policy and the logs use, so any node holding the ticket key can
 *   re-check it with no memory of the client.
 *
 * `resumedAuthentication` runs only after the PSK binder verified (nothing in a ticket is used
 * before); a failed re-check declines the PSK, and the handshake goes on as a full one.
 */
import type { CertificateView, GeneralName } from "../pki/certificate_view.ts";
import { getCryptoProvider } from "../crypto/index.ts";
import { type ChainFacts, chainFacts, recheckChain } from "../pki/recheck.ts";
import { TrustStore } from "../pki/verify.ts";
import { TlsAlert } from "./alert.ts";
import { toHex } from "../hex.ts";
import { ByteReader, ByteWriter, equalBytes } from "./codec/bytes.ts";
import type { PeerIdentity, TlsServerConfig } from "./config.ts";
import type { PeerAuthentication } from "./steps.ts";

/** Default for `resumptionMaxAgeSeconds`: a day after the full handshake. */
export const DEFAULT_RESUMPTION_MAX_AGE_SECONDS = 24 * 3600;

/** The authentication a ticket carries. */
export interface SessionAuthentication {
  /** The service binding it was issued under (`serviceBinding`). */
  binding: Uint8Array;
  /** When the full handshake authenticated the session, ms since the epoch. */
  authenticatedMs: number;
  /** The client's authentication; absent when the client sent no certificate. */
  client?: ClientAuthentication;
}

/** A client's certificate authentication, as facts. */
export interface ClientAuthentication {
  chain: ChainFacts;
  identity: PeerIdentity;
}

/** The outcome of re-checking a ticket's authentication. */
export type ResumptionVerdict =
  | { accepted: SessionAuthentication }
  | { declined: string };

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The identity fields of a leaf certificate (`der` is its encoding, for the fingerprint). */
export async function peerIdentity(leaf: CertificateView, der: Uint8Array): Promise<PeerIdentity> {
  let names: GeneralName[] = [];
  try {
    names = leaf.subjectAltName ?? [];
  } catch {
    // A verified leaf's names were read by the verifier; an unreadable SAN names nothing.
  }
  return {
    subject: leaf.subject,
    serial: leaf.serialNumber,
    fingerprint: toHex(await getCryptoProvider().hash("SHA-256", der)),
    cn: leaf.subjectField("CN"),
    ou: leaf.subjectField("OU"),
    dns: names.flatMap((n) => n.form === "dNSName" ? [n.text] : []),
    uri: names.flatMap((n) => n.form === "uniformResourceIdentifier" ? [n.text] : []),
  };
}

// ------------------------------------------------------------------ binding

const bindings = new WeakMap<
  TlsServerConfig,
  { anchors: Uint8Array[]; policy: string; digest: Uint8Array }
>();

/**
 * The service binding of `config`: SHA-256 over its `sessionBinding` (the service's name and
 * access policy, from the daemon), its trust anchors (order-independent), CRL policy,
 * client-auth mode and require_pq_auth. Nodes with the same configuration compute the same.
 */
export async function serviceBinding(config: TlsServerConfig): Promise<Uint8Array> {
  const policy = JSON.stringify({
    binding: config.sessionBinding ?? "",
    crlCheck: config.crlCheck ?? "available",
    clientAuth: config.clientAuth,
    requirePqAuth: config.requirePqAuth ?? false,
  });
  const cached = bindings.get(config);
  if (cached?.anchors === config.trustAnchors && cached.policy === policy) return cached.digest;
  const p = getCryptoProvider();
  const anchors = (await Promise.all(config.trustAnchors.map((a) => p.hash("SHA-256", a))))
    .map(toHex).sort();
  const digest = await p.hash(
    "SHA-256",
    encoder.encode(`qsign session binding v1\n${policy}\n${anchors.join(",")}`),
  );
  bindings.set(config, { anchors: config.trustAnchors, policy, digest });
  return digest;
}

// ------------------------------------------------------------------ issuing

/** The authentication of a full handshake that just completed, for its ticket. */
export async function fullHandshakeAuthentication(
  config: TlsServerConfig,
  client: PeerAuthentication | undefined,
  identity: PeerIdentity | undefined,
  nowMs: number,
): Promise<SessionAuthentication> {
  const binding = await serviceBinding(config);
  if (!client || !identity) return { binding, authenticatedMs: nowMs };
  return {
    binding,
    authenticatedMs: nowMs,
    client: { chain: chainFacts(client.peer.chain), identity },
  };
}

/** How long resumption may go on after the full handshake, in ms. */
export function resumptionMaxAgeMs(config: TlsServerConfig): number {
  return (config.resumptionMaxAgeSeconds ?? DEFAULT_RESUMPTION_MAX_AGE_SECONDS) * 1000;
}

/**
 * The lifetime to announce for a ticket standing for `auth`: the issuer's, cut to what is left
 * of the maximum authentication age (0: issue none).
 */
export function ticketLifetimeSeconds(
  config: TlsServerConfig,
  issuerLifetimeSeconds: number,
  auth: SessionAuthentication,
  nowMs: number,
): number {
  const leftMs = auth.authenticatedMs + resumptionMaxAgeMs(config) - nowMs;
  return Math.max(0, Math.min(issuerLifetimeSeconds, Math.floor(leftMs / 1000)));
}

// ------------------------------------------------------------------ resuming

const stores = new WeakMap<
  TlsServerConfig,
  { anchors: Uint8Array[]; crls?: Uint8Array[]; store: Promise<TrustStore> }
>();

/** The config's anchors and CRLs parsed once (again when a reload replaces them). */
function trustStoreOf(config: TlsServerConfig): Promise<TrustStore> {
  const cached = stores.get(config);
  if (cached?.anchors === config.trustAnchors && cached.crls === config.crls) return cached.store;
  const store = TrustStore.create(config.trustAnchors, config.crls ?? []);
  stores.set(config, { anchors: config.trustAnchors, crls: config.crls, store });
  return store;
}

/**
 * Whether a ticket's authentication (`sealed`, from a ticket whose binder verified) holds on
 * this service at `nowMs`: same binding, within the maximum age, the client chain still valid,
 * unrevoked and under a configured anchor, require_pq_auth and the access policy met.
 */
export async function resumedAuthentication(
  config: TlsServerConfig,
  sealed: Uint8Array,
  nowMs: number,
): Promise<ResumptionVerdict> {
  const auth = decodeAuthentication(sealed);
  if (!auth) return { declined: "ticket state unreadable" };
  if (!equalBytes(auth.binding, await serviceBinding(config))) {
    return { declined: "ticket issued by another service or trust configuration" };
  }
  if (nowMs - auth.authenticatedMs > resumptionMaxAgeMs(config)) {
    return { declined: "authentication older than the resumption maximum age" };
  }
  const client = auth.client;
  if (client) {
    if (config.verifier) return { declined: "a custom peer verifier cannot re-check the chain" };
    let store: TrustStore;
    try {
      store = await trustStoreOf(config);
    } catch (e) {
      return { declined: `trust anchors or CRLs unusable: ${(e as Error).message}` };
    }
    const failure = await recheckChain(
      client.chain,
      store,
      config.crlCheck ?? "available",
      new Date(nowMs),
    );
    if (failure) return { declined: `client chain: ${failure.reason}: ${failure.detail}` };
  }
  if (config.accessPolicy) {
    if (!client) return { declined: "no client certificate and an access policy applies" };
    const verdict = config.accessPolicy(client.identity);
    if (verdict !== true) {
      return { declined: `access policy: ${typeof verdict === "string" ? verdict : "refused"}` };
    }
  }
  return { accepted: auth };
}

// ------------------------------------------------------------------ encoding

const VERSION = 1;

function text(w: ByteWriter, s: string): void {
  w.opaque(2, encoder.encode(s));
}

function texts(w: ByteWriter, list: readonly string[]): void {
  w.vector(2, (v) => list.forEach((s) => text(v, s)));
}

function time(w: ByteWriter, ms: number): void {
  // Certificate times go back before 1970 and up to 9999: a signed offset in two u32 halves.
  const shifted = ms + 2 ** 52;
  w.u32(Math.floor(shifted / 2 ** 32)).u32(shifted % 2 ** 32);
}

function readText(r: ByteReader): string {
  return decoder.decode(r.vector(2));
}

function readTexts(r: ByteReader): string[] {
  const list = r.sub(2);
  const out: string[] = [];
  while (list.remaining) out.push(readText(list));
  return out;
}

function readTime(r: ByteReader): number {
  return r.u32() * 2 ** 32 + r.u32() - 2 ** 52;
}

/**
 * Most bytes of sealed authentication in a ticket: far more than a real chain's facts (under
 * 1 KB for leaf and intermediate), and tickets beyond a few KB are dropped by clients anyway.
 */
export const MAX_SEALED_AUTHENTICATION = 8 * 1024;

/**
 * The sealed form of `auth`, or undefined when it would exceed MAX_SEALED_AUTHENTICATION (a
 * chain with huge names: its client gets no ticket).
 */
export function encodeAuthentication(auth: SessionAuthentication): Uint8Array | undefined {
  try {
    const sealed = writeAuthentication(auth);
    return sealed.length <= MAX_SEALED_AUTHENTICATION ? sealed : undefined;
  } catch (e) {
    // A single name longer than a length prefix holds.
    if (e instanceof RangeError) return undefined;
    throw e;
  }
}

function writeAuthentication(auth: SessionAuthentication): Uint8Array {
  const w = new ByteWriter(1024).u8(VERSION).opaque(1, auth.binding);
  time(w, auth.authenticatedMs);
  const client = auth.client;
  w.u8(client ? 1 : 0);
  if (client) {
    w.opaque(1, client.chain.anchorFingerprint);
    w.vector(2, (list) => {
      for (const c of client.chain.certificates) {
        text(list, c.subject);
        text(list, c.issuer);
        text(list, c.serial);
        time(list, c.notBefore);
        time(list, c.notAfter);
        list.opaque(1, c.keyFingerprint);
        text(list, c.subjectKeyId ?? "");
        text(list, c.authorityKeyId ?? "");
      }
    });
    const id = client.identity;
    text(w, id.subject);
    text(w, id.serial);
    text(w, id.fingerprint);
    for (const names of [id.cn, id.ou, id.dns, id.uri]) texts(w, names);
  }
  return w.finish();
}

/** Decodes sealed authentication; undefined for another version or a malformed record. */
export function decodeAuthentication(bytes: Uint8Array): SessionAuthentication | undefined {
  try {
    const r = new ByteReader(bytes, "session authentication");
    if (r.u8() !== VERSION) return undefined;
    const binding = r.vector(1).slice();
    const authenticatedMs = readTime(r);
    let client: ClientAuthentication | undefined;
    if (r.u8() === 1) {
      const anchorFingerprint = r.vector(1).slice();
      const list = r.sub(2);
      const certificates = [];
      while (list.remaining) {
        const subject = readText(list);
        const issuer = readText(list);
        const serial = readText(list);
        const notBefore = readTime(list);
        const notAfter = readTime(list);
        const keyFingerprint = list.vector(1).slice();
        const subjectKeyId = readText(list) || undefined;
        const authorityKeyId = readText(list) || undefined;
        certificates.push({
          subject,
          issuer,
          serial,
          notBefore,
          notAfter,
          keyFingerprint,
          subjectKeyId,
          authorityKeyId,
        });
      }
      const identity: PeerIdentity = {
        subject: readText(r),
        serial: readText(r),
        fingerprint: readText(r),
        cn: readTexts(r),
        ou: readTexts(r),
        dns: readTexts(r),
        uri: readTexts(r),
      };
      client = { chain: { certificates, anchorFingerprint }, identity };
    }
    r.end();
    return { binding, authenticatedMs, client };
  } catch (e) {
    if (e instanceof TlsAlert) return undefined;
    throw e;
  }
}
