// One TLS endpoint on Deno's built-in TLS (rustls): Deno.listenTls / Deno.connectTls. Arguments:
// a JSON object.
//   {"role": "server", cert, key}: prints {"port"}, then {"event": "secure"} or
//       {"event": "tls-error", message} per connection; echoes application data.
//   {"role": "client", port, ca, cert?, key?, message}: prints {"ok", reply?, message?}
const o = JSON.parse(Deno.args[0]);
const print = (v: unknown) => console.log(JSON.stringify(v));

if (o.role === "server") {
  const listener = Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert: o.cert, key: o.key });
  print({ port: listener.addr.port });
  for await (const conn of listener) {
    (async () => {
      try {
        await conn.handshake();
        print({ event: "secure" });
        const buf = new Uint8Array(4096);
        for (;;) {
          const n = await conn.read(buf);
          if (n === null) break;
          await conn.write(buf.subarray(0, n));
        }
      } catch (e) {
        print({ event: "tls-error", message: (e as Error).message });
      } finally {
        try {
          conn.close();
        } catch {
          // already closed
        }
      }
    })();
  }
} else {
  try {
    const conn = await Deno.connectTls({
      hostname: "127.0.0.1",
      port: o.port,
      caCerts: [o.ca],
      ...(o.cert ? { cert: o.cert, key: o.key } : {}),
    });
    await conn.write(new TextEncoder().encode(o.message));
    const buf = new Uint8Array(4096);
    const n = await conn.read(buf);
    print({
      ok: n !== null,
      reply: n === null ? undefined : new TextDecoder().decode(buf.subarray(0, n)),
    });
    conn.close();
  } catch (e) {
    print({ ok: false, message: (e as Error).message });
  }
}
