/**
 * The certificate store: every configured path becomes a link through one `live` link, a new
 * version goes live with a single rename, and a certificate that does not match its key never
 * does; and the daemon's file watch follows the links it makes. (Killing a renewal at each
 * write step is in renewal_test.ts, and with a running daemon in daemon_renewal_test.ts.)
 */
import { deepEqual, equal, ok, rejects } from "node:assert/strict";
import { join } from "node:path";
import {
  certMatchesKey,
  KeyMismatchError,
  type ManagedPaths,
  storeCertificate,
} from "../../src/issuer/store.ts";
import { readServedCertificate } from "../../src/issuer/renewal.ts";
import { resolutionEntries } from "../../src/daemon/reload.ts";
import { tempDir } from "../support/env.ts";
import { selfSignedPair } from "./support/certs.ts";

function pathsIn(dir: string): ManagedPaths {
  return {
    cert: join(dir, "server.crt"),
    key: join(dir, "server.key"),
    chain: join(dir, "ca-chain.pem"),
  };
}

async function versions(paths: ManagedPaths): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(`${paths.cert}.versions`)) {
    if (e.isDirectory) names.push(e.name);
  }
  return names.sort();
}

Deno.test("the first store makes links through live, with a 0600 key that matches", async () => {
  await using dir = await tempDir();
  const paths = pathsIn(dir.path);
  const pair = await selfSignedPair("first.qsign.local");
  await storeCertificate(paths, { ...pair, chainPem: pair.certPem }, pair.serial);

  equal(await Deno.readLink(paths.cert), "server.crt.live/cert.pem");
  equal(await Deno.readLink(paths.key!), "server.crt.live/key.pem");
  equal(await Deno.readLink(paths.chain!), "server.crt.live/chain.pem");
  equal(await Deno.readTextFile(paths.key!), pair.keyPem);
  equal(await Deno.readTextFile(paths.cert), pair.certPem);
  equal((await Deno.stat(paths.key!)).mode! & 0o777, 0o600);
  ok(await certMatchesKey(paths.cert, paths.key!));
  equal((await readServedCertificate(paths.cert))?.serial, pair.serial);
  equal((await versions(paths)).length, 1);
});

Deno.test("plain files are adopted, then replaced; the previous version is kept", async () => {
  await using dir = await tempDir();
  const paths = pathsIn(dir.path);
  const old = await selfSignedPair("old.qsign.local");
  await Deno.writeTextFile(paths.cert, old.certPem);
  await Deno.writeTextFile(paths.key!, old.keyPem, { mode: 0o600 });
  const renewed = await selfSignedPair("new.qsign.local");
  await storeCertificate(paths, { ...renewed, chainPem: "" }, renewed.serial);

  ok((await Deno.lstat(paths.cert)).isSymlink);
  equal((await readServedCertificate(paths.cert))?.serial, renewed.serial);
  ok(await certMatchesKey(paths.cert, paths.key!));
  const kept = await versions(paths);
  equal(kept.length, 2);
  const previous = join(`${paths.cert}.versions`, kept.find((v) => v.includes("adopted"))!);
  equal(await Deno.readTextFile(join(previous, "cert.pem")), old.certPem);
  equal(await Deno.readTextFile(join(previous, "key.pem")), old.keyPem);
});

Deno.test("only the live version and its predecessor stay", async () => {
  await using dir = await tempDir();
  const paths = pathsIn(dir.path);
  const serials: string[] = [];
  for (let i = 0; i < 4; i++) {
    const pair = await selfSignedPair(`v${i}.qsign.local`);
    serials.push(pair.serial);
    await storeCertificate(paths, { ...pair, chainPem: "" }, pair.serial);
  }
  const kept = await versions(paths);
  deepEqual(kept.map((v) => v.split("-")[1]).sort(), serials.slice(2).sort());
});

Deno.test("a certificate that does not match its key is refused and nothing changes", async () => {
  await using dir = await tempDir();
  const paths = pathsIn(dir.path);
  const served = await selfSignedPair("served.qsign.local");
  await storeCertificate(paths, { ...served, chainPem: "" }, served.serial);
  const other = await selfSignedPair("other.qsign.local");

  await rejects(
    storeCertificate(paths, { certPem: other.certPem, keyPem: served.keyPem }, other.serial),
    KeyMismatchError,
  );
  equal(await Deno.readTextFile(paths.cert), served.certPem);
  equal(await Deno.readTextFile(paths.key!), served.keyPem);
  equal((await versions(paths)).length, 1);
});

Deno.test("without a key path (HSM key) only the certificate and chain are stored", async () => {
  await using dir = await tempDir();
  const paths = { cert: join(dir.path, "hsm.crt"), chain: join(dir.path, "hsm-chain.pem") };
  const pair = await selfSignedPair("hsm.qsign.local");
  await storeCertificate(paths, { certPem: pair.certPem, chainPem: pair.certPem }, pair.serial);
  equal(await Deno.readTextFile(paths.cert), pair.certPem);
  const [version] = await versions(paths);
  const files = [];
  for await (const e of Deno.readDir(join(`${paths.cert}.versions`, version))) files.push(e.name);
  deepEqual(files.sort(), ["cert.pem", "chain.pem"]);
});

Deno.test("the daemon's watch follows a stored path through its live link to the version", async () => {
  await using dir = await tempDir();
  const paths = pathsIn(dir.path);
  equal(
    (await resolutionEntries(paths.cert)).at(-1),
    paths.cert,
    "a missing file: watch where it will appear",
  );
  const first = await selfSignedPair("first.qsign.local");
  await storeCertificate(paths, first, first.serial);
  const [firstVersion] = await versions(paths);
  const versionFile = join(`${paths.cert}.versions`, firstVersion, "cert.pem");
  deepEqual(await resolutionEntries(paths.cert), [paths.cert, `${paths.cert}.live`, versionFile]);

  const second = await selfSignedPair("second.qsign.local");
  await storeCertificate(paths, second, second.serial);
  const entries = await resolutionEntries(paths.key!);
  deepEqual(entries.slice(0, 2), [paths.key, `${paths.cert}.live`]);
  ok(!entries[2].includes(firstVersion), "the live link now leads to the new version");
  equal(await Deno.realPath(paths.key!), entries[2]);
});
