/**
 * The gateway path with real parts: curl → nginx (Debian's nginx-light, configured from the
 * shipped deploy/nginx/qsign-gateway.conf) → a `qsign connect --listen` sidecar → `qsign serve
 * --mode proxy --client-auth require --require-pq-auth` → an HTTP backend. APISIX is built on
 * nginx and cannot be installed here; its configuration in deploy/apisix/ routes the same way.
 */
import { equal, ok } from "node:assert/strict";
import { clientArgs, Daemon, makePki, type Pki, serveArgs } from "../daemon/support.ts";
import { ROOT, tempDir } from "../support/env.ts";

const BIG = 10 * 2 ** 20;

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  return port;
}

/** The bytes of /api/big: deterministic, so a download can be checked by its SHA-256. */
const big = Uint8Array.from({ length: BIG }, (_, i) => (i * 31 + 7) % 253);
const bigDigest = await sha256(big);

async function sha256(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

function backend(): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    const path = new URL(request.url).pathname;
    if (path === "/api/hello") return new Response("hello through Q-TLS\n");
    if (path === "/api/big") return new Response(big);
    return new Response("not found\n", { status: 404 });
  });
}

/** nginx with the shipped gateway configuration in front of the sidecar, until disposed. */
async function nginx(
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
  const deadline = Date.now() + 10_000;
  while (true) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      break;
    } catch {
      if (Date.now() > deadline) {
        child.kill("SIGKILL");
        throw new Error(`nginx did not listen: ${await stderr}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  return {
    port,
    async [Symbol.asyncDispose]() {
      child.kill("SIGQUIT");
      await child.status;
    },
  };
}

/** `curl URL`: the status and the body's SHA-256 (and text when short). */
async function curl(
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
async function chain(
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

Deno.test("curl through nginx and the sidecar reaches the backend over post-quantum mutual TLS", async (t) => {
  await using dir = await tempDir("qsign-gateway-");
  const pki = await makePki(`${dir.path}/pki`);
  await using http = backend();
  await using path = await chain(dir.path, pki, http, []);

  await t.step("a request", async () => {
    const reply = await curl(path.url("/api/hello"), dir.path);
    equal(reply.status, 200);
    equal(reply.text, "hello through Q-TLS\n");
  });

  await t.step("10 MB byte-exact, and 8 downloads at once", async () => {
    equal((await curl(path.url("/api/big"), dir.path)).digest, bigDigest);
    const parallel = await Promise.all(
      Array.from({ length: 8 }, () => curl(path.url("/api/big"), dir.path)),
    );
    for (const reply of parallel) {
      equal(reply.status, 200);
      equal(reply.digest, bigDigest);
    }
  });

  await t.step(
    "the node's audit log shows the hybrid group, ML-DSA both ways, resumption",
    async () => {
      const handshakes = await path.node.waitForCount((e) => e.event === "handshake_ok", 10);
      for (const h of handshakes) {
        equal(h.group, "SecP384r1MLKEM1024");
        if (h.resumed) continue;
        equal(h.scheme, "mldsa65");
        equal(h.client_scheme, "mldsa65");
      }
      ok(handshakes[0].resumed === false, "the first connection is a full handshake");
      ok(handshakes.some((h) => h.resumed === true), "later requests resume the sidecar's session");
    },
  );

  await t.step("nginx answers 502 when the node is down", async () => {
    await path.node.stop("SIGTERM");
    equal((await curl(path.url("/api/hello"), dir.path)).status, 502);
  });
});

Deno.test("nginx answers 502 when the node's access policy refuses the sidecar", async () => {
  await using dir = await tempDir("qsign-gateway-denied-");
  const pki = await makePki(`${dir.path}/pki`);
  await using http = backend();
  await using path = await chain(dir.path, pki, http, ["--allow-cn", "someone-else"]);
  equal((await curl(path.url("/api/hello"), dir.path)).status, 502);
  const refused = await path.node.waitFor((e) => e.event === "handshake_failed");
  ok(JSON.stringify(refused).includes("access"), JSON.stringify(refused));
});

Deno.test("the APISIX configuration routes the seed's API through the same sidecar", async () => {
  const { parse } = await import("yaml");
  const read = (name: string) => Deno.readTextFile(`${ROOT}/deploy/apisix/${name}`);
  const config = parse(await read("config.yaml"));
  equal(config.deployment.role_data_plane.config_provider, "yaml");
  const routesText = await read("apisix.yaml");
  ok(routesText.trimEnd().endsWith("#END"), "stand-alone rules end with #END");
  const routes = parse(routesText);
  const ids = routes.routes.map((r: { id: string }) => r.id);
  ok(ids.includes("qtls-secure-api") && ids.includes("qtls-admin"), ids.join(","));
  for (const route of routes.routes) ok(route.plugins["key-auth"], `${route.id} needs a key`);
  ok(routes.routes[0].plugins["limit-count"], "the API is rate limited");
  const sidecar = Object.keys(routes.upstreams[0].nodes)[0];
  const nginx = await Deno.readTextFile(`${ROOT}/deploy/nginx/qsign-gateway.conf`);
  ok(nginx.includes(`server ${sidecar}`), `nginx and APISIX both use the sidecar ${sidecar}`);
  const mtls = await read("apisix-upstream-mtls.yaml");
  equal(parse(mtls).upstreams[0].scheme, "https");
  const compose = parse(await read("docker-compose.yml"));
  for (const service of ["apisix", "etcd", "qsign-sidecar", "qsign-node"]) {
    ok(compose.services[service], `docker-compose has ${service}`);
  }
});
