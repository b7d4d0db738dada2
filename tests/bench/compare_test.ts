/**
 * tests/bench/compare.ts --instructions on a small load: both servers run under callgrind and
 * each gets a count of the instructions of its measured run alone. Nothing here asserts a speed.
 */
import { equal, match, notEqual, ok } from "node:assert/strict";
import { DENO, ROOT, runCommand, tempDir } from "../support/env.ts";

function compare(args: string[]) {
  return runCommand(DENO, [
    "run",
    "--allow-all",
    `${ROOT}/tests/bench/compare.ts`,
    "--instructions",
    ...args,
  ]);
}

Deno.test("compare.ts --instructions: instructions per handshake of each server", async () => {
  await using dir = await tempDir("qsign-compare-test-");
  const json = `${dir.path}/results.json`;
  const out = await compare([
    ...["--cases", "browser", "--repeat", "1", "--handshakes", "10", "--warmup", "10"],
    ...["--duration-limit", "300", "--json", json],
  ]);
  equal(out.code, 0, out.stderr);
  const [result] = JSON.parse(await Deno.readTextFile(json)).results;
  equal(result.unit, "M instructions/handshake");
  for (const kind of ["qsign", "openssl"]) {
    const [sample] = result.samples[kind];
    // A TLS 1.3 server handshake with ML-KEM takes millions of instructions; a count of the whole
    // process (start-up, warm-up) would be hundreds of millions per handshake here.
    ok(sample.value > 0.5 && sample.value < 50, `${kind}: ${sample.value} M instructions`);
  }
  match(out.stdout, /\| browser-like: .* \| M instructions\/handshake \| /);
});

Deno.test("compare.ts --instructions refuses rows that count no work", async () => {
  const out = await compare(["--cases", "p99", "--repeat", "1"]);
  notEqual(out.code, 0);
  match(out.stderr, /case p99 has no instruction count/);
});
