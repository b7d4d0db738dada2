/**
 * Three independent TLS clients keep qsign's mutual-TLS tickets and resume with them: OpenSSL
 * 3.5 (Node 26), BoringSSL (Bun's node:tls) and rustls (Deno's fetch in a subprocess). The
 * chain is ECDSA P-384 (what all three verify); the ticket carries the same facts for any key
 * type (an ML-DSA-65 chain's ticket size is in resumption_test.ts).
 */
import { equal, ok } from "node:assert/strict";
import { join } from "node:path";
import { acceptTls } from "../../src/tls/conn.ts";
import type { HandshakeInfo, TlsServerConfig } from "../../src/tls/config.ts";
import { TicketKeys } from "../../src/tls/tickets.ts";
import { DENO, PEER_NODE, ROOT, tempDir } from "../support/env.ts";
import { makePki, mutualTlsServer } from "./support/pki.ts";
import { EchoServer } from "./support/qsign.ts";

const BUN = `${ROOT}/.tools/node_modules/.bin/bun`;

/** node:tls client for Node and Bun: two connections, the second with the first's session. */
const NODE_TLS_CLIENT = `
const tls = require("node:tls");
const fs = require("node:fs");
const [port, ca, cert, key] = process.argv.slice(-4);
const options = {
  host: "127.0.0.1", port: Number(port), servername: "localhost",
  ca: fs.readFileSync(ca), cert: fs.readFileSync(cert), key: fs.readFileSync(key),
  minVersion: "TLSv1.3",
};
function visit(session) {
  return new Promise((resolve, reject) => {
    let latest;
    const socket = tls.connect({ ...options, session }, () => socket.write("ping"));
    socket.on("session", (s) => latest = s);
    socket.once("data", () => setTimeout(() => {
      const reused = socket.isSessionReused();
      socket.end();
      resolve({ reused, session: latest });
    }, 100));
    socket.on("error", reject);
  });
}
(async () => {
  const first = await visit(undefined);
  if (!first.session) throw new Error("no session received");
  const second = await visit(first.session);
  console.log(JSON.stringify({ first: first.reused, second: second.reused }));
})().catch((e) => { console.error(e.stack || String(e)); process.exit(1); });
`;

/**
 * rustls through Deno's fetch: one HttpClient is one rustls ClientConfig, whose session store
 * keeps tickets across connections (the server closes each one: connection: close).
 * Deno.connectTls makes a new ClientConfig for every call, so it never resumes.
 */
const RUSTLS_CLIENT = `
const [port, ca, cert, key] = Deno.args;
const client = Deno.createHttpClient({
  caCerts: [Deno.readTextFileSync(ca)], cert: Deno.readTextFileSync(cert),
  key: Deno.readTextFileSync(key), http2: false,
});
for (let i = 0; i < 2; i++) {
  const response = await fetch(\`https://localhost:\${port}/\`, { client });
  if ((await response.text()) !== "ok") throw new Error("unexpected reply");
}
`;

/** A one-reply HTTP/1.1 server on qsign's engine: reads a request, answers, closes. */
class HttpOnce implements AsyncDisposable {
  readonly infos: HandshakeInfo[] = [];
  readonly #listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  readonly #loop: Promise<void>;
  constructor(config: TlsServerConfig) {
    this.#loop = (async () => {
      for await (const tcp of this.#listener) {
        try {
          const tls = await acceptTls(tcp, config);
          this.infos.push(tls.info);
          const reader = tls.readable.getReader();
          await reader.read();
          reader.releaseLock();
          const writer = tls.writable.getWriter();
          await writer.write(new TextEncoder().encode(
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
          ));
          writer.releaseLock();
          await tls.close();
        } catch {
          // recorded by the client's failure
        }
      }
    })();
  }
  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }
  async [Symbol.asyncDispose]() {
    this.#listener.close();
    await this.#loop.catch(() => {});
  }
}

async function run(command: string, args: string[]): Promise<string> {
  const child = new Deno.Command(command, { args, stdout: "piped", stderr: "piped" }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  const out = await child.output();
  clearTimeout(timer);
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) throw new Error(`${command} failed: ${new TextDecoder().decode(out.stderr)}`);
  return text;
}

Deno.test("OpenSSL, BoringSSL and rustls clients resume qsign's mutual-TLS tickets", async (t) => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`, "ecdsa-p384");
  const files = {
    ca: join(dir.path, "root.pem"),
    cert: join(dir.path, "client.pem"),
    key: join(dir.path, "client.key"),
  };
  await Deno.writeTextFile(files.ca, pki.rootPem);
  await Deno.writeTextFile(files.cert, pki.clientCertPem);
  await Deno.writeTextFile(files.key, pki.clientKeyPem);

  const check = ([full, resumed]: HandshakeInfo[]) => {
    equal(full.resumed, false);
    equal(resumed.resumed, true, resumed.resumptionDeclined);
    equal(resumed.peerIdentity?.cn[0], "qtls-client.qsign.local");
  };
  const config = (): TlsServerConfig => ({
    ...mutualTlsServer(pki),
    tickets: TicketKeys.random(),
  });
  /** The two handshakes an echo server saw. */
  const infos = async (server: EchoServer) =>
    (await server.waitFor(2)).map((o) => {
      ok("info" in o, "error" in o ? o.error.message : "");
      return o.info;
    });
  const args = (port: number) => [String(port), files.ca, files.cert, files.key];

  for (const [name, binary] of [["OpenSSL 3.5 (Node 26)", PEER_NODE], ["BoringSSL (Bun)", BUN]]) {
    await t.step(name, async () => {
      await using s = new EchoServer(config());
      const result = JSON.parse(await run(binary, ["-e", NODE_TLS_CLIENT, "--", ...args(s.port)]));
      equal(result.second, true, JSON.stringify(result));
      check(await infos(s));
    });
  }

  await t.step("rustls (Deno's fetch)", async () => {
    await using s = new HttpOnce(config());
    const script = join(dir.path, "rustls_client.ts");
    await Deno.writeTextFile(script, RUSTLS_CLIENT);
    await run(DENO, ["run", "--allow-read", "--allow-net", script, ...args(s.port)]);
    equal(s.infos.length, 2);
    check(s.infos);
  });
});
