import { QsignError } from "../errors.ts";

/** Placeholder until the `bench` command lands. */
export function run(_argv: string[]): Promise<number> {
  return Promise.reject(new QsignError("qsign bench is not available yet"));
}
