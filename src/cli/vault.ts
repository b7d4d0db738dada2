import { QsignError } from "../errors.ts";

/** Placeholder until the `vault` command lands. */
export function run(_argv: string[]): Promise<number> {
  return Promise.reject(new QsignError("qsign vault is not available yet"));
}
