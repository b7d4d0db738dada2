/**
 * QSIGN_CRYPTO picks the provider: auto (the default) takes libcrypto where it loads and native
 * otherwise; anything else unknown is a configuration error naming the variable. What serves
 * which primitive is reported for the banner, /status and the metrics.
 */
import { deepEqual, equal, match, ok, throws } from "node:assert/strict";
import {
  describeCryptoProvider,
  formatCryptoProvider,
  getCryptoProvider,
  nativeProvider,
  nobleProvider,
  PRIMITIVE_FAMILIES,
} from "../../src/crypto/index.ts";
import { loadLibcrypto } from "../../src/crypto/libcrypto_ffi.ts";
import { ConfigError } from "../../src/errors.ts";
import { withCryptoSelection } from "../support/env.ts";
import { libcrypto } from "./providers.ts";

Deno.test("QSIGN_CRYPTO: auto (libcrypto here) by default, each provider on request", async () => {
  await withCryptoSelection(undefined, () => equal(getCryptoProvider(), libcrypto));
  await withCryptoSelection("", () => equal(getCryptoProvider(), libcrypto));
  await withCryptoSelection("auto", () => equal(getCryptoProvider(), libcrypto));
  await withCryptoSelection("libcrypto", () => equal(getCryptoProvider(), libcrypto));
  await withCryptoSelection("native", () => equal(getCryptoProvider(), nativeProvider));
  await withCryptoSelection("noble", () => equal(getCryptoProvider(), nobleProvider));
  equal(nativeProvider.name, "native");
  equal(nobleProvider.name, "noble");
  equal(libcrypto.name, "libcrypto");
});

Deno.test("QSIGN_CRYPTO: an unknown value is a ConfigError naming the variable", async () => {
  for (const value of ["openssl", "NOBLE", "toString"]) {
    await withCryptoSelection(value, () => {
      throws(getCryptoProvider, (error: unknown) => {
        ok(error instanceof ConfigError);
        equal(error.field, "QSIGN_CRYPTO");
        equal(error.exitCode, 2);
        ok(error.message.includes(value));
        return true;
      });
    });
  }
});

Deno.test("the provider report: every primitive family, libcrypto's library version", () => {
  const report = describeCryptoProvider(libcrypto);
  equal(report.provider, "libcrypto");
  match(report.library ?? "", /^OpenSSL 3\./);
  deepEqual(Object.keys(report.primitives), [...PRIMITIVE_FAMILIES]);
  equal(report.primitives["AES-GCM"], "libcrypto");
  equal(report.primitives["ECDSA"], "libcrypto");
  // Before OpenSSL 3.5 (Debian 12's 3.0) there is no ML-KEM, and ML-DSA signs faster in Deno
  // than even in 3.5: WebCrypto serves those. Nettle's P-384 is faster than OpenSSL's, and it
  // serves P-384 agreement. The banner says so.
  const load = loadLibcrypto();
  ok(load.ok);
  equal(report.primitives["ML-KEM"], load.lib.hasMlKem ? "libcrypto" : "webcrypto");
  equal(report.primitives["ML-DSA"], "webcrypto");
  equal(report.primitives["ECDH P-384"], "nettle");
  const onWebCrypto = PRIMITIVE_FAMILIES.filter((family) =>
    report.primitives[family] === "webcrypto"
  );
  equal(
    formatCryptoProvider(libcrypto),
    `libcrypto (${load.lib.version}); ECDH P-384: nettle; ${onWebCrypto.join(", ")}: webcrypto`,
  );
  equal(describeCryptoProvider(nativeProvider).primitives["HMAC/HKDF"], "noble");
  match(formatCryptoProvider(nativeProvider), /^native; .*HMAC\/HKDF: noble/);
});

/** Runs a small program in a fresh process (libcrypto is loaded once per isolate). */
async function probe(env: Record<string, string>, flags: string[]): Promise<string> {
  const program = `
    import { getCryptoProvider, describeCryptoProvider } from ${
    JSON.stringify(new URL("../../src/crypto/index.ts", import.meta.url).href)
  };
    try {
      const provider = getCryptoProvider();
      console.log(provider.name, describeCryptoProvider(provider).libcryptoUnavailable ?? "-");
    } catch (error) {
      console.log(error.name, error.message);
    }`;
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  await Deno.writeTextFile(script, program);
  const root = new URL("../..", import.meta.url).pathname;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", `--config=${root}deno.json`, "--allow-read", ...flags, script],
    cwd: root,
    // The default soname unless the case names another (not the one this run may use).
    env: { QSIGN_LIBCRYPTO: "", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output().finally(() => Deno.remove(script));
  return new TextDecoder().decode(output.stdout).trim() +
    new TextDecoder().decode(output.stderr).trim();
}

Deno.test("auto falls back to native where libcrypto does not load; libcrypto then says why", async () => {
  const missing = { QSIGN_LIBCRYPTO: "/nonexistent/libcrypto.so.3" };
  const all = ["--allow-env", "--allow-ffi"];
  match(await probe({ ...missing, QSIGN_CRYPTO: "auto" }, all), /^native cannot load/);
  match(
    await probe({ ...missing, QSIGN_CRYPTO: "libcrypto" }, all),
    /^ConfigError .*libcrypto provider is unavailable: cannot load \/nonexistent.*QSIGN_CRYPTO=native/,
  );
  // Not OpenSSL 3 (libc is a loadable library without its symbols).
  match(await probe({ QSIGN_LIBCRYPTO: "libc.so.6" }, all), /^native cannot load libc\.so\.6/);
  // A libcrypto that loads but cannot fetch what qsign needs: here, one configured to take only
  // FIPS implementations, with no FIPS provider installed.
  const config = await Deno.makeTempFile({ suffix: ".cnf" });
  await Deno.writeTextFile(
    config,
    "openssl_conf = init\n[init]\nalg_section = evp\n[evp]\ndefault_properties = fips=yes\n",
  );
  try {
    match(await probe({ OPENSSL_CONF: config }, all), /^native .*fetching SHA2-256/);
  } finally {
    await Deno.remove(config);
  }
  // No FFI permission: native.
  match(await probe({}, ["--allow-env"]), /^native cannot load libcrypto\.so\.3/);
  match(await probe({}, all), /^libcrypto -$/);
});
