/**
 * The gateway chain of the cluster tests and the gateway benchmark: an HTTP backend, a
 * `qsign serve --mode proxy --client-auth require --require-pq-auth` node in front of it, a
 * `qsign connect --listen` sidecar, and Debian's nginx with the shipped
 * deploy/nginx/qsign-gateway.conf in front of the sidecar.
 */
import { ok } from "node:assert/strict";
import { clientArgs, Daemon, type Pki, serveArgs } from "../daemon/support.ts";
import { ROOT } from "../support/env.ts";
import { freePort, waitForPort } from "../support/services.ts";

/** The size of /api/big. */
export const BIG = 10 * 2 ** 20;

/** The bytes of /api/big: deterministic, so a download can be checked by its SHA-256. */
const big = Uint8Array.from({ length: BIG }, (_, i) => (i * 31 + 7) % 253);
/** The SHA-256 of /api/big. */
export const bigDigest = await sha256(big);

export async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function backend(): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    const path = new URL(request.url).pathname;
    if (path === "/api/hello") return new Response("hello through Q-TLS\n");
    if (path === "/api/big") return new Response(big);
    return new Response("not found\n", { status: 404 });
  });
}

/** nginx with the shipped gateway configuration in front of the sidecar, until disposed. */
export async function nginx(
  dir: string,
  sidecarPort: number,
): Promise<{ port: number } & AsyncDisposable> {
  const port = freePort();
  let gateway = await Deno.readTextFile(`${ROOT}/deploy/nginx/qsign-gateway.conf`);
  for (
    const [from, to] of [["listen 80;", `listen 127.0.0.1:${port};`], [
      "server 127.0.0.1:7443",
      `server 127.0.0.1:${sidecarPort}`,
    ]]
  ) {
    ok(gateway.includes(from), `the shipped gateway configuration has ${from}`);
    gateway = gateway.replace(from, to);
  }
  await Deno.writeTextFile(`${dir}/qsign-gateway.conf`, gateway);
  const temp = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
    .map((kind) => `  ${kind}_temp_path ${dir}/${kind};`).join("\n");
  await Deno.writeTextFile(
    `${dir}/nginx.conf`,
    `${Deno.uid() === 0 ? "user root;\n" : ""}daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
${temp}
  include ${dir}/qsign-gateway.conf;
}
`,
  );
  const child = new Deno.Command("nginx", {
    args: ["-c", `${dir}/nginx.conf`, "-p", dir],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  await waitForPort(port, "nginx").catch(async (e) => {
    child.kill("SIGKILL");
    throw new Error(`${e.message}: ${await stderr}`);
  });
  return {
    port,
    async [Symbol.asyncDispose]() {
      child.kill("SIGQUIT");
      await child.status;
    },
  };
}

/** `curl URL`: the status and the body's SHA-256 (and text when short). */
export async function curl(
  url: string,
  dir: string,
): Promise<{ status: number; digest: string; text: string }> {
  const out = `${dir}/curl-${crypto.randomUUID()}`;
  const result = await new Deno.Command("curl", {
    args: ["-s", "-S", "--max-time", "60", "-o", out, "-w", "%{http_code}", url],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const status = Number(new TextDecoder().decode(result.stdout));
  const body = await Deno.readFile(out).catch(() => new Uint8Array());
  await Deno.remove(out).catch(() => {});
  const text = body.length < 1024 ? new TextDecoder().decode(body) : "";
  return { status, digest: await sha256(body), text };
}

/** The chain from the sidecar on, for a node started with `nodeArgs`. */
export async function chain(
  dir: string,
  pki: Pki,
  http: Deno.HttpServer<Deno.NetAddr>,
  nodeArgs: string[],
) {
  const node = await Daemon.start(
    serveArgs(pki, [
      ...["--mode", "proxy", "--target", `127.0.0.1:${http.addr.port}`],
      ...["--client-auth", "require", "--require-pq-auth", ...nodeArgs],
    ]),
  );
  const sidecar = await Daemon.start(
    [`127.0.0.1:${node.port()}`, "--listen", "127.0.0.1:0", ...clientArgs(pki)],
    { command: "connect", readyEvent: "listening" },
  );
  const gateway = await nginx(dir, sidecar.port());
  return {
    node,
    url: (path: string) => `http://127.0.0.1:${gateway.port}${path}`,
    async [Symbol.asyncDispose]() {
      await gateway[Symbol.asyncDispose]();
      await sidecar.stop("SIGTERM");
      await node.stop("SIGKILL");
    },
  };
}
