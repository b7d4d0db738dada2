// The OpenSSL 3.5 reference peer, run by Node 26 (PEER_NODE). One process serves many test
// cases: it reads JSON commands on stdin, one per line, and answers each with one JSON line
// carrying the same id.
//   {"id", "op": "listen", "options"}            -> {"port", "server"}  echo server
//   {"id", "op": "events", "server"}             -> {"events"}           and forgets them
//   {"id", "op": "connect", "port", "options", "sendBytes"?, "message"?} -> handshake facts + echo
//   {"id", "op": "close", "server"}
// Options use Node's tls names plus: groups (-> ecdhCurve), sigalgs (array), alpn (array).
import tls from "node:tls";
import crypto from "node:crypto";
import readline from "node:readline";

const servers = new Map();
let nextServer = 1;

function tlsOptions(o) {
  const out = {
    minVersion: "TLSv1.3",
    maxVersion: "TLSv1.3",
    ca: o.ca,
    cert: o.cert,
    key: o.key,
  };
  if (o.groups) out.ecdhCurve = o.groups.join(":");
  if (o.sigalgs) out.sigalgs = o.sigalgs.join(":");
  // Node takes TLS 1.3 suite names in `ciphers`.
  if (o.ciphersuites) out.ciphers = o.ciphersuites;
  if (o.alpn) out.ALPNProtocols = o.alpn;
  if (o.servername !== undefined) out.servername = o.servername;
  if (o.session) out.session = Buffer.from(o.session, "base64");
  if (o.requestCert !== undefined) out.requestCert = o.requestCert;
  if (o.crl) out.crl = o.crl;
  out.rejectUnauthorized = o.rejectUnauthorized ?? true;
  if (o.sniContexts) {
    const contexts = Object.fromEntries(
      Object.entries(o.sniContexts).map((
        [name, c],
      ) => [name, tls.createSecureContext({ ca: o.ca, ...c })]),
    );
    out.SNICallback = (name, cb) => cb(null, contexts[name]);
  }
  return out;
}

function facts(socket) {
  const peer = socket.getPeerCertificate();
  return {
    protocol: socket.getProtocol(),
    cipher: socket.getCipher()?.standardName,
    alpn: socket.alpnProtocol || undefined,
    peerSubject: peer?.subject?.CN,
    reused: socket.isSessionReused(),
    servername: socket.servername || undefined,
    group: socket.getEphemeralKeyInfo?.()?.name,
  };
}

const handlers = {
  listen({ options }) {
    const id = nextServer++;
    const events = [];
    const server = tls.createServer(tlsOptions(options), (socket) => {
      // With rejectUnauthorized false, OpenSSL's verdict on the client chain is recorded here
      // (Node never lets OpenSSL refuse a chain with an alert: it checks after the handshake).
      if (options.requestCert && !socket.authorized) {
        events.push({ event: "unauthorized", code: socket.authorizationError });
        socket.destroy();
        return;
      }
      events.push({ event: "secure", ...facts(socket) });
      socket.on(
        "error",
        (e) => events.push({ event: "socket-error", code: e.code, message: e.message }),
      );
      socket.pipe(socket);
    });
    server.on(
      "tlsClientError",
      (e) => events.push({ event: "tls-error", code: e.code, message: e.message }),
    );
    servers.set(id, { server, events });
    return new Promise((resolve) =>
      server.listen(0, "127.0.0.1", () => resolve({ server: id, port: server.address().port }))
    );
  },
  events({ server }) {
    const s = servers.get(server);
    const events = s.events.splice(0);
    return { events };
  },
  close({ server }) {
    const s = servers.get(server);
    servers.delete(server);
    return new Promise((resolve) => s.server.close(() => resolve({})));
  },
  connect({ port, options, sendBytes, message }) {
    return new Promise((resolve) => {
      const payload = message !== undefined
        ? Buffer.from(message)
        : crypto.randomBytes(sendBytes ?? 64);
      const expected = crypto.createHash("sha256").update(payload).digest("hex");
      const hash = crypto.createHash("sha256");
      let received = 0;
      let info;
      let session;
      let done = false;
      const finish = (result) => {
        if (done) return;
        done = true;
        socket.destroy();
        resolve(result);
      };
      const socket = tls.connect({ host: "127.0.0.1", port, ...tlsOptions(options) }, () => {
        info = facts(socket);
        socket.write(payload);
      });
      socket.on("session", (s) => session = s.toString("base64"));
      socket.on("data", (d) => {
        hash.update(d);
        received += d.length;
        if (received >= payload.length) {
          // Give a NewSessionTicket sent after the data a moment to arrive.
          setTimeout(() =>
            finish({
              ok: true,
              ...info,
              received,
              echoed: hash.digest("hex") === expected,
              session,
            }), options.session || options.wantSession ? 50 : 0);
        }
      });
      socket.on("error", (e) => finish({ ok: false, code: e.code, message: e.message, ...info }));
      socket.on("end", () => finish({ ok: false, code: "EOF", received, ...info }));
    });
  },
};

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", async (line) => {
  const cmd = JSON.parse(line);
  try {
    const result = await handlers[cmd.op](cmd);
    process.stdout.write(JSON.stringify({ id: cmd.id, ...result }) + "\n");
  } catch (e) {
    process.stdout.write(
      JSON.stringify({ id: cmd.id, ok: false, code: e.code, message: e.message }) + "\n",
    );
  }
});
rl.on("close", () => {
  for (const { server } of servers.values()) server.close();
  process.exit(0);
});
