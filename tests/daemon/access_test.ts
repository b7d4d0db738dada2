/**
 * The daemon's access policy in the engine over a real socket: --allow-cn admits a subject with
 * one matching CN, never one whose subject holds several CNs (whichever of them matches).
 */
import "reflect-metadata";
import { equal, match, ok } from "node:assert/strict";
import { accessPolicy } from "../../src/daemon/access.ts";
import type { LoadedPrivateKey } from "../../src/pki/keys.ts";
import { TlsError } from "../../src/tls/alert.ts";
import { FileSigner, KEY_KIND_OF_ALGORITHM } from "../../src/tls/signers.ts";
import { CLIENT_AUTH, make } from "../pki/helpers.ts";
import { tempDir } from "../support/env.ts";
import { makePki } from "../tls/support/pki.ts";
import { EchoServer, qsignEcho } from "../tls/support/qsign.ts";

Deno.test("--allow-cn matches a single CN only", async () => {
  await using dir = await tempDir();
  const pki = await makePki(`${dir.path}/pki`, "mldsa44");
  const root = await make({ subject: "CN=Access Test Root", ca: {}, alg: "mldsa44" });
  const leafKey = async (subject: string) => {
    const leaf = await make({ subject, issuer: root, eku: [CLIENT_AUTH], alg: "mldsa44" });
    const loaded = leaf.key as LoadedPrivateKey;
    const signer = await FileSigner.fromPkcs8(
      loaded.pkcs8,
      KEY_KIND_OF_ALGORITHM[loaded.keyAlgorithm],
      "test",
    );
    return { chain: [leaf.der], signer };
  };
  await using server = new EchoServer({
    certificates: [pki.server],
    clientAuth: "require",
    trustAnchors: [root.der],
    accessPolicy: accessPolicy({ cn: ["admin.example"], ou: ["ops"], dns: [], uri: [] }),
  });
  const connect = async (subject: string) => {
    const before = server.outcomes.length;
    await qsignEcho(server.port, {
      serverName: "localhost",
      trustAnchors: [pki.rootDer],
      certificate: await leafKey(subject),
    }, new Uint8Array([1])).catch((e) => ok(e instanceof TlsError, String(e)));
    return (await server.waitFor(before + 1))[before];
  };

  ok("info" in await connect("CN=admin.example"));
  for (
    const subject of ["CN=evil.example, CN=admin.example", "CN=admin.example, CN=evil.example"]
  ) {
    const refused = await connect(subject);
    ok("error" in refused, `${subject} was admitted`);
    equal(refused.error.alert, "access_denied");
    match(refused.error.reason, /holds 2 CNs/);
  }
  // Another kind of name still admits such a subject: the policy is any-match.
  ok("info" in await connect("CN=evil.example, CN=admin.example, OU=ops"));
});
