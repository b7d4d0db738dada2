// The OpenSSL 3.5 side of the comparison: a Node 26 TLS 1.3 server with mutual authentication,
// speaking qsign's echo-mode protocol (one reply line per chunk read, naming its length) or, with
// --mode echo, sending every byte back. Prints {"port", "pid"} on stdout once listening; runs
// until SIGTERM/SIGINT.
//   node server.mjs --cert F --key F --ca F [--group G] [--port 0] [--mode reply|echo] [--lang ko|en]
//     [--no-client-auth]
import tls from "node:tls";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

const { values: o } = parseArgs({
  options: {
    cert: { type: "string" },
    key: { type: "string" },
    ca: { type: "string" },
    group: { type: "string", default: "SecP384r1MLKEM1024" },
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "0" },
    mode: { type: "string", default: "reply" },
    lang: { type: "string", default: "ko" },
    "no-client-auth": { type: "boolean", default: false },
  },
});

// The same text as qsign's echoReply (src/daemon/handlers.ts).
const reply = (session, bytes) =>
  o.lang === "ko"
    ? `QSIGN 서버 응답 [세션 #${session}]: 메시지 수신 완료 (${bytes} 바이트)\n`
    : `QSIGN server reply [session #${session}]: message received (${bytes} bytes)\n`;

let sessions = 0;
const server = tls.createServer({
  minVersion: "TLSv1.3",
  cert: readFileSync(o.cert),
  key: readFileSync(o.key),
  ca: readFileSync(o.ca),
  ecdhCurve: o.group,
  requestCert: !o["no-client-auth"],
  rejectUnauthorized: !o["no-client-auth"],
}, (socket) => {
  const session = ++sessions;
  socket.on("error", () => socket.destroy());
  if (o.mode === "echo") {
    socket.pipe(socket);
    return;
  }
  // Backpressure as in qsign: the next chunk is read once the reply is written.
  socket.on("data", (chunk) => {
    if (!socket.write(reply(session, chunk.length))) {
      socket.pause();
      socket.once("drain", () => socket.resume());
    }
  });
});
server.on("tlsClientError", () => {});
server.listen(Number(o.port), o.host, () => {
  process.stdout.write(JSON.stringify({ port: server.address().port, pid: process.pid }) + "\n");
});
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.close();
    process.exit(0);
  });
}
