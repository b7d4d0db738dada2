/**
 * Path building is bounded: the cross-certificate maze (a leaf issued by CN=X, m certificates
 * X←Y and m certificates Y←X, no key identifiers: (m!)² simple paths) is refused after a
 * bounded amount of work, and the event loop keeps turning meanwhile. Proved on the verifier,
 * on `qsign pki verify`, on a running `qsign serve --client-auth require` (the maze as a client
 * Certificate: /healthz answers and a legitimate mutual-TLS client gets through while it runs)
 * and on `qsign connect` against a server that presents the maze.
 */
import { equal, match, ok } from "node:assert/strict";
import { TlsAlert, TlsError, TlsHandshakeError } from "../../src/tls/alert.ts";
import { ChainPeerVerifier, withHandshakeDeadline } from "../../src/tls/peer.ts";
import type { TlsClientConfig } from "../../src/tls/config.ts";
import { connectTls } from "../../src/tls/conn.ts";
import {
  ChainVerificationError,
  MAX_PRESENTED_CERTIFICATES,
  PATH_BUILDING_BUDGET,
  verifyChain,
} from "../../src/pki/verify.ts";
import { pemEncode } from "../../src/pki/pem.ts";
import {
  clientArgs,
  Daemon,
  exchange,
  makePki as makeDaemonPki,
  qsignClient,
  qsignClientConfig,
  serveArgs,
} from "../daemon/support.ts";
import { PEER_NODE, runQsign, tempDir } from "../support/env.ts";
import { makePki, mutualTlsClient, mutualTlsServer } from "../tls/support/pki.ts";
import { EchoServer, qsignEcho } from "../tls/support/qsign.ts";
import { makeChain } from "./helpers.ts";
import { crossCertificateMaze, watchEventLoop } from "./maze.ts";

/**
 * Event-loop lateness allowed while a maze is verified. On an idle machine the verifier holds
 * the loop 2-8 ms at most; the unbounded search held it for minutes. The margin absorbs the
 * preemption of a loaded two-core machine, which the lateness timer cannot tell apart.
 */
const LOOP_DELAY_BOUND_MS = 100;
const SIZES = [8, 12];

const { root } = await makeChain("ecdsa-p256");

for (const m of SIZES) {
  for (const validSignatures of [false, true]) {
    const kind = validSignatures ? "valid" : "junk";
    Deno.test(`the verifier refuses an m=${m} maze with ${kind} signatures, yielding`, async () => {
      const maze = await crossCertificateMaze(m, { validSignatures });
      const loop = watchEventLoop();
      let caught: unknown;
      try {
        await verifyChain(maze.chain[0], {
          trustAnchors: [root.der],
          intermediates: maze.chain.slice(1),
          purpose: "client",
        });
      } catch (e) {
        caught = e;
      }
      const delay = loop.stop();
      ok(caught instanceof ChainVerificationError, String(caught));
      // Junk signatures cut every path at its first link; valid ones leave only the budget.
      equal(caught.reason, validSignatures ? "budget exceeded" : "bad signature", caught.message);
      if (validSignatures) {
        match(caught.message, new RegExp(`${PATH_BUILDING_BUDGET} path-building`));
      }
      ok(delay < LOOP_DELAY_BOUND_MS, `event loop held for ${delay.toFixed(1)} ms`);
    });
  }
}

Deno.test("a deadline in the past or an aborted signal stops verification", async () => {
  const maze = await crossCertificateMaze(8, { validSignatures: true });
  const options = {
    trustAnchors: [root.der],
    intermediates: maze.chain.slice(1),
    purpose: "client" as const,
  };
  for (const extra of [{ deadline: Date.now() - 1 }, { signal: AbortSignal.abort() }]) {
    let caught: unknown;
    try {
      await verifyChain(maze.chain[0], { ...options, ...extra });
    } catch (e) {
      caught = e;
    }
    ok(caught instanceof ChainVerificationError, String(caught));
    equal(caught.reason, "budget exceeded");
    match(caught.message, /deadline|aborted/);
  }
});

Deno.test("the handshake deadline reaches the verifier across awaits", async () => {
  const maze = await crossCertificateMaze(8, { validSignatures: true });
  const verifier = new ChainPeerVerifier([root.der]);
  let caught: unknown;
  try {
    await withHandshakeDeadline(Date.now() - 1, async () => {
      await new Promise((r) => setTimeout(r, 5));
      return await verifier.verify(maze.chain, { role: "server" });
    });
  } catch (e) {
    caught = e;
  }
  ok(caught instanceof TlsAlert, String(caught));
  equal(caught.alert, "bad_certificate");
  match(caught.message, /budget exceeded: verification did not finish before its deadline/);
});

