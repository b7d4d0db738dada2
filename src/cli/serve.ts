import { QsignError } from "../errors.ts";

/** Placeholder until the `serve` command lands. */
export function run(_argv: string[]): Promise<number> {
  return Promise.reject(new QsignError("qsign serve is not available yet"));
}
