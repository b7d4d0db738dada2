/**
 * Three `qsign serve` nodes on loopback behind Debian's HAProxy, configured from the shipped
 * deploy/haproxy/haproxy.cfg (TCP passthrough, PROXY v2 to the nodes, health from each node's
 * /readyz). The nodes proxy to an echo backend with a PROXY v2 header of their own. Proved, in
 * order: even distribution; the client's own address in the audit log and at the backend;
 * per-IP limits keyed on the real client (two clients, 127.0.0.2 and 127.0.0.3); resumption on a
 * node that never saw the client, with and without a client certificate; a SIGTERM drain that
 * finishes an in-flight 10 MB transfer byte for byte; SIGKILL of a node under load with no
 * failure among the connections started once its port refuses; a rolling restart of all three
 * nodes under continuous load with no failed connection.
 */
import { equal, ok } from "node:assert/strict";
import { readProxyHeader } from "../../src/daemon/proxy_header.ts";
import { Daemon, makePki, type Pki } from "../daemon/support.ts";
import { PEER_NODE, ROOT, tempDir } from "../support/env.ts";
import { freePort, waitForPortClosed } from "../support/services.ts";

const NODES = 3;
/** New connections per second one client address may open on one node. */
const PER_IP_LIMIT = 10;
/**
 * The pause between one client's connections in the steps that stop nodes under load: two such
 * clients open about 8 connections a second, 4 on each of the two nodes left while a third is
 * down, well inside PER_IP_LIMIT, whose refill each node's two workers share (docs/workers.md).
 * A refusal there is then a defect of the restart, not the limit at work. With a 100 ms pause
 * they opened 17 a second (18 in the busiest second), about 9 on each node left, and in one CI
 * run a connection was closed unanswered.
 */
