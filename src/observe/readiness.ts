/**
 * Readiness checks behind `/readyz`: each part of the daemon that can make it unfit to serve
 * (listeners down, no valid certificate, HSM unreachable) registers one, and `/readyz` answers
 * 503 with the reasons of every check that fails.
 */

/** A check's verdict; `reason` says what is wrong when `ok` is false. */
export interface ReadinessResult {
  ok: boolean;
  reason?: string;
}

export type ReadinessCheck = () => ReadinessResult | Promise<ReadinessResult>;

const checks = new Map<string, ReadinessCheck>();

/**
 * Registers (or replaces) the check called `name`, e.g. `registerReadinessCheck("hsm", ...)`.
 * Returns a function that removes it.
 */
export function registerReadinessCheck(name: string, check: ReadinessCheck): () => void {
  checks.set(name, check);
  return () => {
    if (checks.get(name) === check) checks.delete(name);
  };
}

/** What `/readyz` answers: ready, or the reason of each failing check. */
export interface ReadinessVerdict {
  ok: boolean;
  failures: string[];
}

/** Runs every check; a check that throws counts as failed with its message. */
export async function checkReadiness(): Promise<ReadinessVerdict> {
  const failures: string[] = [];
  for (const [name, check] of checks) {
    try {
      const result = await check();
      if (!result.ok) failures.push(`${name}: ${result.reason ?? "not ready"}`);
    } catch (e) {
      failures.push(`${name}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return { ok: failures.length === 0, failures };
}
