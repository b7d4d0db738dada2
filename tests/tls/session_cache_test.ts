/** MemorySessionCache: its limits, newest ticket first, expiry, and the bounds on the limits. */
import { deepEqual, equal, throws } from "node:assert/strict";
import {
  type ClientSession,
  MEMORY_SESSION_CACHE_LIMIT,
  MemorySessionCache,
} from "../../src/tls/tickets.ts";

function session(id: number, receivedMs = Date.now(), lifetimeSeconds = 3600): ClientSession {
  return {
    ticket: Uint8Array.of(id),
    psk: new Uint8Array(48),
    suite: 0x1302,
    ageAdd: 0,
    receivedMs,
    lifetimeSeconds,
    peerCertificates: [],
  };
}

const ids = (taken: (ClientSession | undefined)[]) => taken.map((s) => s?.ticket[0]);

Deno.test("MemorySessionCache keeps ticketsPerServer tickets, newest taken first", () => {
  const cache = new MemorySessionCache({ ticketsPerServer: 6 });
  for (let id = 1; id <= 8; id++) cache.put("a:443", session(id));
  equal(cache.size, 6);
  deepEqual(ids(Array.from({ length: 7 }, () => cache.take("a:443"))), [
    8,
    7,
    6,
    5,
    4,
    3,
    undefined,
  ]);
  equal(cache.size, 0);

  const defaults = new MemorySessionCache();
  equal(defaults.ticketsPerServer, 4);
  equal(defaults.maxServers, 256);
});

Deno.test("MemorySessionCache drops the server given a ticket least recently; skips expired tickets", () => {
  const cache = new MemorySessionCache({ maxServers: 2 });
  cache.put("a", session(1));
  cache.put("b", session(2));
  cache.put("a", session(3));
  cache.put("c", session(4));
  deepEqual(ids([cache.take("a"), cache.take("b"), cache.take("c")]), [3, undefined, 4]);

  cache.put("d", session(5));
  cache.put("d", session(6, Date.now() - 7200_000));
  deepEqual(ids([cache.take("d"), cache.take("d")]), [5, undefined]);
});

Deno.test("MemorySessionCache limits are integers from 1 to the bound", () => {
  for (const bad of [0, -1, 1.5, MEMORY_SESSION_CACHE_LIMIT + 1, NaN]) {
    throws(() => new MemorySessionCache({ ticketsPerServer: bad }), RangeError);
    throws(() => new MemorySessionCache({ maxServers: bad }), RangeError);
  }
  equal(
    new MemorySessionCache({ ticketsPerServer: MEMORY_SESSION_CACHE_LIMIT }).ticketsPerServer,
    MEMORY_SESSION_CACHE_LIMIT,
  );
});
