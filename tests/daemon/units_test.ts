/**
 * The daemon's small parts on their own: the per-address rate limiter, the PROXY v2 header for
 * IPv6 and IPv4-mapped clients, the audit log's levels and redaction, addresses and durations.
 */
import { deepEqual, equal, throws } from "node:assert/strict";
import { parseAddress, parseDurationMs } from "../../src/config/values.ts";
import { PerIpRateLimiter } from "../../src/daemon/limits.ts";
import { encodeProxyV2Header } from "../../src/daemon/proxy_protocol.ts";
import { ConfigError } from "../../src/errors.ts";
import { audit, setLogLevel, setLogSink } from "../../src/observe/log.ts";

Deno.test("the rate limiter admits a burst per address, refills over time, and stays bounded", () => {
  const limiter = new PerIpRateLimiter(2, 3);
  deepEqual([0, 1, 2].map(() => limiter.admit("10.0.0.1", 0)), [true, true, false]);
  equal(limiter.admit("10.0.0.2", 0), true, "another address has its own bucket");
  equal(limiter.admit("10.0.0.1", 400), false, "0.8 tokens after 400 ms");
  equal(limiter.admit("10.0.0.1", 500), true, "a token after 500 ms at 2/s");
  for (const ip of ["a", "b", "c", "d", "e"]) limiter.admit(ip, 600);
  equal(limiter.size, 3);
  const unlimited = new PerIpRateLimiter(0);
  equal(Array.from({ length: 100 }, () => unlimited.admit("x")).every(Boolean), true);
  equal(unlimited.size, 0);
});

Deno.test("a worker's share of the rate refills slower but keeps the whole burst", () => {
  // One of two workers with a limit of 10 a second: 5 a second, a burst of 10.
  const limiter = new PerIpRateLimiter(5, 16, 10);
  const burst = Array.from({ length: 11 }, () => limiter.admit("10.0.0.1", 0));
  deepEqual([burst.filter(Boolean).length, burst[10]], [10, false]);
  equal(limiter.admit("10.0.0.1", 100), false, "0.5 tokens after 100 ms at 5/s");
  equal(limiter.admit("10.0.0.1", 200), true, "a token after 200 ms at 5/s");
  equal(limiter.admit("10.0.0.1", 10_000), true);
  equal(
    Array.from({ length: 10 }, () => limiter.admit("10.0.0.1", 10_000)).filter(Boolean).length,
    9,
    "refilled to the burst of 10, not beyond",
  );
});

Deno.test("PROXY v2: IPv6 clients get the TCP6 family; IPv4-mapped ones are sent as IPv4", () => {
  const tls = { version: "TLSv1.3", cipher: "TLS_AES_256_GCM_SHA384" };
  const v6 = encodeProxyV2Header({
    client: { transport: "tcp", hostname: "2001:db8::7", port: 50000 },
    local: { transport: "tcp", hostname: "::1", port: 8443 },
    tls,
  });
  equal(v6[13], 0x21);
  deepEqual([...v6.subarray(16, 32)], [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]);
  deepEqual([...v6.subarray(32, 48)], [...new Uint8Array(15), 1]);
  const view = new DataView(v6.buffer);
  deepEqual([view.getUint16(48), view.getUint16(50)], [50000, 8443]);
  equal(view.getUint16(14), v6.length - 16);

  const mapped = encodeProxyV2Header({
    client: { transport: "tcp", hostname: "::ffff:192.0.2.9", port: 1234 },
    local: { transport: "tcp", hostname: "0.0.0.0", port: 8443 },
    tls,
  });
  equal(mapped[13], 0x11);
  deepEqual([...mapped.subarray(16, 20)], [192, 0, 2, 9]);
  // Without a client certificate the SSL TLV says so (no PP2_CLIENT_CERT_CONN) and names no CN.
  equal(mapped[28], 0x20);
  equal(mapped[31], 0x01);
});

Deno.test("the audit log writes JSON lines at or above its level and redacts secret-named fields", () => {
  const lines: string[] = [];
  const previous = setLogSink((line) => lines.push(line));
  try {
    setLogLevel("WARN");
    audit.info("ignored");
    audit.warn("kept", {
      peer: "127.0.0.1:1",
      hsm_pin: "1234",
      vault_token: "s.abc",
      token_label: "qsign",
    });
    setLogLevel("DEBUG");
    audit.debug("debugging", { nested: { a: 1 } });
  } finally {
    setLogLevel("INFO");
    setLogSink(previous);
  }
  equal(lines.length, 2);
  const kept = JSON.parse(lines[0]);
  equal(kept.level, "WARN");
  equal(kept.event, "kept");
  equal(kept.peer, "127.0.0.1:1");
  equal(kept.hsm_pin, "[redacted]");
  equal(kept.vault_token, "[redacted]");
  equal(kept.token_label, "qsign");
  equal(Number.isNaN(Date.parse(kept.ts)), false);
  deepEqual(JSON.parse(lines[1]).nested, { a: 1 });
});

Deno.test("addresses and durations as operators write them", () => {
  const origin = { field: "listen", file: "qsign.toml" };
  deepEqual(parseAddress("8443", "0.0.0.0", origin), { hostname: "0.0.0.0", port: 8443 });
  deepEqual(parseAddress(":8443", "0.0.0.0", origin), { hostname: "0.0.0.0", port: 8443 });
  deepEqual(parseAddress("[::]:443", "0.0.0.0", origin), { hostname: "::", port: 443 });
  deepEqual(parseAddress("gw.example:9000", "0.0.0.0", origin), {
    hostname: "gw.example",
    port: 9000,
  });
  throws(() => parseAddress("::1:443", "0.0.0.0", origin), ConfigError);
  equal(parseDurationMs("250ms", origin), 250);
  equal(parseDurationMs("1.5s", origin), 1500);
  equal(parseDurationMs("2m", origin), 120_000);
  equal(parseDurationMs(3, origin), 3000);
  throws(() => parseDurationMs("-1s", origin), /qsign\.toml: listen: must be a duration/);
});