const LOAD_GAP_MS = 250;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function eventually(check: () => boolean | Promise<boolean>, what: string, ms = 30_000) {
  const deadline = Date.now() + ms;
  while (!(await Promise.resolve().then(check).catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

/** The echo backend behind the nodes: reads each node's PROXY v2 header, then echoes. */
function echoBackend(): { port: number; clients: string[] } & Disposable {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const clients: string[] = [];
  void (async () => {
    for await (const conn of listener) {
      void (async () => {
        try {
          const header = await readProxyHeader(conn);
          if (header.command === "proxy") clients.push(header.source.hostname);
          const buffer = new Uint8Array(65536);
          for (let n; (n = await conn.read(buffer)) !== null;) {
            for (let written = 0; written < n;) {
              written += await conn.write(buffer.subarray(written, n));
            }
          }
          conn.closeWrite();
        } catch {
          // The node closed: nothing to echo.
        } finally {
          try {
            conn.close();
          } catch { /* already closed */ }
        }
      })();
    }
  })().catch(() => {});
  return { port: listener.addr.port, clients, [Symbol.dispose]: () => listener.close() };
}

interface NodePorts {
  tls: number;
  metrics: number;
}

/** The shipped HAProxy configuration, pointed at the test's nodes and sockets. */
async function haproxyConfig(dir: string, front: number, nodes: NodePorts[]): Promise<string> {
  let text = await Deno.readTextFile(`${ROOT}/deploy/haproxy/haproxy.cfg`);
  const replace = (from: string | RegExp, to: string) => {
    const before = text;
    text = text.replace(from, to);
    ok(before !== text, `the shipped haproxy.cfg has ${from}`);
  };
  replace("    log /dev/log local0\n", "");
  // The test machine's file descriptor limit is below what maxconn 20000 reserves.
  replace("    maxconn 20000\n", "    maxconn 2000\n");
  replace("stats socket /run/haproxy/admin.sock", `stats socket ${dir}/admin.sock`);
  replace("    bind :443", `    bind 127.0.0.1:${front}`);
  // One host here, so each node's metrics port differs; checks more often for a quicker test.
  replace("check port 9090 inter 2s", "check inter 300ms");
  for (let i = 0; i < NODES; i++) {
    replace(
      `server qtls-node${i + 1} 10.0.1.1${i + 1}:8443`,
      `server qtls-node${i + 1} 127.0.0.1:${nodes[i].tls} port ${nodes[i].metrics}`,
    );
  }
  const path = `${dir}/haproxy.cfg`;
  await Deno.writeTextFile(path, text);
  return path;
}

/** One command on HAProxy's runtime API socket; returns the answer. */
async function haproxyCommand(dir: string, command: string): Promise<string> {
  const conn = await Deno.connect({ transport: "unix", path: `${dir}/admin.sock` });
  try {
    await conn.write(new TextEncoder().encode(`${command}\n`));
    return await new Response(conn.readable).text();
  } catch (e) {
    conn.close();
    throw e;
  }
}

/** Whether HAProxy's check has node `i` UP. */
async function nodeUp(dir: string, i: number): Promise<boolean> {
  const csv = await haproxyCommand(dir, "show stat");
  const row = csv.split("\n").find((line) => line.startsWith(`qsign_nodes,qtls-node${i + 1},`));
  return row?.split(",")[17] === "UP";
}

interface ClientResult {
  start: number;
  end: number;
  resumed?: boolean;
  error?: string;
  exact?: boolean;
}

interface ClientOptions {
  localAddress: string;
  count: number;
  concurrency?: number;
  bytes?: number;
  pauseMs?: number;
  gapMs?: number;
  resume?: boolean;
  certificate?: boolean;
  stopFile?: string;
}

/** Runs the Node 26 clients through HAProxy; resolves to every connection's result. */
function clients(front: number, pki: Pki, o: ClientOptions): Promise<ClientResult[]> {
  const args = [
    `${ROOT}/tests/cluster/peer/clients.mjs`,
    ...["--port", String(front), "--ca", pki.root, "--local-address", o.localAddress],
    ...["--count", String(o.count), "--concurrency", String(o.concurrency ?? 1)],
    ...["--bytes", String(o.bytes ?? 1024), "--pause-ms", String(o.pauseMs ?? 0)],
    ...["--gap-ms", String(o.gapMs ?? 0), "--duration-ms", "90000"],
    ...(o.resume ? ["--resume"] : []),
    ...(o.certificate ? ["--cert", pki.clientCert, "--key", pki.clientKey] : []),
    ...(o.stopFile ? ["--stop-file", o.stopFile] : []),
  ];
  return new Deno.Command(PEER_NODE, { args, stdin: "null", stdout: "piped", stderr: "piped" })
    .output()
    .then((out) => {
      const decoder = new TextDecoder();
      ok(out.success, `clients.mjs failed: ${decoder.decode(out.stderr)}`);
      return JSON.parse(decoder.decode(out.stdout));
    });
}

Deno.test("a qsign cluster behind HAProxy", async (t) => {
  await using dir = await tempDir("qsign-cluster-");
  const pki = await makePki(`${dir.path}/pki`);
  const ticketKeyFile = `${dir.path}/ticket.key`;
  await Deno.writeTextFile(
    ticketKeyFile,
    Array.from(crypto.getRandomValues(new Uint8Array(32)), (b) => b.toString(16).padStart(2, "0"))
      .join("") + "\n",
    { mode: 0o600 },
  );
  using backend = echoBackend();
  const ports: NodePorts[] = Array.from({ length: NODES }, () => ({
    tls: freePort(),
    metrics: freePort(),
  }));
  const startNode = (i: number) =>
    Daemon.start([
      ...[
        "--listen",
        `127.0.0.1:${ports[i].tls}`,
        "--metrics-listen",
        `127.0.0.1:${ports[i].metrics}`,
      ],
      ...["--cert", pki.serverCert, "--key", pki.serverKey, "--ca", pki.root],
      ...["--client-auth", "request", "--ticket-key-file", ticketKeyFile],
      ...["--mode", "proxy", "--target", `127.0.0.1:${backend.port}`, "--proxy-protocol"],
      ...["--accept-proxy-protocol", "--proxy-from", "127.0.0.1/32"],
      ...["--max-handshakes-per-ip", String(PER_IP_LIMIT)],
    ]);
  const nodes: Daemon[] = [];
  for (let i = 0; i < NODES; i++) nodes.push(await startNode(i));
  const front = freePort();
  const config = await haproxyConfig(dir.path, front, ports);
  const haproxy = new Deno.Command("haproxy", {
    args: ["-f", config, "-db"],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const haproxyLog = new Response(haproxy.stderr).text();
  const stopHaproxy = () => {
    try {
      haproxy.kill("SIGTERM");
    } catch {
      // It has exited already (its log says why).
    }
  };
  /** Handshakes each node completed for clients from `address`. */
  const handshakesFrom = (address: string) =>
    nodes.map((node) =>
      node.events.filter((e) =>
        e.event === "handshake_ok" && String(e.peer).startsWith(`${address}:`)
      )
    );
  /** A failed step does not throw: its name is kept, so that HAProxy's log (its health-check
   * verdicts: which node went DOWN, and why) is printed with the failure. */
  const failedSteps: string[] = [];
  const step = async (name: string, fn: () => void | Promise<void>) => {
    if (!(await t.step(name, fn))) failedSteps.push(name);
  };
  try {
    for (let i = 0; i < NODES; i++) await eventually(() => nodeUp(dir.path, i), `node ${i + 1} up`);

    await step("connections spread evenly over the nodes", async () => {
      const results = await clients(front, pki, {
        localAddress: "127.0.0.2",
        count: 30,
        gapMs: 50,
      });
      equal(
        results.filter((r) => r.error).length,
        0,
        JSON.stringify(results.filter((r) => r.error)),
      );
      await eventually(
        () => handshakesFrom("127.0.0.2").flat().length === 30,
        "30 handshakes logged",
      );
      equal(handshakesFrom("127.0.0.2").map((h) => h.length).join(","), "10,10,10");
    });

    await step("the client's address reaches the audit log and the backend", () => {
      ok(backend.clients.includes("127.0.0.2"), `backend saw ${[...new Set(backend.clients)]}`);
      ok(!backend.clients.includes("127.0.0.1"), "no connection is attributed to HAProxy");
    });

    await step("per-IP limits count the real client, not HAProxy", async () => {
      const [flood, calm] = await Promise.all([
        clients(front, pki, { localAddress: "127.0.0.3", count: 90, concurrency: 12 }),
        clients(front, pki, { localAddress: "127.0.0.4", count: 6, gapMs: 300 }),
      ]);
      ok(flood.some((r) => r.error), "the flooding client is limited");
      equal(calm.filter((r) => r.error).length, 0, "the other client is not");
      const refused = nodes.flatMap((n) => n.events.filter((e) => e.event === "refused"));
      ok(refused.length > 0, "refusals are logged");
      ok(
        refused.every((e) =>
          e.reason === "rate_limited" && String(e.peer).startsWith("127.0.0.3:")
        ),
        JSON.stringify(refused),
      );
      await sleep(1_100); // let the per-second windows pass
    });

    for (const [address, certificate] of [["127.0.0.5", false], ["127.0.0.6", true]] as const) {
      await step(
        `a ticket resumes on a node that never saw the client (${
          certificate ? "with" : "without"
        } a client certificate)`,
        async () => {
          const results = await clients(front, pki, {
            localAddress: address,
            count: 3,
            gapMs: 300,
            resume: true,
            certificate,
          });
          equal(results.filter((r) => r.error).length, 0, JSON.stringify(results));
          equal(results[0].resumed, false);
          ok(results.slice(1).every((r) => r.resumed), JSON.stringify(results));
          const perNode = handshakesFrom(address);
          await eventually(() => handshakesFrom(address).flat().length === 3, "3 handshakes");
          // Round robin: three connections, three nodes, each seeing this client once.
          equal(handshakesFrom(address).map((h) => h.length).join(","), "1,1,1", String(perNode));
          const resumed = handshakesFrom(address).flat().filter((e) => e.resumed === true);
          equal(resumed.length, 2);
          if (certificate) {
            ok(resumed.every((e) => String(e.client_subject).includes("qtls-client")));
          }
        },
      );
    }

    await step("SIGTERM drains an in-flight 10 MB transfer to the last byte", async () => {
      const transfer = clients(front, pki, {
        localAddress: "127.0.0.7",
        count: 1,
        bytes: 10 * 2 ** 20,
        pauseMs: 5,
      });
      let carrier = -1;
      await eventually(() => {
        carrier = handshakesFrom("127.0.0.7").findIndex((h) => h.length > 0);
        return carrier >= 0;
      }, "the transfer's handshake");
      await sleep(500);
      nodes[carrier].signal("SIGTERM");
      const [result] = await transfer;
      equal(result.error, undefined);
      equal(result.exact, true);
      equal((await nodes[carrier].exited()).code, 0);
      nodes[carrier] = await startNode(carrier);
      await eventually(() => nodeUp(dir.path, carrier), "the drained node back up");
    });

    await step("SIGKILL of a node: no failure among the connections started after", async () => {
      const load = clients(front, pki, {
        localAddress: "127.0.0.8",
        count: 80,
        concurrency: 2,
        gapMs: LOAD_GAP_MS,
      });
      await sleep(2_000);
      await nodes[2].stop("SIGKILL");
      // The node's workers exit once they see the supervisor's channel close; until then they
      // still accept, and what they accepted dies with them, as on any crash. The node is down
      // when its port refuses: from then on HAProxy must send every connection elsewhere.
      await waitForPortClosed(ports[2].tls, "the killed node");
      const killedAt = Date.now();
      const results = await load;
      const late = results.filter((r) => r.start > killedAt);
      ok(late.length > 20, `connections after the kill: ${late.length}`);
      equal(late.filter((r) => r.error).length, 0, JSON.stringify(late.filter((r) => r.error)));
      nodes[2] = await startNode(2);
      await eventually(() => nodeUp(dir.path, 2), "the killed node back up");
    });

    await step("a rolling restart of every node under load fails no connection", async () => {
      const stopFile = `${dir.path}/stop-load`;
      const load = clients(front, pki, {
        localAddress: "127.0.0.9",
        count: 5_000,
        concurrency: 2,
        gapMs: LOAD_GAP_MS,
        stopFile,
      });
      const stopped: Daemon[] = [];
      for (let i = 0; i < NODES; i++) {
        // As an operator would: drain the node in HAProxy, then stop and restart it.
        await haproxyCommand(dir.path, `set server qsign_nodes/qtls-node${i + 1} state drain`);
        await sleep(1_000);
        nodes[i].signal("SIGTERM");
        equal((await nodes[i].exited()).code, 0);
        stopped.push(nodes[i]);
        nodes[i] = await startNode(i);
        await haproxyCommand(dir.path, `set server qsign_nodes/qtls-node${i + 1} state ready`);
        await eventually(() => nodeUp(dir.path, i), `node ${i + 1} up again`);
      }
      await Deno.writeTextFile(stopFile, "");
      const results = await load;
      ok(results.length > 20, `connections during the restart: ${results.length}`);
      const refusals = [...stopped, ...nodes].flatMap((node) =>
        node.events.filter((e) => e.event === "refused" || e.event === "handshake_failed")
      );
      equal(
        results.filter((r) => r.error).length,
        0,
        `${JSON.stringify(results.filter((r) => r.error))}; the nodes refused or failed: ${
          JSON.stringify(refusals)
        }`,
      );
    });
  } catch (e) {
    stopHaproxy();
    throw new Error(`${(e as Error).message}\nhaproxy: ${await haproxyLog}`, { cause: e });
  } finally {
    stopHaproxy();
    await haproxy.status;
    if (failedSteps.length) {
      console.error(`failed: ${failedSteps.join("; ")}\nhaproxy: ${await haproxyLog}`);
    }
    for (const node of nodes) await node.stop("SIGKILL");
  }
});
