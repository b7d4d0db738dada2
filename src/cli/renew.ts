/**
 * `qsign renew` (also `qsign --renewal`), run by qtls-cert-renewal.service from its timer:
 * renews the certificates in the config file's `[[certificate]]` tables that are close to expiry
 * and refreshes its `[[crl]]` CRLs before their nextUpdate, prints one JSON line per certificate
 * and CRL, and makes the daemon reload.
 *
 * Exit status: 0 when every certificate is fresh or renewed, 1 when any renewal failed (its old
 * files stay in place and served), 2 for configuration errors.
 */
import { type CommandSpec, parseCommand } from "./args.ts";
import { UsageError } from "../errors.ts";
import { loadRenewalConfig } from "../issuer/config.ts";
import { openIssuers } from "../issuer/factory.ts";
import { planCrlRefresh, refreshAllCrls } from "../issuer/crl.ts";
import { planRenewal, readServedCertificate, renewAll, signalDaemon } from "../issuer/renewal.ts";

/** A signal or pid file refused for want of permission (EPERM, EACCES). */
function permissionProblem(e: unknown): boolean {
  return e instanceof Deno.errors.PermissionDenied ||
    (e instanceof Error && /permission denied|operation not permitted|EPERM/i.test(e.message));
}

/** The command line of `qsign renew`. */
export const RENEW_COMMAND: CommandSpec = {
  name: "renew",
  summary:
    "Renew managed certificates close to expiry, refresh managed CRLs before their nextUpdate, " +
    "and make the daemon reload (also: qsign --renewal).",
  options: {
    config: {
      type: "string",
      value: "FILE",
      help: "the qsign config file with [renewal] and [[certificate]] tables (env QSIGN_CONFIG)",
    },
    "pid-file": {
      type: "string",
      value: "FILE",
      help: "the daemon's pid file, to send it SIGHUP after a renewal (env QSIGN_PID_FILE; " +
        "the config file's top-level pid_file, which qsign serve writes)",
    },
    force: { type: "boolean", help: "renew every certificate now, due or not" },
    "dry-run": {
      type: "boolean",
      help: "say which certificates are due and why, one JSON line each; issue and change nothing",
    },
    certificate: {
      type: "string",
      multiple: true,
      value: "NAME",
      help: "renew only this certificate (its name, or its cert path)",
    },
  },
};

/** This command's options, for completion and the man page. */
export const COMMAND_SPECS: CommandSpec[] = [RENEW_COMMAND];

export async function run(argv: string[]): Promise<number> {
  const args = parseCommand(RENEW_COMMAND, argv);
  if (!args) return 0;
  const file = args.string("config") ?? Deno.env.get("QSIGN_CONFIG");
  if (!file) throw new UsageError("renew: --config FILE is required (or set QSIGN_CONFIG)");
  const config = await loadRenewalConfig(file, { flags: args, env: Deno.env.toObject() });
  const only = args.list("certificate");
  const unknown = only.filter((n) =>
    !config.certificates.some((c) => c.name === n || c.paths.cert === n)
  );
  if (unknown.length) {
    throw new UsageError(`renew: no [[certificate]] named ${unknown.join(", ")} in ${file}`);
  }
  const certificates = only.length
    ? config.certificates.filter((c) => only.includes(c.name) || only.includes(c.paths.cert))
    : config.certificates;
  if (args.boolean("dry-run")) {
    for (const cert of certificates) {
      const served = await readServedCertificate(cert.paths.cert);
      const decision = planRenewal(served, cert.renewBefore, new Date(), args.boolean("force"));
      console.log(JSON.stringify({
        certificate: cert.name,
        issuer: cert.issuer,
        result: decision.due ? "due" : "fresh",
        reason: decision.reason,
        serial: served?.serial ?? null,
        not_after: served?.notAfter.toISOString() ?? null,
        due_at: decision.dueAt?.toISOString() ?? null,
      }));
    }
    for (const crl of only.length ? [] : config.crls) {
      const decision = await planCrlRefresh(crl, new Date(), args.boolean("force"));
      console.log(JSON.stringify({
        crl: crl.name,
        source: crl.source.kind,
        result: decision.due ? "due" : "fresh",
        reason: decision.reason,
        next_update: decision.current?.nextUpdate?.toISOString() ?? null,
        due_at: decision.dueAt?.toISOString() ?? null,
      }));
    }
    return 0;
  }

  await using issuers = openIssuers(config, (message) => console.error(`qsign renew: ${message}`));
  const { results, exitCode } = await renewAll(
    certificates,
    { ...issuers, now: () => new Date(), force: args.boolean("force") },
    (result) => console.log(JSON.stringify(result)),
  );
  // CRLs too, unless the run was narrowed to named certificates.
  const crls = await refreshAllCrls(
    only.length ? [] : config.crls,
    { now: () => new Date(), force: args.boolean("force"), caDir: config.caDir },
    (result) => console.log(JSON.stringify(result)),
  );
  if (
    results.some((r) => r.result === "renewed") ||
    crls.results.some((r) => r.result === "refreshed")
  ) {
    const message = config.pidFile
      ? await signalDaemon(config.pidFile).catch((e) => {
        // The production layout runs the renewal as another user than the daemon (see
        // docs/production.md): it may not signal it, and needs not, the watch reloads.
        if (!permissionProblem(e)) throw e;
        return `cannot signal the daemon (${(e as Error).message}); its file watch reloads ` +
          "the renewed files";
      })
      : "no pid_file: a running daemon reloads when its file watch sees the certificate change";
    console.error(`qsign renew: ${message}`);
  }
  return Math.max(exitCode, crls.exitCode);
}
