// A TLS 1.3 server on the OpenSSL 3.5 inside Node.js: mutual TLS with the given certificate
// chain and key, trusting only the given CA file, hybrid group SecP384r1MLKEM1024 only.
// Usage: node tls_server.mjs CERT KEY CA. Prints {"port":N}, then one JSON line per connection
// attempt; exits when stdin closes.
import { readFileSync } from "node:fs";
import tls from "node:tls";

const [certFile, keyFile, caFile] = process.argv.slice(2);
const server = tls.createServer({
  cert: readFileSync(certFile),
  key: readFileSync(keyFile),
  ca: readFileSync(caFile),
  requestCert: true,
  rejectUnauthorized: true,
  minVersion: "TLSv1.3",
  ecdhCurve: "SecP384r1MLKEM1024",
});
const report = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);
server.on("secureConnection", (socket) => {
  report({
    event: "secure",
    protocol: socket.getProtocol(),
    authorized: socket.authorized,
    peerSubject: socket.getPeerCertificate().subject?.CN,
    cipher: socket.getCipher().name,
    peerKeyType: socket.getPeerX509Certificate()?.publicKey.asymmetricKeyType,
  });
  socket.end("hello from the OpenSSL 3.5 server\n");
});
server.on(
  "tlsClientError",
  (error) => report({ event: "clientError", code: error.code, message: error.message }),
);
server.listen(0, "127.0.0.1", () => report({ port: server.address().port }));
process.stdin.resume();
process.stdin.on("end", () => server.close(() => process.exit(0)));
