/**
 * CRL refresh, run by `qsign renew` beside certificate renewal: a CRL the daemon checks client
 * chains against refuses every such client once its nextUpdate has passed, so each `[[crl]]` is
 * replaced before then, when less than `renew_before` of its validity is left (one third by
 * default), by one of two sources:
 *
 * - `ca = "client"` (or `server`, `root`): re-signed by that CA of the embedded PKI (`ca_dir`),
 *   listing what it revoked, as `qsign pki crl` does;
 * - `url = "http://…"`: fetched from the CA's distribution point, then accepted only when its
 *   signature verifies with the `issuer` certificate, it is current (thisUpdate not in the
 *   future, nextUpdate ahead) and not older than the one it replaces.
 *
 * The new CRL is written atomically (temporary file, rename), so the daemon's watch, or the
 * SIGHUP that follows, loads either the old file or the new one, never a half-written one.
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { QsignError } from "../errors.ts";
import { writeFileAtomic } from "../fsutil.ts";
import { generateCrl } from "../pki/ca.ts";
import { pemDecodeAll, pemEncode, readCertificatesFile } from "../pki/pem.ts";
import { verifySignature } from "../pki/signatures.ts";
import type { ManagedCrl } from "./config.ts";
import { planRenewal, type RenewalDecision } from "./renewal.ts";

/** One line of `qsign renew` output for a CRL. */
export interface CrlRefreshResult {
  crl: string;
  source: "local" | "url";
  result: "fresh" | "refreshed" | "failed";
  reason: "forced" | "missing" | "expiring" | "fresh";
  /** nextUpdate of the CRL in place after this run (ISO 8601). */
  next_update: string | null;
  error?: string;
}

export interface CrlRefreshContext {
  now(): Date;
  force: boolean;
  /** The embedded PKI for `ca = …` sources. */
  caDir?: string;
  /** Per fetch (connect, headers and body); default 30 s. */
  fetchTimeoutMs?: number;
}

/** A fetched CRL larger than this is refused: a distribution point answers a few megabytes. */
const MAX_CRL_BYTES = 32 * 1024 * 1024;
/** Clock skew tolerated between the CA and this host for thisUpdate. */
const CLOCK_SKEW_MS = 5 * 60_000;

/** A CRL problem, naming the file or URL it concerns. */
export class CrlRefreshError extends QsignError {}

/** The CRL now in `path`, or undefined when there is none. */
async function readCurrent(path: string): Promise<x509.X509Crl | undefined> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new CrlRefreshError(`${path}: cannot read the CRL: ${(e as Error).message}`);
  }
  return parseCrl(bytes, path);
}

/** A CRL from PEM (`X509 CRL`) or DER bytes. */
function parseCrl(bytes: Uint8Array, where: string): x509.X509Crl {
  const text = new TextDecoder().decode(bytes.subarray(0, 64));
  const der = text.includes("-----BEGIN")
    ? pemDecodeAll(new TextDecoder().decode(bytes), "X509 CRL")[0]
    : bytes;
  if (!der) throw new CrlRefreshError(`${where}: no X509 CRL block found`);
  try {
    return new x509.X509Crl(der.slice());
  } catch (e) {
    throw new CrlRefreshError(`${where}: not a CRL: ${(e as Error).message}`);
  }
}

/** Whether the CRL in `managed.file` is due for a refresh at `now` (`--force`: always). */
export async function planCrlRefresh(
  managed: ManagedCrl,
  now: Date,
  force: boolean,
): Promise<RenewalDecision & { current?: x509.X509Crl }> {
  const current = await readCurrent(managed.file);
  const validity = current && {
    notBefore: current.thisUpdate,
    // A CRL without nextUpdate never expires by itself; replace it on every run.
    notAfter: current.nextUpdate ?? current.thisUpdate,
  };
  return { ...planRenewal(validity, managed.renewBefore, now, force), current };
}

/** Plans and, when due, refreshes one CRL. Never throws: failures become a `failed` line. */
export async function refreshCrl(
  managed: ManagedCrl,
  context: CrlRefreshContext,
): Promise<CrlRefreshResult & { exitCode: number }> {
  let current: x509.X509Crl | undefined;
  let reason: CrlRefreshResult["reason"] = "missing";
  const line = (
    result: CrlRefreshResult["result"],
    extra: Partial<CrlRefreshResult & { exitCode: number }> = {},
  ) => ({
    crl: managed.name,
    source: managed.source.kind,
    result,
    reason,
    next_update: current?.nextUpdate?.toISOString() ?? null,
    exitCode: 0,
    ...extra,
  });
  try {
    const decision = await planCrlRefresh(managed, context.now(), context.force);
    current = decision.current;
    reason = decision.reason;
    if (!decision.due) return line("fresh");
    const next = managed.source.kind === "local"
      ? await resign(managed, context)
      : await fetchVerified(managed, current, context);
    await writeFileAtomic(managed.file, new TextEncoder().encode(pemEncode("X509 CRL", next.der)));
    return line("refreshed", { next_update: next.crl.nextUpdate?.toISOString() ?? null });
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    return line("failed", { error: message, exitCode: 1 });
  }
}