Deno.test("qsign pki verify --untrusted with the maze ends with a refusal", async () => {
  await using dir = await tempDir();
  const maze = await crossCertificateMaze(12, { validSignatures: true });
  const file = (name: string, ders: Uint8Array[]) => {
    const path = `${dir.path}/${name}`;
    Deno.writeTextFileSync(path, ders.map((d) => pemEncode("CERTIFICATE", d)).join(""));
    return path;
  };
  const result = await runQsign([
    "pki",
    "verify",
    file("leaf.pem", [maze.chain[0]]),
    "--trust",
    file("root.pem", [root.der]),
    "--untrusted",
    file("maze.pem", maze.chain.slice(1)),
  ]);
  equal(result.code, 1, result.stderr);
  match(result.stderr, /budget exceeded/);
});

/** The demo exchange from an in-process client; the TLS failure when it is refused. */
async function tryExchange(connect: () => Promise<import("../../src/tls/conn.ts").TlsConnection>) {
  try {
    const tls = await connect();
    try {
      return await exchange(tls, "hello");
    } finally {
      await tls.close();
    }
  } catch (e) {
    // TLS 1.3 clients finish before the server has judged their chain: the alert may come
    // with the handshake or with the first read.
    if (e instanceof TlsError) return e;
    throw e;
  }
}

Deno.test("qsign serve --client-auth require stays responsive while clients send the maze", async () => {
  await using dir = await tempDir();
  const pki = await makeDaemonPki(`${dir.path}/pki`);
  await using daemon = await Daemon.start(serveArgs(pki, ["--client-auth", "require"]));
  const port = daemon.port();
  const legitimate = await qsignClientConfig(pki, port);

  for (const m of SIZES) {
    const maze = await crossCertificateMaze(m, { validSignatures: true });
    const attackConfig: TlsClientConfig = { ...legitimate, certificate: maze.certified };
    // /healthz is probed from another process, so the prober's own work does not count.
    const prober = await HealthProber.start(daemon.metricsPort, 1500);
    const outcomes: (string | TlsError)[] = [];
    const legits: (string | TlsError)[] = [];
    for (let round = 0; round < 10 && !prober.done; round++) {
      const attacks = Array.from({ length: 2 }, () =>
        tryExchange(async () => {
          const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
          return await connectTls(tcp, attackConfig);
        }));
      legits.push(await tryExchange(() => qsignClient(pki, port)));
      outcomes.push(...await Promise.all(attacks));
    }
    const probes = await prober.result();

    for (const legit of legits) {
      match(String(legit), /QSIGN 서버 응답/, `legitimate client: ${legit}`);
    }
    for (const outcome of outcomes) {
      ok(outcome instanceof TlsError, `attacker was answered: ${outcome}`);
      equal(outcome.alert, "bad_certificate", outcome.message);
    }
    const failures = await daemon.waitForCount(
      (e) => e.event === "handshake_failed" && /budget exceeded/.test(String(e.reason)),
      outcomes.length,
    );
    for (const failure of failures) equal(failure.alert, "bad_certificate");
    ok(probes.length > 10, `only ${probes.length} /healthz probes`);
    const slowest = Math.max(...probes);
    ok(slowest < 100, `/healthz took ${slowest.toFixed(1)} ms during the m=${m} maze`);
  }
});

/**
 * A Node.js process fetching /healthz every 10 ms for `durationMs` once warmed up, reporting
 * each response time.
 */
class HealthProber {
  done = false;
  private constructor(
    readonly child: Deno.ChildProcess,
    readonly lines: AsyncIterator<string>,
  ) {
    child.status.then(() => this.done = true);
  }

