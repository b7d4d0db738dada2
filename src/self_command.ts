/**
 * The command line that runs this same qsign again, for commands that start qsign processes of
 * their own (`qsign bench --workers N`, `qsign serve --workers N`): the binary itself when it was built with
 * `deno task compile`, otherwise Deno running this checkout's main.ts.
 */

const PERMISSIONS = ["read", "write", "net", "env", "run", "ffi", "sys"] as const;

/** The executable and arguments of `qsign ARGS…`. */
export function qsignCommandLine(args: readonly string[]): { command: string; args: string[] } {
  if (Deno.build.standalone) return { command: Deno.execPath(), args: [...args] };
  // What this process holds in full and no more: a child never has more than its parent.
  const granted = PERMISSIONS.filter((name) =>
    Deno.permissions.querySync({ name }).state === "granted"
  );
  const file = (name: string) => new URL(`../${name}`, import.meta.url).pathname;
  return {
    command: Deno.execPath(),
    args: [
      "run",
      "--quiet",
      "--no-prompt",
      // The child may run in any directory: the import map is the checkout's.
      ...["--config", file("deno.json")],
      ...granted.map((name) => `--allow-${name}`),
      "--unstable-net",
      file("main.ts"),
      ...args,
    ],
  };
}
