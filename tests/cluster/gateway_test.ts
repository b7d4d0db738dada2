/**
 * The gateway path with real parts: curl → nginx (Debian's nginx-light, configured from the
 * shipped deploy/nginx/qsign-gateway.conf) → a `qsign connect --listen` sidecar → `qsign serve
 * --mode proxy --client-auth require --require-pq-auth` → an HTTP backend. APISIX is built on
 * nginx and cannot be installed here; its configuration in deploy/apisix/ routes the same way.
 */
import { equal, ok } from "node:assert/strict";
import { makePki } from "../daemon/support.ts";
import { ROOT, tempDir } from "../support/env.ts";
import { backend, bigDigest, chain, curl } from "./support.ts";

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