async function resign(
  managed: ManagedCrl,
  context: CrlRefreshContext,
): Promise<{ der: Uint8Array; crl: x509.X509Crl }> {
  if (managed.source.kind !== "local") throw new Error("not a local CRL source");
  const der = await generateCrl({
    dir: context.caDir!,
    profile: managed.source.ca,
    days: managed.source.days,
    now: context.now(),
  });
  return { der, crl: new x509.X509Crl(der.slice()) };
}

/**
 * Fetches the CRL at the source's URL and checks it before it may replace `current`: signed by
 * the issuer certificate, current at `now`, and not older than `current`.
 */
async function fetchVerified(
  managed: ManagedCrl,
  current: x509.X509Crl | undefined,
  context: CrlRefreshContext,
): Promise<{ der: Uint8Array; crl: x509.X509Crl }> {
  if (managed.source.kind !== "url") throw new Error("not a URL CRL source");
  const { url, issuer } = managed.source;
  const bytes = await download(url, context.fetchTimeoutMs ?? 30_000);
  const crl = parseCrl(bytes, url);
  const issuers = await readCertificatesFile(issuer).catch((e) => {
    throw new CrlRefreshError(`${issuer}: cannot read the CRL issuer: ${(e as Error).message}`);
  });
  let signed = false;
  for (const der of issuers) {
    const cert = new x509.X509Certificate(der.slice());
    if (cert.subject !== crl.issuer) continue;
    if (await verifySignature(crl, cert.publicKey)) signed = true;
  }
  if (!signed) {
    throw new CrlRefreshError(
      `${url}: the CRL of ${crl.issuer} is not signed by a certificate in ${issuer}; kept ` +
        `${managed.file}`,
    );
  }
  const now = context.now().getTime();
  if (crl.thisUpdate.getTime() > now + CLOCK_SKEW_MS) {
    throw new CrlRefreshError(
      `${url}: the CRL is not valid before ${crl.thisUpdate.toISOString()}; kept ${managed.file}`,
    );
  }
  if (!crl.nextUpdate || crl.nextUpdate.getTime() <= now) {
    throw new CrlRefreshError(
      `${url}: the CRL ${
        crl.nextUpdate ? `expired at ${crl.nextUpdate.toISOString()}` : "names no nextUpdate"
      }; kept ${managed.file}`,
    );
  }
  if (current && crl.thisUpdate < current.thisUpdate) {
    throw new CrlRefreshError(
      `${url}: the CRL (thisUpdate ${crl.thisUpdate.toISOString()}) is older than ` +
        `${managed.file} (${current.thisUpdate.toISOString()}); kept it`,
    );
  }
  return { der: new Uint8Array(crl.rawData), crl };
}

/** The body at `url`, bounded in time and size. */
async function download(url: string, timeoutMs: number): Promise<Uint8Array> {
  let response: Response;
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    response = await fetch(url, { signal, redirect: "follow" });
  } catch (e) {
    throw new CrlRefreshError(`${url}: cannot fetch the CRL: ${(e as Error).message}`);
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw new CrlRefreshError(`${url}: cannot fetch the CRL: HTTP ${response.status}`);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for await (const chunk of response.body ?? []) {
      size += chunk.length;
      if (size > MAX_CRL_BYTES) {
        await response.body?.cancel();
        throw new CrlRefreshError(`${url}: the CRL is larger than ${MAX_CRL_BYTES} bytes`);
      }
      chunks.push(chunk);
    }
  } catch (e) {
    if (e instanceof CrlRefreshError) throw e;
    throw new CrlRefreshError(`${url}: cannot fetch the CRL: ${(e as Error).message}`);
  }
  const body = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.length;
  }
  return body;
}

/** Refreshes every CRL in order; answers the results and the exit status. */
export async function refreshAllCrls(
  crls: ManagedCrl[],
  context: CrlRefreshContext,
  emit: (result: CrlRefreshResult) => void,
): Promise<{ results: CrlRefreshResult[]; exitCode: number }> {
  const results: CrlRefreshResult[] = [];
  let exitCode = 0;
  for (const crl of crls) {
    const { exitCode: code, ...result } = await refreshCrl(crl, context);
    emit(result);
    results.push(result);
    exitCode = Math.max(exitCode, code);
  }
  return { results, exitCode };
}
