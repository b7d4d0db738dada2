/**
 * Turning one raw setting value (a flag's string, an environment variable, or whatever TOML/YAML
 * produced) into its typed form. Every failure is a `ConfigError` naming where the value came from.
 */
import { ConfigError } from "../errors.ts";
import type { Address, Origin } from "./types.ts";

/** The value shapes a setting can have. */
export type ValueKind =
  | { type: "string" }
  | { type: "path" }
  | { type: "paths" }
  | { type: "strings" }
  | { type: "boolean" }
  | { type: "integer"; min: number; max: number }
  | { type: "duration" }
  | { type: "address"; defaultHost: string; optional?: boolean }
  | { type: "choice"; choices: readonly string[] };

/** What TOML, YAML, a flag or the environment may hand over. */
export type RawValue = unknown;

function fail(origin: Origin, problem: string): never {
  throw new ConfigError(origin.field, problem, origin.file);
}

function describe(raw: RawValue): string {
  if (Array.isArray(raw)) return "a list";
  if (raw === null) return "null";
  if (typeof raw === "object") return "a table";
  return typeof raw === "string" ? `"${raw}"` : String(raw);
}

/**
 * Coerces `raw` to `kind`. Strings from flags and the environment are parsed (lists split at
 * commas, booleans from true/false/yes/no/1/0); file values must already have the right shape.
 * Relative paths from a config file are resolved against the file's directory.
 */
export function coerce(kind: ValueKind, raw: RawValue, origin: Origin): unknown {
  switch (kind.type) {
    case "string":
      return nonEmptyString(raw, origin);
    case "path":
      return resolvePath(nonEmptyString(raw, origin), origin);
    case "strings":
      return stringList(raw, origin);
    case "paths":
      return stringList(raw, origin).map((p) => resolvePath(p, origin));
    case "boolean":
      return parseBoolean(raw, origin);
    case "integer":
      return parseInteger(raw, kind.min, kind.max, origin);
    case "duration":
      return parseDurationMs(raw, origin);
    case "address":
      if (kind.optional && typeof raw === "string" && /^(off|none|)$/i.test(raw.trim())) {
        return undefined;
      }
      return parseAddress(nonEmptyString(raw, origin), kind.defaultHost, origin);
    case "choice": {
      const value = nonEmptyString(raw, origin);
      const match = kind.choices.find((c) => c.toLowerCase() === value.toLowerCase());
      if (match === undefined) {
        fail(origin, `must be one of ${kind.choices.join("|")}, got "${value}"`);
      }
      return match;
    }
  }
}

function nonEmptyString(raw: RawValue, origin: Origin): string {
  if (typeof raw === "number") return String(raw);
  if (typeof raw !== "string") fail(origin, `must be a string, got ${describe(raw)}`);
  if (raw.trim() === "") fail(origin, "must not be empty");
  return raw.trim();
}

function stringList(raw: RawValue, origin: Origin): string[] {
  const items = Array.isArray(raw) ? raw : [raw];
  return items.flatMap((item, i) => {
    if (typeof item !== "string" || item.trim() === "") {
      fail(
        Array.isArray(raw) ? { ...origin, field: `${origin.field}[${i}]` } : origin,
        `must be a non-empty string, got ${describe(item)}`,
      );
    }
    // Flags and environment variables carry lists as "a,b"; file lists are already split.
    return origin.file === undefined
      ? item.split(",").map((s) => s.trim()).filter(Boolean)
      : [item.trim()];
  });
}

function resolvePath(path: string, origin: Origin): string {
  if (origin.file === undefined || path.startsWith("/")) return path;
  const dir = origin.file.includes("/") ? origin.file.slice(0, origin.file.lastIndexOf("/")) : ".";
  return `${dir}/${path}`;
}

function parseBoolean(raw: RawValue, origin: Origin): boolean {
  if (typeof raw === "boolean") return raw;
  if (typeof raw === "string" && origin.file === undefined) {
    const word = raw.trim().toLowerCase();
    if (["true", "yes", "on", "1"].includes(word)) return true;
    if (["false", "no", "off", "0"].includes(word)) return false;
  }
  fail(origin, `must be true or false, got ${describe(raw)}`);
}

function parseInteger(raw: RawValue, min: number, max: number, origin: Origin): number {
  const n = typeof raw === "number"
    ? raw
    : typeof raw === "string" && /^\s*-?\d+\s*$/.test(raw)
    ? Number(raw)
    : NaN;
  if (!Number.isInteger(n)) fail(origin, `must be a whole number, got ${describe(raw)}`);
  if (n < min || n > max) fail(origin, `must be between ${min} and ${max}, got ${n}`);
  return n;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `"500ms"`, `"10s"`, `"5m"`, `"1h"`, or a bare number of seconds. */
export function parseDurationMs(raw: RawValue, origin: Origin): number {
  if (typeof raw === "number" && Number.isFinite(raw) && raw >= 0) return Math.round(raw * 1000);
  const match = typeof raw === "string" ? /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(raw) : null;
  if (!match) fail(origin, `must be a duration like 500ms, 10s, 5m or 1h, got ${describe(raw)}`);
  return Math.round(Number(match[1]) * DURATION_UNITS[match[2] ?? "s"]);
}

/**
 * `host:port`, `[v6]:port`, `:port` or a bare `port` (then `defaultHost`). Port 0 asks the
 * kernel for a free port (the daemon logs the one it got).
 */
export function parseAddress(text: string, defaultHost: string, origin: Origin): Address {
  const match = /^(?:\[([^\]]+)\]|([^:\[\]]*)):(\d+)$/.exec(text) ?? /^()()(\d+)$/.exec(text);
  if (!match) fail(origin, `must be HOST:PORT, [IPv6]:PORT or PORT, got "${text}"`);
  const port = Number(match[3]);
  if (port > 65535) fail(origin, `port must be at most 65535, got ${port}`);
  const hostname = match[1] || match[2] || defaultHost;
  return { hostname, port };
}

/** The address as an operator writes it. */
export function formatAddress(address: Address): string {
  return address.hostname.includes(":")
    ? `[${address.hostname}]:${address.port}`
    : `${address.hostname}:${address.port}`;
}
