/**
 * Reports a session pool's state where operators look: `/readyz` (a readiness check naming the
 * token), the `qtls_hsm_connected` gauge, and an audit line on every change.
 */
import { audit } from "../observe/log.ts";
import { metrics } from "../observe/metrics.ts";
import { registerReadinessCheck } from "../observe/readiness.ts";
import { HsmStatusEvent, type SessionPool } from "./pool.ts";

const reported = new Set<SessionPool<unknown>>();

/** The gauge is 1 only while every reported pool is connected. */
function updateGauge(): void {
  metrics.setHsmConnected([...reported].every((pool) => pool.connected));
}

/**
 * Wires `pool` into readiness, metrics and the audit log under `name` (e.g. `hsm` or
 * `hsm:server`). Returns a function that undoes it.
 */
export function reportHsmHealth(pool: SessionPool<unknown>, name = "hsm"): () => void {
  reported.add(pool);
  updateGauge();
  const unregister = registerReadinessCheck(name, () => {
    const status = pool.status();
    return status.connected ? { ok: true } : {
      ok: false,
      reason: `${pool.description} is unavailable: ${status.error ?? "disconnected"}`,
    };
  });
  const onChange = (event: Event) => {
    updateGauge();
    if (!(event instanceof HsmStatusEvent)) return;
    const fields = { hsm: pool.description, error: event.error?.message };
    if (event.connected) audit.info("hsm_connected", fields);
    else audit.error("hsm_disconnected", { ...fields, retrying: !pool.status().gaveUp });
  };
  pool.addEventListener("change", onChange);
  return () => {
    pool.removeEventListener("change", onChange);
    unregister();
    reported.delete(pool);
    updateGauge();
  };
}
