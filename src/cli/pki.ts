import { QsignError } from "../errors.ts";

/** Placeholder until the `pki` command lands. */
export function run(_argv: string[]): Promise<number> {
  return Promise.reject(new QsignError("qsign pki is not available yet"));
}
