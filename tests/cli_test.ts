import { equal as assertEquals, match as assertMatch } from "node:assert/strict";
import { runQsign } from "./support/env.ts";

Deno.test("qsign --help lists every command", async () => {
  const r = await runQsign(["--help"]);
  assertEquals(r.code, 0);
  for (const c of ["serve", "connect", "renew", "pki", "hsm", "vault", "bench"]) {
    assertMatch(r.stdout, new RegExp(`\\b${c}\\b`));
  }
});

Deno.test("an unknown command is a one-line error with exit status 2", async () => {
  const r = await runQsign(["frobnicate"]);
  assertEquals(r.code, 2);
  assertEquals(r.stderr.trim().split("\n").length, 1);
});

Deno.test("an unknown QSIGN_CRYPTO is a one-line configuration error naming it, exit status 2", async () => {
  const r = await runQsign(["pki", "show", "/nonexistent.pem"], { env: { QSIGN_CRYPTO: "bogus" } });
  assertEquals(r.code, 2);
  assertEquals(
    r.stderr.trim(),
    'qsign: QSIGN_CRYPTO: unknown crypto provider "bogus" (native or noble)',
  );
});
