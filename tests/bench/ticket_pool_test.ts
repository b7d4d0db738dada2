/** The resumption benchmark's ticket pool: fresh tickets first, then the newest one again. */
import { deepEqual, equal, throws } from "node:assert/strict";
import { TicketPool } from "../../src/bench/ticket_pool.ts";
import type { ClientSession } from "../../src/tls/tickets.ts";

function session(id: number, receivedMs = Date.now()): ClientSession {
  return {
    ticket: Uint8Array.of(id),
    psk: new Uint8Array(48),
    suite: 0x1302,
    ageAdd: 0,
    receivedMs,
    lifetimeSeconds: 3600,
    peerCertificates: [],
  };
}

Deno.test("TicketPool: up to capacity fresh tickets, newest first, then the newest reused", () => {
  const pool = new TicketPool(2);
  for (const id of [1, 2, 3]) pool.put("server:443", session(id));
  equal(pool.size, 2);
  const taken = Array.from({ length: 4 }, () => pool.take("server:443")?.ticket[0]);
  deepEqual(taken, [3, 2, 3, 3]);
  equal(pool.reuses, 2);
  equal(pool.take("other:443"), undefined);

  // An expired newest ticket is not offered again.
  pool.put("old:443", session(4, Date.now() - 7200_000));
  equal(pool.take("old:443"), undefined);
  equal(pool.reuses, 2);
});

Deno.test("TicketPool: the capacity is bounded as the engine's cache", () => {
  throws(() => new TicketPool(0), RangeError);
  throws(() => new TicketPool(1e6), RangeError);
});
