/**
 * `qsign --renewal`: for each managed certificate, decide whether it is due, get a new one from
 * its issuer, store it atomically, report one JSON line, and finally make the daemon reload.
 *
 * A certificate is due when less than `renew_before` of its lifetime is left (one third by
 * default: a 24 h certificate renewed hourly is replaced 8 h before it expires, leaving seven
 * more runs to succeed), when it is missing, or with `--force`. A failure leaves the old files
 * untouched and served; the next timer run tries again.
 *
 * The daemon is told by SIGHUP to the pid in `pid_file` (the top-level setting: `qsign serve`
 * writes that file, `qsign renew` reads it). Without one, the daemon's own watch on the
 * certificate's directory entries sees the store swap the `live` link and reloads by itself.
 */
import "reflect-metadata";
import { X509Certificate } from "@peculiar/x509";
import { runningDaemonPid } from "../daemon/pid_file.ts";
import { QsignError } from "../errors.ts";
import { pemDecodeAll, pemEncodeAll } from "../pki/pem.ts";
import type { ManagedCertificate, RenewBefore } from "./config.ts";
import type { IssuedCertificate, Issuer } from "./issuer.ts";
import { storeCertificate } from "./store.ts";

/** What is served now, read from the certificate file's leaf. */
export interface ServedCertificate {
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

/** Whether a certificate is due, and why. */
export interface RenewalDecision {
  due: boolean;
  reason: "forced" | "missing" | "expiring" | "fresh";
  /** When it becomes due (for a fresh certificate). */
  dueAt?: Date;
}

/** Decides whether `served` must be renewed at `now`. Pure: the planning tests call it directly. */
export function planRenewal(
  served: Pick<ServedCertificate, "notBefore" | "notAfter"> | undefined,
  renewBefore: RenewBefore,
  now: Date,
  force = false,
): RenewalDecision {
  if (force) return { due: true, reason: "forced" };
  if (!served) return { due: true, reason: "missing" };
  const lifetime = served.notAfter.getTime() - served.notBefore.getTime();
  const margin = "fraction" in renewBefore
    ? lifetime * renewBefore.fraction
    : renewBefore.seconds * 1000;
  const dueAt = new Date(served.notAfter.getTime() - margin);
  return now >= dueAt
    ? { due: true, reason: "expiring", dueAt }
    : { due: false, reason: "fresh", dueAt };
}

/** The leaf of the certificate file, or undefined when there is none yet. */
export async function readServedCertificate(path: string): Promise<ServedCertificate | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  const [leaf] = pemDecodeAll(text, "CERTIFICATE");
  if (!leaf) return undefined;
  const cert = new X509Certificate(leaf.slice());
  return {
    serial: cert.serialNumber.toLowerCase(),
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
  };
}

/** One line of `qsign renew` output. */
export interface RenewalResult {
  certificate: string;
  issuer: "local" | "vault";
  result: "fresh" | "renewed" | "failed";
  reason: RenewalDecision["reason"];
  old_serial: string | null;
  new_serial: string | null;
  /** notAfter of what is served after this run (ISO 8601). */
  not_after: string | null;
  error?: string;
}

/** What renewal needs from the outside world; tests substitute pieces. */
export interface RenewalContext {
  issuer(cert: ManagedCertificate): Promise<Issuer>;
  /** A CSR for a key that already exists (reused file key, HSM key). */
  csr(cert: ManagedCertificate, keyPem: string | undefined): Promise<Uint8Array>;
  now(): Date;
  force: boolean;
}

/** Plans, issues and stores one certificate. Never throws: failures become a `failed` line. */
export async function renewCertificate(
  cert: ManagedCertificate,
  context: RenewalContext,
): Promise<RenewalResult & { exitCode: number }> {
  let served: ServedCertificate | undefined;
  let reason: RenewalDecision["reason"] = "missing";
  const line = (
    result: RenewalResult["result"],
    extra: Partial<RenewalResult & { exitCode: number }> = {},
  ) => ({
    certificate: cert.name,
    issuer: cert.issuer,
    result,
    reason,
    old_serial: served?.serial ?? null,
    new_serial: null,
    not_after: served?.notAfter.toISOString() ?? null,
    exitCode: 0,
    ...extra,
  });
  try {
    served = await readServedCertificate(cert.paths.cert);
    const decision = planRenewal(served, cert.renewBefore, context.now(), context.force);
    reason = decision.reason;
    if (!decision.due) return line("fresh");
    const issued = await issue(cert, context);
    await storeCertificate(cert.paths, servedFiles(issued), issued.serial);
    return line("renewed", { new_serial: issued.serial, not_after: issued.notAfter.toISOString() });
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    const exitCode = e instanceof QsignError ? Math.max(1, e.exitCode) : 1;
    return line("failed", { error: message, exitCode });
  }
}

async function issue(
  cert: ManagedCertificate,
  context: RenewalContext,
): Promise<IssuedCertificate> {
  const issuer = await context.issuer(cert);
  const request = {
    profile: cert.profile,
    cn: cert.cn,
    sans: cert.sans,
    ttlSeconds: cert.ttlSeconds,
  };
  switch (cert.keySource.kind) {
    case "new":
      return await issuer.issue(request);
    case "reuse": {
      const keyPem = await Deno.readTextFile(cert.paths.key!);
      const issued = await issuer.issue({ ...request, csrDer: await context.csr(cert, keyPem) });
      return { ...issued, keyPem };
    }
    case "hsm":
      return await issuer.issue({ ...request, csrDer: await context.csr(cert, undefined) });
  }
}

/**
 * The files as the daemon reads them: the certificate file carries the leaf and the
 * intermediates (a TLS server sends those), the chain file the issuer's whole CA chain.
 */
export function servedFiles(
  issued: IssuedCertificate,
): { certPem: string; keyPem?: string; chainPem: string } {
  const intermediates = pemDecodeAll(issued.chainPem, "CERTIFICATE").filter((der) => {
    const ca = new X509Certificate(der.slice());
    return ca.subject !== ca.issuer;
  });
  return {
    certPem: issued.certPem + pemEncodeAll("CERTIFICATE", intermediates),
    keyPem: issued.keyPem,
    chainPem: issued.chainPem,
  };
}

/** Renews every certificate in order; answers the results and the exit status. */
export async function renewAll(
  certificates: ManagedCertificate[],
  context: RenewalContext,
  emit: (result: RenewalResult) => void,
): Promise<{ results: RenewalResult[]; exitCode: number }> {
  const results: RenewalResult[] = [];
  let exitCode = 0;
  for (const cert of certificates) {
    const { exitCode: code, ...result } = await renewCertificate(cert, context);
    emit(result);
    results.push(result);
    exitCode = Math.max(exitCode, code);
  }
  return { results, exitCode };
}

/**
 * Sends SIGHUP to the daemon that holds the pid file `pidFile` (see src/daemon/pid_file.ts).
 * Answers what happened, for the log; no daemon running is not an error (it loads the new files
 * when it starts), and a pid file left by a killed daemon is never trusted.
 */
export async function signalDaemon(pidFile: string): Promise<string> {
  const pid = await runningDaemonPid(pidFile);
  if (pid === undefined) return `no daemon to reload: none holds ${pidFile}`;
  try {
    Deno.kill(pid, "SIGHUP");
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      return `no daemon to reload: process ${pid} (${pidFile}) is gone`;
    }
    throw new QsignError(
      `cannot signal the daemon (pid ${pid} from ${pidFile}): ${(e as Error).message}`,
    );
  }
  return `sent SIGHUP to the daemon (pid ${pid} from ${pidFile})`;
}