  static async start(port: number, durationMs: number): Promise<HealthProber> {
    const script = `
      const [port, duration] = process.argv.slice(1).map(Number);
      const url = "http://127.0.0.1:" + port + "/healthz";
      const probe = async () => {
        const started = performance.now();
        const response = await fetch(url);
        await response.text();
        if (response.status !== 200) throw new Error("status " + response.status);
        return performance.now() - started;
      };
      for (let i = 0; i < 5; i++) await probe();
      console.log("ready");
      const times = [];
      for (const end = Date.now() + duration; Date.now() < end;) {
        times.push(await probe());
        await new Promise((r) => setTimeout(r, 10));
      }
      console.log(JSON.stringify(times));
    `;
    const child = new Deno.Command(PEER_NODE, {
      args: ["-e", script, String(port), String(durationMs)],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(
      new TransformStream<string, string>(
        {
          buffered: "",
          transform(chunk, controller) {
            const parts = (this.buffered + chunk).split("\n");
            this.buffered = parts.pop()!;
            for (const line of parts) controller.enqueue(line);
          },
        } as Transformer<string, string> & { buffered: string },
      ),
    )[Symbol.asyncIterator]();
    const first = await lines.next();
    equal(first.value, "ready");
    return new HealthProber(child, lines);
  }

  async result(): Promise<number[]> {
    const line = await this.lines.next();
    const status = await this.child.status;
    equal(status.code, 0);
    return JSON.parse(line.value as string) as number[];
  }
}

Deno.test("qsign connect refuses a server presenting the maze, before the handshake timeout", async () => {
  await using dir = await tempDir();
  const pki = await makeDaemonPki(`${dir.path}/pki`);
  const tlsPki = await makePki(`${dir.path}/tls`, "mldsa65");
  for (const m of SIZES) {
    const maze = await crossCertificateMaze(m, { validSignatures: true });
    await using server = new EchoServer({
      certificates: [maze.certified],
      clientAuth: "none",
      trustAnchors: [tlsPki.rootDer],
    });
    const started = Date.now();
    const result = await runQsign([
      "connect",
      `127.0.0.1:${server.port}`,
      ...clientArgs(pki),
      "--handshake-timeout",
      "30s",
      "--send",
      "hello",
    ]);
    const elapsed = Date.now() - started;
    equal(result.code, 1, result.stderr);
    match(result.stderr, /bad_certificate/);
    match(result.stderr, /budget exceeded/);
    ok(elapsed < 30_000, `refusal took ${elapsed} ms`);
    const [outcome] = await server.waitFor(1);
    ok("error" in outcome && outcome.error instanceof TlsHandshakeError);
    equal(outcome.error.alert, "bad_certificate", outcome.error.message);
  }
});

Deno.test("in-process engine: the maze on either side leaves the event loop free", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`, "mldsa65");
  await using server = new EchoServer(mutualTlsServer(pki));
  const legitimateClient: TlsClientConfig = mutualTlsClient(pki);
  const payload = new TextEncoder().encode("legitimate");
  for (const m of SIZES) {
    const maze = await crossCertificateMaze(m, { validSignatures: true });
    await using mazeServer = new EchoServer({
      certificates: [maze.certified],
      clientAuth: "none",
      trustAnchors: [pki.rootDer],
    });
    const loop = watchEventLoop();
    const asClient = qsignEcho(
      server.port,
      { ...legitimateClient, certificate: maze.certified },
      payload,
    )
      .then(() => undefined, (e) => e);
    const toServer = qsignEcho(mazeServer.port, legitimateClient, payload)
      .then(() => undefined, (e) => e);
    const legit = await qsignEcho(server.port, legitimateClient, payload);
    const [clientRefusal, serverRefusal] = await Promise.all([asClient, toServer]);
    const delay = loop.stop();

    equal(new TextDecoder().decode(legit.echo), "legitimate");
    ok(clientRefusal instanceof TlsError, `maze client: ${clientRefusal}`);
    equal(clientRefusal.alert, "bad_certificate");
    ok(serverRefusal instanceof TlsHandshakeError, `maze server: ${serverRefusal}`);
    equal(serverRefusal.alert, "bad_certificate");
    match(serverRefusal.message, /budget exceeded/);
    ok(delay < LOOP_DELAY_BOUND_MS, `event loop held for ${delay.toFixed(1)} ms (m=${m})`);
  }
});

Deno.test("duplicates are dropped and at most 10 presented certificates are considered", async () => {
  const { root, intermediate, leaf } = await makeChain("ecdsa-p256");
  const options = { trustAnchors: [root.der], purpose: "server" as const };
  // Twenty copies of the intermediate are one certificate.
  const copies = Array.from({ length: 20 }, () => intermediate.der.slice());
  const result = await verifyChain(leaf.der, { ...options, intermediates: copies });
  equal(result.chain.length, 3);
  // Ten unrelated certificates first: the intermediate, eleventh, is not considered.
  const strangers = await Promise.all(
    Array.from({ length: MAX_PRESENTED_CERTIFICATES }, () => makeChain("ecdsa-p256")),
  );
  let caught: unknown;
  try {
    await verifyChain(leaf.der, {
      ...options,
      intermediates: [...strangers.map((s) => s.intermediate.der), intermediate.der],
    });
  } catch (e) {
    caught = e;
  }
  ok(caught instanceof ChainVerificationError, String(caught));
  equal(caught.reason, "unknown issuer");
});
