/**
 * --ticket-key-file: daemons that load the same ticket key file resume each other's sessions
 * (here: a daemon restarted on the same port, as a second node behind one address would be);
 * a daemon with another key falls back to a full handshake. Without client certificates:
 * the engine keeps a resumed client's certificate in process memory, so a mutual-TLS session
 * resumes on the node that made it only.
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

  const args = (ticketFile: string) =>
    serveArgs(pki, ["--ticket-key-file", ticketFile, "--client-auth", "none"]);
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
    equal((await node.waitFor((e) => e.event === "handshake_ok")).resumed, true);
  } finally {
    await node.stop();
  }

  await using stranger = await Daemon.start(listenOn(other));
  equal(await visit(otherKey), false, "a node with another ticket key makes a full handshake");
  await stranger.waitFor((e) => e.event === "handshake_ok" && e.resumed === false);
});
