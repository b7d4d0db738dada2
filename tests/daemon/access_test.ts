/**
 * The daemon's access policy: --allow-cn admits a subject with one matching CN, never one whose
 * subject holds several CNs (whichever of them matches), in the engine over a real socket and
 * on the policy itself (the chain verifier refuses such subjects before the policy sees them).
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
    // Each CN also as a DNS name (a CN must copy a subjectAltName, CA/B Forum BR 7.1.4.3).
    const sans = [...subject.matchAll(/CN=([^,]+)/g)].map((m) => `DNS:${m[1]}`);
    const leaf = await make({ subject, issuer: root, eku: [CLIENT_AUTH], alg: "mldsa44", sans });
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

  const first = await connect("CN=admin.example");
  ok("info" in first, "error" in first ? first.error.message : "");
  for (
    const subject of ["CN=evil.example, CN=admin.example", "CN=admin.example, CN=evil.example"]
  ) {
    // The chain verifier refuses such a subject first (bad_certificate); the policy would too.
    const refused = await connect(subject);
    ok("error" in refused, `${subject} was admitted`);
    ok(["bad_certificate", "access_denied"].includes(refused.error.alert), refused.error.message);
  }
});

Deno.test("accessPolicy: several CNs never match --allow-cn, other kinds still may", () => {
  const policy = accessPolicy({ cn: ["admin.example"], ou: ["ops"], dns: [], uri: [] })!;
  const peer = (cn: string[], ou: string[] = []) => ({
    subject: cn.map((c) => `CN=${c}`).join(", "),
    serial: "01",
    fingerprint: "00",
    cn,
    ou,
    dns: [],
    uri: [],
  });
  equal(policy(peer(["admin.example"])), true);
  for (const cns of [["evil.example", "admin.example"], ["admin.example", "admin.example"]]) {
    const verdict = policy(peer(cns));
    ok(verdict !== true, `${cns} admitted`);
    match(String(verdict), /holds 2 CNs/);
  }
  // The policy is any-match: an allowed OU admits whatever the CNs.
  equal(policy(peer(["evil.example", "admin.example"], ["ops"])), true);
  equal(accessPolicy({ cn: [], ou: [], dns: [], uri: [] }), undefined);
});
