/**
 * Real services the tests start on loopback: a free port, waiting for a listener (or for it to
 * close), and a Prometheus that scrapes given targets every second (Debian's `prometheus`, storage
 * in a temporary directory).
 */

/** A port free on 127.0.0.1 now (the caller binds it soon after). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

/** Waits until something accepts TCP connections on 127.0.0.1:`port`; throws after `ms`. */
export async function waitForPort(port: number, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (true) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`${what} did not listen on ${port}`, { cause: e });
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/**
 * Waits until 127.0.0.1:`port` refuses connections (whatever listened there has closed or died);
 * throws after `ms`, or at once on any other connect error.
 */
export async function waitForPortClosed(port: number, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (true) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
    } catch (e) {
      if (e instanceof Deno.errors.ConnectionRefused) return;
      throw e;
    }
    if (Date.now() > deadline) throw new Error(`${what} still accepts on ${port}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A running Prometheus: its API base URL, and a query that returns the result vector. */
export interface Prometheus extends AsyncDisposable {
  api: string;
  query(expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]>;
}

/** Starts Prometheus scraping `targets` (`host:port`) every second; resolves once it is ready. */
export async function startPrometheus(dir: string, targets: string[]): Promise<Prometheus> {
  const port = freePort();
  await Deno.writeTextFile(
    `${dir}/prometheus.yml`,
    [
      "global:",
      "  scrape_interval: 1s",
      "  evaluation_interval: 1s",
      "scrape_configs:",
      "  - job_name: qsign",
      "    static_configs:",
      `      - targets: ${JSON.stringify(targets)}`,
      "",
    ].join("\n"),
  );
  const child = new Deno.Command("prometheus", {
    args: [
      `--config.file=${dir}/prometheus.yml`,
      `--storage.tsdb.path=${dir}/tsdb`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const api = `http://127.0.0.1:${port}`;
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // It exited already.
    }
    await child.status;
    return await stderr;
  };
  const deadline = Date.now() + 60_000;
  while (!(await fetch(`${api}/-/ready`).then((r) => r.ok, () => false))) {
    if (Date.now() > deadline) throw new Error(`Prometheus did not become ready: ${await stop()}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return {
    api,
    async query(expr) {
      const body = await (await fetch(`${api}/api/v1/query?query=${encodeURIComponent(expr)}`))
        .json();
      if (body.status !== "success") throw new Error(`${expr}: ${JSON.stringify(body)}`);
      return body.data.result;
    },
    async [Symbol.asyncDispose]() {
      await stop();
    },
  };
}
