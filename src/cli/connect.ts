import { QsignError } from "../errors.ts";

/** Placeholder until the `connect` command lands. */
export function run(_argv: string[]): Promise<number> {
  return Promise.reject(new QsignError("qsign connect is not available yet"));
}
