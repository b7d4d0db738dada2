/**
 * --ticket-key-file: daemons that load the same ticket key file resume each other's mutual-TLS
 * sessions (a daemon restarted on the same port, as a second node behind one address would be;
 * and two daemons running at once): the ticket carries what re-checking the client needs, no
 * node has to have seen the client. A daemon with another key falls back to a full handshake.
 */
import { equal } from "node:assert/strict";
import { openConnection } from "../../src/daemon/client.ts";
import { tempDir } from "../support/env.ts";
import { Daemon, exchange, makePki, qsignClientConfig, serveArgs } from "./support.ts";

Deno.test("daemons sharing a ticket key file resume each other's sessions", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  const shared = `${dir.path}/tickets.key`;
  const other = `${dir.path}/other.key`;
  await Deno.writeTextFile(shared, "ab".repeat(32) + "\n", { mode: 0o600 });
  await Deno.writeTextFile(other, "cd".repeat(32) + "\n", { mode: 0o600 });

  const args = (ticketFile: string) => serveArgs(pki, ["--ticket-key-file", ticketFile]);
  let node = await Daemon.start(args(shared));
  const port = node.port();
  const server = { hostname: "127.0.0.1", port };
  /** A client with its own ticket cache. */
  const client = () => qsignClientConfig(pki, port);
  /** One conversation; reading the reply also takes in the server's NewSessionTicket. */
  const visit = async (config: Awaited<ReturnType<typeof client>>) => {
    const tls = await openConnection(server, config);
    await exchange(tls, "ticket please");
    await tls.close();
    return tls.info.resumed;
  };
  const [sameNode, sharedKey, otherKey] = await Promise.all([client(), client(), client()]);
  try {
    equal(await visit(sameNode), false);
    equal(await visit(sameNode), true);
    equal(await visit(sharedKey), false);
    equal(await visit(otherKey), false);
  } finally {
    equal((await node.stop()).code, 0);
  }

  // The same port, as the next node behind one address.
  const listenOn = (ticketFile: string) =>
    args(ticketFile).map((a, i, all) => all[i - 1] === "--listen" ? `127.0.0.1:${port}` : a);

  node = await Daemon.start(listenOn(shared));
  try {
    equal(await visit(sharedKey), true, "another node with the same ticket key resumes");
    const resumed = await node.waitFor((e) => e.event === "handshake_ok");
    equal(resumed.resumed, true);
    // The client's identity comes from the ticket, checked again on this node.
    equal(resumed.client_subject, "CN=qtls-client.qsign.local, O=QSIGN");
  } finally {
    await node.stop();
  }

  await using stranger = await Daemon.start(listenOn(other));
  equal(await visit(otherKey), false, "a node with another ticket key makes a full handshake");
  await stranger.waitFor((e) => e.event === "handshake_ok" && e.resumed === false);
});

Deno.test("a second daemon sharing the ticket key file resumes the first one's mTLS ticket", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`);
  const shared = `${dir.path}/tickets.key`;
  await Deno.writeTextFile(shared, "ef".repeat(32) + "\n", { mode: 0o600 });
  const args = serveArgs(pki, ["--ticket-key-file", shared]);
  await using first = await Daemon.start(args);
  await using second = await Daemon.start(args);
  const config = await qsignClientConfig(pki, first.port());
  const cache = config.sessionCache!;
  const tls = await openConnection({ hostname: "127.0.0.1", port: first.port() }, config);
  await exchange(tls, "ticket please");
  await tls.close();
  // The ticket the first daemon issued, offered to the second.
  cache.put(`localhost:${second.port()}`, cache.take(`localhost:${first.port()}`)!);
  const again = await openConnection({ hostname: "127.0.0.1", port: second.port() }, config);
  await exchange(again, "resume please");
  await again.close();
  equal(again.info.resumed, true);
  const event = await second.waitFor((e) => e.event === "handshake_ok");
  equal(event.resumed, true, String(event.resumption_declined));
  equal(event.client_subject, "CN=qtls-client.qsign.local, O=QSIGN");
});
