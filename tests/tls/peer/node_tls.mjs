// One TLS endpoint in the node:tls API, for the runtimes that implement it over their own TLS
// stack: Bun (BoringSSL). Arguments: a JSON object.
//   {"role": "server", cert, key, ca?, requestCert?, groups?, sigalgs?}
//       prints {"port"} once listening, then one JSON line per connection: {"event": "secure"}
//       or {"event": "tls-error", code, message}; echoes application data.
//   {"role": "client", port, ca, cert?, key?, servername, groups?, sigalgs?, message}
//       prints {"ok", reply?, code?, message?, protocol?}
import tls from "node:tls";

const o = JSON.parse(process.argv[2]);
const common = {
  minVersion: "TLSv1.3",
  maxVersion: "TLSv1.3",
  ...(o.groups ? { ecdhCurve: o.groups.join(":") } : {}),
  ...(o.sigalgs ? { sigalgs: o.sigalgs.join(":") } : {}),
  ...(o.ca ? { ca: o.ca } : {}),
  ...(o.cert ? { cert: o.cert, key: o.key } : {}),
};
const print = (v) => process.stdout.write(JSON.stringify(v) + "\n");

if (o.role === "server") {
  const server = tls.createServer({
    ...common,
    requestCert: o.requestCert ?? false,
    rejectUnauthorized: true,
  }, (socket) => {
    print({ event: "secure", protocol: socket.getProtocol() });
    socket.on("error", () => {});
    socket.pipe(socket);
  });
  server.on(
    "tlsClientError",
    (e) => print({ event: "tls-error", code: e.code, message: e.message }),
  );
  server.listen(0, "127.0.0.1", () => print({ port: server.address().port }));
} else {
  const socket = tls.connect({
    host: "127.0.0.1",
    port: o.port,
    servername: o.servername,
    ...common,
  }, () => {
    socket.write(o.message);
  });
  let done = false;
  const finish = (v) => {
    if (done) return;
    done = true;
    print(v);
    socket.destroy();
    process.exit(0);
  };
  socket.on(
    "data",
    (d) => finish({ ok: true, reply: d.toString(), protocol: socket.getProtocol() }),
  );
  socket.on("error", (e) => finish({ ok: false, code: e.code, message: e.message }));
  socket.on("end", () => finish({ ok: false, code: "EOF" }));
}
