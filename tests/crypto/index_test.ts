/** QSIGN_CRYPTO picks the provider; anything else is a configuration error naming it. */
import { equal, ok, throws } from "node:assert/strict";
import { getCryptoProvider, nativeProvider, nobleProvider } from "../../src/crypto/index.ts";
import { ConfigError } from "../../src/errors.ts";

async function withSelection(value: string | undefined, check: () => void | Promise<void>) {
  const saved = Deno.env.get("QSIGN_CRYPTO");
  if (value === undefined) Deno.env.delete("QSIGN_CRYPTO");
  else Deno.env.set("QSIGN_CRYPTO", value);
  try {
    await check();
  } finally {
    if (saved === undefined) Deno.env.delete("QSIGN_CRYPTO");
    else Deno.env.set("QSIGN_CRYPTO", saved);
  }
}

Deno.test("QSIGN_CRYPTO: native by default, noble or native on request", async () => {
  await withSelection(undefined, () => equal(getCryptoProvider(), nativeProvider));
  await withSelection("", () => equal(getCryptoProvider(), nativeProvider));
  await withSelection("native", () => equal(getCryptoProvider(), nativeProvider));
  await withSelection("noble", () => equal(getCryptoProvider(), nobleProvider));
  equal(nativeProvider.name, "native");
  equal(nobleProvider.name, "noble");
});

Deno.test("QSIGN_CRYPTO: an unknown value is a ConfigError naming the variable", async () => {
  for (const value of ["openssl", "NOBLE", "toString"]) {
    await withSelection(value, () => {
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
