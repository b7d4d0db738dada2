// A TLS 1.3 client on the OpenSSL 3.5 inside Node.js, offering only SecP384r1MLKEM1024.
// Usage: node tls_client.mjs PORT SERVERNAME CA [CERT KEY]. Prints one JSON line: what was
// negotiated and what the server sent, or the error that ended the connection.
import { readFileSync } from "node:fs";
import tls from "node:tls";

const [port, servername, caFile, certFile, keyFile] = process.argv.slice(2);
const result = { connected: false, data: "" };
const socket = tls.connect({
  host: "127.0.0.1",
  port: Number(port),
  servername,
  ca: readFileSync(caFile),
  cert: certFile ? readFileSync(certFile) : undefined,
  key: keyFile ? readFileSync(keyFile) : undefined,
  minVersion: "TLSv1.3",
  ecdhCurve: "SecP384r1MLKEM1024",
  rejectUnauthorized: true,
});
socket.on("secureConnect", () => {
  Object.assign(result, {
    connected: true,
    protocol: socket.getProtocol(),
    ephemeralKey: socket.getEphemeralKeyInfo(),
    authorized: socket.authorized,
    peerSubject: socket.getPeerCertificate().subject?.CN,
    peerKeyType: socket.getPeerX509Certificate()?.publicKey.asymmetricKeyType,
  });
});
socket.on("data", (chunk) => (result.data += chunk));
socket.on("error", (error) => (result.error = { code: error.code, message: error.message }));
socket.on("close", () => process.stdout.write(`${JSON.stringify(result)}\n`));
