/**
 * The operator's HTTP endpoints (a Hono app on its own address, never the Q-TLS port):
 * `/metrics` (Prometheus text format), `/healthz` (the process answers), `/readyz` (every
 * readiness check passes, else 503 with the reasons) and `/status` (JSON for humans and scripts).
 */
import { Hono } from "hono";
import type { Address } from "../config/types.ts";
import { formatAddress } from "../config/values.ts";
import { audit } from "./log.ts";
import type { Exposition } from "./metrics.ts";
import { checkReadiness, type ReadinessVerdict } from "./readiness.ts";

export interface ObservabilityOptions {
  metrics: Exposition;
  /** The verdict of `/readyz` (default: this process's readiness checks). */
  readiness?: () => Promise<ReadinessVerdict>;
  /** The body of `/status`. */
  status: () => unknown | Promise<unknown>;
}

/** Builds the Hono app; serve it with `serveObservability` or call `app.fetch` in tests. */
export function createObservabilityApp(options: ObservabilityOptions): Hono {
  const app = new Hono();
  app.get("/metrics", async (c) => {
    const { contentType, body } = await options.metrics.exposition();
    return c.body(body, 200, { "content-type": contentType });
  });
  app.get("/healthz", (c) => c.text("ok\n"));
  app.get("/readyz", async (c) => {
    const { ok, failures } = await (options.readiness ?? checkReadiness)();
    return ok ? c.text("ready\n") : c.text(`not ready\n${failures.join("\n")}\n`, 503);
  });
  app.get("/status", async (c) => c.json(await options.status()));
  return app;
}

/**
 * Serves `app` on `address`; resolves once listening, with the bound address. Throws (from
 * `Deno.serve`) when the address cannot be bound.
 */
export async function serveObservability(
  address: Address,
  app: Hono,
): Promise<{ server: Deno.HttpServer; address: Address }> {
  const listening = Promise.withResolvers<Address>();
  const server = Deno.serve({
    hostname: address.hostname,
    port: address.port,
    onListen: (addr) => listening.resolve({ hostname: addr.hostname, port: addr.port }),
    onError: (e) => {
      audit.error("http_error", { error: e instanceof Error ? e.message : String(e) });
      return new Response("internal error\n", { status: 500 });
    },
  }, app.fetch);
  const bound = await listening.promise;
  audit.info("metrics_listening", { address: formatAddress(bound) });
  return { server, address: bound };
}
