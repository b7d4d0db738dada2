import { deepEqual, equal as assertEquals, match as assertMatch } from "node:assert/strict";
import { runQsign } from "./support/env.ts";

Deno.test("qsign --help lists every command", async () => {
  const r = await runQsign(["--help"]);
  assertEquals(r.code, 0);
  for (const c of ["serve", "connect", "renew", "pki", "hsm", "vault", "bench"]) {
    assertMatch(r.stdout, new RegExp(`\\b${c}\\b`));
  }
});

Deno.test("an unknown command is a one-line error with exit status 2", async () => {
  const r = await runQsign(["frobnicate"]);
  assertEquals(r.code, 2);
  assertEquals(r.stderr.trim().split("\n").length, 1);
});

Deno.test("an unknown QSIGN_CRYPTO is a one-line configuration error naming it, exit status 2", async () => {
  const r = await runQsign(["pki", "show", "/nonexistent.pem"], { env: { QSIGN_CRYPTO: "bogus" } });
  assertEquals(r.code, 2);
  assertEquals(r.stderr.trim().split("\n").length, 1);
  assertMatch(
    r.stderr.trim(),
    /^qsign: QSIGN_CRYPTO: unknown crypto provider "bogus" \(.*noble\)$/,
  );
});

Deno.test("qsign version, --version and -V print the version", async () => {
  const { VERSION } = await import("../src/version.ts");
  for (const argv of [["version"], ["--version"], ["-V"]]) {
    const r = await runQsign(argv);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(r.stdout.trim(), `qsign ${VERSION}`);
  }
});

Deno.test("unknown options and commands suggest the one meant", async () => {
  const option = await runQsign(["serve", "--lsiten", "127.0.0.1:1"]);
  assertEquals(option.code, 2);
  assertMatch(option.stderr, /unknown option --lsiten \(did you mean --listen\?\)/);
  const short = await runQsign(["pki", "init", "--dri", "x"]);
  assertMatch(short.stderr, /unknown option --dri \(did you mean --dir\?\)/);
  const command = await runQsign(["conect"]);
  assertEquals(command.code, 2);
  assertMatch(command.stderr, /unknown command "conect" \(did you mean connect\?\)/);
  const nothing = await runQsign(["pki", "init", "--zzzzzzzz"]);
  assertEquals(nothing.stderr.includes("did you mean"), false, nothing.stderr);
});

Deno.test("one spelling for the token key: --key-label in hsm keygen, csr, delete and serve", async () => {
  for (const argv of [["hsm", "keygen"], ["hsm", "csr"], ["hsm", "delete"]]) {
    const r = await runQsign([...argv, "--help"]);
    assertEquals(r.code, 0);
    assertMatch(r.stdout, /^ {2}--key-label LABEL +\S/m, argv.join(" "));
  }
  const serve = await runQsign(["serve", "--help"]);
  assertMatch(serve.stdout, /--hsm-key-label LABEL[^\n]*\n?[^\n]*also --key-label/);
  // The alias reaches the same setting: with --hsm and no module the error is the module's.
  const both = await runQsign(["hsm", "keygen", "--label", "a", "--key-label", "b"]);
  assertEquals(both.code, 2);
  assertMatch(both.stderr, /--label is another spelling of --key-label: give one/);
});

Deno.test("--help lists every enum's values and keeps its columns", async () => {
  const issue = await runQsign(["pki", "issue", "--help"]);
  assertMatch(issue.stdout, /mldsa44\|mldsa65\|mldsa87\|ecdsa-p256/);
  const serve = await runQsign(["serve", "--help"]);
  assertMatch(
    serve.stdout,
    /--lang LANG +language of the echo reply .*\s+of ko\|en; default: ko\)/,
  );
  for (const argv of [["serve"], ["connect"], ["pki", "issue"], ["hsm", "keygen"], ["bench"]]) {
    const help = (await runQsign([...argv, "--help"])).stdout;
    const options = help.slice(help.indexOf("\noptions:\n") + 10).split("\n");
    // Every line is a flag at column 2 with its text at one column, or text continuing there.
    const column = /^ {2}(-\S.*?) {2,}\S/.exec(options[0])![0].length - 1;
    for (const line of options) {
      if (line.length > 100) throw new Error(`${argv.join(" ")}: line over 100 columns: ${line}`);
      const flagOnly = /^ {2}-\S+( \S+)?$/.test(line);
      const aligned = line.slice(0, column).trim() === "" ? line[column] !== " " : true;
      if (!flagOnly && !aligned) throw new Error(`${argv.join(" ")}: misaligned: ${line}`);
      if (/^ {2}-/.test(line) && !flagOnly && line[column] === " ") {
        throw new Error(`${argv.join(" ")}: text off its column: ${line}`);
      }
    }
  }
});

