import { QsignError } from "../errors.ts";

/** Placeholder until the `hsm` command lands. */
export function run(_argv: string[]): Promise<number> {
  return Promise.reject(new QsignError("qsign hsm is not available yet"));
}
