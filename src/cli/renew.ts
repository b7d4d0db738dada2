import { QsignError } from "../errors.ts";

/** Placeholder until the `renew` command lands. */
export function run(_argv: string[]): Promise<number> {
  return Promise.reject(new QsignError("qsign renew is not available yet"));
}