Deno.test("bash completion from the option specs: commands, subcommands, options, enum values", async () => {
  const script = (await runQsign(["completion", "bash"])).stdout;
  const complete = async (words: string[]) => {
    const out = await new Deno.Command("bash", {
      args: [
        "-c",
        `${script}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")}); ` +
        `COMP_CWORD=${words.length - 1}; _qsign; printf '%s\\n' "\${COMPREPLY[@]}"`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(new TextDecoder().decode(out.stderr), "");
    return new TextDecoder().decode(out.stdout).split("\n").filter(Boolean).sort();
  };
  deepEqual(await complete(["qsign", "co"]), ["completion", "connect"]);
  deepEqual(await complete(["qsign", "pki", "i"]), ["init", "issue"]);
  deepEqual(await complete(["qsign", "hsm", "de"]), ["delete"]);
  deepEqual(await complete(["qsign", "pki", "issue", "--pro"]), ["--profile"]);
  deepEqual(await complete(["qsign", "pki", "issue", "--profile", ""]), ["client", "server"]);
  deepEqual(await complete(["qsign", "serve", "--client-auth", "re"]), ["request", "require"]);
  deepEqual(await complete(["qsign", "connect", "--key-p"]), ["--key-passphrase"]);
  deepEqual(await complete(["qsign", "hsm", "keygen", "--ty"]), ["--type"]);
});

Deno.test("zsh completion and the man page are generated from the same specs", async () => {
  const zsh = (await runQsign(["completion", "zsh"])).stdout;
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/_qsign`, zsh);
    const check = await new Deno.Command("zsh", { args: ["-n", `${dir}/_qsign`], stderr: "piped" })
      .output();
    assertEquals(new TextDecoder().decode(check.stderr), "");
    assertEquals(check.code, 0);
    // Loaded by compinit from $fpath, it defines the completion for qsign.
    const loaded = await new Deno.Command("zsh", {
      args: [
        "-fc",
        `fpath=(${dir} $fpath); autoload -U compinit; compinit -u -d ${dir}/dump; ` +
        `print -r -- $_comps[qsign]`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(new TextDecoder().decode(loaded.stdout).trim(), "_qsign");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  assertMatch(
    zsh,
    /'--profile\[which intermediate CA and EKU\]:server\|client:\(server client\)'/,
  );

  const man = (await runQsign(["man"])).stdout;
  assertMatch(man, /^\.TH QSIGN 1/);
  for (const section of ["qsign pki issue", "qsign hsm delete", "qsign connect", "qsign serve"]) {
    assertMatch(man, new RegExp(`^\\.SS "${section}`, "m"));
  }
  assertMatch(man, /\\fB\\-\\-key\\-passphrase\\fR \\fIREF\\fR/);
  const groff = await new Deno.Command("groff", {
    args: ["-man", "-Tutf8", "-wall", "-z"],
    stdin: "piped",
    stderr: "piped",
  }).spawn();
  const writer = groff.stdin.getWriter();
  await writer.write(new TextEncoder().encode(man));
  await writer.close();
  const rendered = await groff.output();
  const warnings = new TextDecoder().decode(rendered.stderr).split("\n")
    .filter((l) => l && !/can't break line|cannot adjust line/.test(l));
  deepEqual(warnings, []);
});
