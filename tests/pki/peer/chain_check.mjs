// OpenSSL 3.5's path validation as Node.js 26 runs it in TLS: for each case, a TLS 1.3 server
// on 127.0.0.1 presents the chain (leaf first) with the leaf's key, and a client trusting only
// the given root connects with the given server name.
// Usage: node chain_check.mjs CASES.json, where each case is
// {name, chain: [PEM...], key: PEM, root: PEM, host}. Prints a JSON array of
// {name, authorized, error}.
import { readFileSync } from "node:fs";
import tls from "node:tls";

const cases = JSON.parse(readFileSync(process.argv[2], "utf8"));
const results = [];
for (const c of cases) {
  results.push(await check(c));
}
process.stdout.write(JSON.stringify(results));

function check(c) {
  return new Promise((resolve) => {
    const server = tls.createServer({ cert: c.chain.join(""), key: c.key, minVersion: "TLSv1.3" });
    server.on("tlsClientError", () => {});
    server.listen(0, "127.0.0.1", () => {
      const socket = tls.connect({
        host: "127.0.0.1",
        port: server.address().port,
        servername: c.host,
        ca: c.root,
        minVersion: "TLSv1.3",
        rejectUnauthorized: false,
      });
      const done = (result) => {
        socket.destroy();
        server.close();
        resolve({ name: c.name, ...result });
      };
      socket.on("secureConnect", () => {
        const identity = tls.checkServerIdentity(c.host, socket.getPeerCertificate());
        done({
          authorized: socket.authorized && !identity,
          error: socket.authorizationError ?? identity?.message,
        });
      });
      socket.on("error", (e) => done({ authorized: false, error: e.code ?? e.message }));
    });
  });
}
