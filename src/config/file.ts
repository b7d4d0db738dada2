/**
 * Reading a config file (TOML or YAML, chosen by extension) into raw setting values keyed by
 * their config-file names, each with the field path an error message should name.
 */
import { parse as parseToml, TomlError } from "smol-toml";
import { parse as parseYaml, YAMLParseError } from "yaml";
import { ConfigError } from "../errors.ts";
import { closest } from "../suggest.ts";
import { type Setting, SETTINGS } from "./settings.ts";
import type { Origin } from "./types.ts";

/** A value as found in the file, with its field path. */
export interface FileValue {
  raw: unknown;
  origin: Origin;
}

/**
 * The file's contents: process-wide settings and one table per `[[service]]`, checked; and the
 * whole parsed document, whose other commands' sections (`[renewal]`, `[[certificate]]`) their
 * owners read and check.
 */
export interface ConfigFile {
  path: string;
  global: Map<string, FileValue>;
  services: Map<string, FileValue>[];
  document: Record<string, unknown>;
}

const NESTED_TABLES = ["limits", "hsm"];

/**
 * Top-level tables that belong to other commands sharing the file: `qsign --renewal` reads its
 * `[renewal]` settings and its `[[certificate]]` and `[[crl]]` lists from the same qsign.toml
 * (src/issuer/config.ts); `serve` leaves them to their owner.
 */
export const SECTIONS_OF_OTHER_COMMANDS = ["renewal", "certificate", "crl"];

/**
 * Reads and parses `path`, the one reader of qsign's config file for every command: checks the
 * process-wide and `[[service]]` settings and hands every other command's sections over raw.
 * Throws `ConfigError` naming the file and the field (line and column for a syntax error).
 */
export async function readConfigFile(path: string): Promise<ConfigFile> {
  const format = formatOf(path);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new ConfigError("--config", `cannot read ${path}: ${(e as Error).message}`);
  }
  const document = parseDocument(path, format, text);
  const global = new Map<string, FileValue>();
  let services: Map<string, FileValue>[] = [];
  for (const [key, raw] of Object.entries(document)) {
    if (SECTIONS_OF_OTHER_COMMANDS.includes(key)) continue;
    if (key === "service") {
      if (!Array.isArray(raw)) {
        throw new ConfigError(
          "service",
          "must be a list of tables ([[service]] in TOML, a YAML sequence)",
          path,
        );
      }
      services = raw.map((table, i) => readTable(table, `service[${i}]`, "service", path));
      continue;
    }
    for (const [k, v] of readTable({ [key]: raw }, "", "global", path)) global.set(k, v);
  }
  return { path, global, services, document };
}

function formatOf(path: string): "toml" | "yaml" {
  const extension = path.slice(path.lastIndexOf(".") + 1).toLowerCase();
  if (extension === "toml") return "toml";
  if (extension === "yaml" || extension === "yml") return "yaml";
  throw new ConfigError(
    "--config",
    `cannot tell the format of ${path}: name it *.toml, *.yaml or *.yml`,
  );
}

function parseDocument(
  path: string,
  format: "toml" | "yaml",
  text: string,
): Record<string, unknown> {
  let document: unknown;
  try {
    document = format === "toml" ? parseToml(text) : parseYaml(text);
  } catch (e) {
    if (e instanceof TomlError) {
      throw new ConfigError(`line ${e.line} column ${e.column}`, firstLine(e.message), path);
    }
    if (e instanceof YAMLParseError) {
      const at = e.linePos?.[0];
      throw new ConfigError(
        at ? `line ${at.line} column ${at.col}` : "document",
        firstLine(e.message),
        path,
      );
    }
    throw e;
  }
  if (document === null || document === undefined) return {};
  if (typeof document !== "object" || Array.isArray(document)) {
    throw new ConfigError("document", "must be a table of settings", path);
  }
  return document as Record<string, unknown>;
}

function firstLine(message: string): string {
  return message.split("\n")[0].replace(/:$/, "");
}

/** Flattens one table (with its `limits`/`hsm` sub-tables) and rejects unknown keys. */
function readTable(
  table: unknown,
  prefix: string,
  scope: Setting["scope"],
  file: string,
): Map<string, FileValue> {
  if (table === null || typeof table !== "object" || Array.isArray(table)) {
    throw new ConfigError(prefix || "document", "must be a table", file);
  }
  const values = new Map<string, FileValue>();
  const visit = (object: Record<string, unknown>, keyPrefix: string) => {
    for (const [name, raw] of Object.entries(object)) {
      const key = keyPrefix + name;
      const field = prefix ? `${prefix}.${key}` : key;
      if (keyPrefix === "" && NESTED_TABLES.includes(name) && scope === "service") {
        if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
          throw new ConfigError(field, "must be a table", file);
        }
        visit(raw as Record<string, unknown>, `${name}.`);
        continue;
      }
      const known = SETTINGS.find((s) => s.key === key);
      if (!known || known.scope !== scope) {
        throw new ConfigError(field, unknownKeyProblem(key, scope), file);
      }
      values.set(key, { raw, origin: { field, file } });
    }
  };
  visit(table as Record<string, unknown>, "");
  return values;
}

function unknownKeyProblem(key: string, scope: Setting["scope"]): string {
  const elsewhere = SETTINGS.find((s) => s.key === key);
  if (elsewhere) {
    return elsewhere.scope === "service"
      ? "belongs in a [[service]] section"
      : "is a process-wide setting: put it at the top of the file, outside [[service]]";
  }
  const candidates = SETTINGS.filter((s) => s.scope === scope).map((s) => s.key);
  const close = closest(key, candidates);
  return `unknown setting${close ? ` (did you mean ${close}?)` : ""}`;
}
