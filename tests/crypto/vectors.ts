/** Loading the vendored known-answer vectors (`tests/testdata/vectors`) for the crypto tests. */
import { nativeProvider, nobleProvider } from "../../src/crypto/index.ts";
import { fromHex, toHex } from "../../src/hex.ts";

/** Where the vectors live: gzip-compressed JSON files, with their licenses and sources. */
const VECTORS = new URL("../testdata/vectors/", import.meta.url);

/** The parsed JSON of a vendored `PATH.json.gz`. */
async function readVectorFile(path: string): Promise<unknown> {
  const url = new URL(`${path}.json.gz`, VECTORS);
  const compressed = new Blob([await Deno.readFile(url)]).stream();
  return await new Response(compressed.pipeThrough(new DecompressionStream("gzip"))).json();
}

/** Both providers, for tests that run every vector on each. */
export const PROVIDERS = [nativeProvider, nobleProvider] as const;

export { fromHex, toHex };

/** One Wycheproof test: its id, verdict and flags, plus the file-specific fields (hex strings). */
export interface WycheproofTest {
  tcId: number;
  comment?: string;
  result: "valid" | "acceptable" | "invalid";
  flags: string[];
  [field: string]: unknown;
}

export interface WycheproofGroup {
  tests: WycheproofTest[];
  [field: string]: unknown;
}

/** The test groups of `wycheproof/NAME.json`. */
export async function wycheproof(name: string): Promise<WycheproofGroup[]> {
  return ((await readVectorFile(`wycheproof/${name}`)) as { testGroups: WycheproofGroup[] })
    .testGroups;
}

/** Every test of a Wycheproof file with its group. */
export async function wycheproofTests(
  name: string,
): Promise<{ group: WycheproofGroup; test: WycheproofTest }[]> {
  return (await wycheproof(name)).flatMap((group) => group.tests.map((test) => ({ group, test })));
}

/** An ACVP vector set: the inputs (`internalProjection.json`) of one algorithm/mode. */
export interface AcvpGroup {
  tgId: number;
  parameterSet: string;
  tests: Record<string, unknown>[];
  [field: string]: unknown;
}

export async function acvp(directory: string): Promise<AcvpGroup[]> {
  const vectors = await readVectorFile(`acvp/${directory}/internalProjection`);
  return (vectors as { testGroups: AcvpGroup[] }).testGroups;
}

/** A hex string field of a vector. */
export function hexField(record: Record<string, unknown>, field: string): Uint8Array {
  const value = record[field];
  if (typeof value !== "string") throw new Error(`vector field ${field} is not a hex string`);
  return fromHex(value);
}

/** Labels an assertion with the vector it came from. */
export function label(file: string, test: { tcId: unknown; comment?: unknown }): string {
  return `${file} tcId ${test.tcId}${test.comment ? ` (${test.comment})` : ""}`;
}

/**
 * Runs `check` and returns the error it threw, or undefined. For vectors whose expected outcome
 * is "rejected", whichever way the API rejects (an exception or a false result) is then asserted.
 */
export async function thrown(check: () => Promise<unknown>): Promise<unknown> {
  try {
    await check();
    return undefined;
  } catch (error) {
    return error;
  }
}
