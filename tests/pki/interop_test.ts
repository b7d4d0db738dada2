/**
 * Proof that is not our own word: the OpenSSL 3.5 inside Node.js 26 parses every certificate
 * `qsign pki` makes, checks each signature with the issuer's public key, and completes mutual
 * TLS between two of its own processes with qsign-issued ML-DSA-65 certificates over
 * SecP384r1MLKEM1024, each side trusting only root-ca.crt.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { initPki, issueLeaf } from "../../src/pki/ca.ts";
import { KEY_ALGORITHMS } from "../../src/pki/keys.ts";
import { PEER_NODE, tempDir } from "../support/env.ts";

const PEER = new URL("./peer/", import.meta.url).pathname;

async function node(args: string[]): Promise<unknown> {
  const out = await new Deno.Command(PEER_NODE, { args, stdout: "piped", stderr: "piped" })
    .output();
  const stderr = new TextDecoder().decode(out.stderr);
  equal(out.code, 0, stderr);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

interface CheckResult {
  file: string;
  parsed: boolean;
  subject?: string;
  keyType?: string;
  verified?: boolean;
  keyError?: string;
}

for (const alg of KEY_ALGORITHMS) {
  Deno.test(`OpenSSL 3.5 parses and verifies every ${alg} certificate of pki init and pki issue`, async () => {
    await using dir = await tempDir();
    const p = (name: string) => `${dir.path}/${name}`;
    await initPki({ dir: dir.path, alg });
    const issued = await issueLeaf({ dir: dir.path, profile: "client", cn: "issued.qsign.local" });
    await Deno.writeTextFile(p("issued.crt"), issued.certPem);
    const pairs = [
      { cert: p("root-ca.crt"), issuer: p("root-ca.crt") },
      { cert: p("server-ca.crt"), issuer: p("root-ca.crt") },
      { cert: p("client-ca.crt"), issuer: p("root-ca.crt") },
      { cert: p("server.crt"), issuer: p("server-ca.crt") },
      { cert: p("client.crt"), issuer: p("client-ca.crt") },
      { cert: p("issued.crt"), issuer: p("client-ca.crt") },
    ];
    const results = await node([`${PEER}x509_check.mjs`, JSON.stringify(pairs)]) as CheckResult[];
    equal(results.length, pairs.length);
    deepEqual(results.map((r) => r.subject?.split("\n")[0]), [
      "CN=QSIGN Root CA",
      "CN=QSIGN Intermediate CA (Server)",
      "CN=QSIGN Intermediate CA (Client)",
      "CN=qtls-server.qsign.local",
      "CN=qtls-client.qsign.local",
      "CN=issued.qsign.local",
    ]);
    for (const r of results) {
      ok(r.parsed, `${r.file} parsed`);
      if (alg === "mldsa65-ecdsa-p384") {
        // OpenSSL 3.5 has no composite ML-DSA: it parses the certificate but cannot decode the
        // key, so the signature check is ours alone (tests/pki/composite_test.ts checks the
        // implementation against the draft's test vector instead).
        ok(r.keyError, `${r.file}: expected OpenSSL to refuse the composite key`);
      } else {
        equal(r.verified, true, `${r.file}: signature verified by OpenSSL`);
      }
    }
    const expectedType: Record<string, string | undefined> = {
      mldsa44: "ml-dsa-44",
      mldsa65: "ml-dsa-65",
      mldsa87: "ml-dsa-87",
      "ecdsa-p256": "ec",
      "ecdsa-p384": "ec",
      "rsa-3072": "rsa",
      "rsa-pss-3072": "rsa-pss",
      ed25519: "ed25519",
    };
    equal(results[0].keyType, expectedType[alg]);
  });
}

/** Reads a child's stdout line by line. */
function lines(stream: ReadableStream<Uint8Array>): () => Promise<Record<string, unknown>> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  return async () => {
    while (!buffer.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`peer closed its output (so far: ${buffer})`);
      buffer += value;
    }
    const newline = buffer.indexOf("\n");
    const line = buffer.slice(0, newline);
    buffer = buffer.slice(newline + 1);
    return JSON.parse(line);
  };
}

Deno.test("mutual TLS between two OpenSSL 3.5 peers with qsign ML-DSA-65 certificates over SecP384r1MLKEM1024", async () => {
  await using dir = await tempDir();
  const p = (name: string) => `${dir.path}/${name}`;
  await initPki({ dir: dir.path, alg: "mldsa65" });
  const server = new Deno.Command(PEER_NODE, {
    args: [`${PEER}tls_server.mjs`, p("server.crt"), p("server.key"), p("root-ca.crt")],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const next = lines(server.stdout);
  try {
    const { port } = await next() as { port: number };
    const client = (withCertificate: boolean) =>
      node([
        `${PEER}tls_client.mjs`,
        String(port),
        "qtls-server.qsign.local",
        p("root-ca.crt"),
        ...(withCertificate ? [p("client.crt"), p("client.key")] : []),
      ]) as Promise<Record<string, unknown>>;

    const mutual = await client(true);
    equal(mutual.connected, true);
    equal(mutual.protocol, "TLSv1.3");
    deepEqual(mutual.ephemeralKey, { type: "TLSGroup", name: "SecP384r1MLKEM1024" });
    equal(mutual.authorized, true);
    equal(mutual.peerSubject, "qtls-server.qsign.local");
    equal(mutual.peerKeyType, "ml-dsa-65");
    equal(mutual.data, "hello from the OpenSSL 3.5 server\n");
    equal(mutual.error, undefined);
    const accepted = await next();
    deepEqual(accepted, {
      event: "secure",
      protocol: "TLSv1.3",
      authorized: true,
      peerSubject: "qtls-client.qsign.local",
      cipher: "TLS_AES_256_GCM_SHA384",
      peerKeyType: "ml-dsa-65",
    });

    // Without a client certificate the server ends the handshake with certificate_required.
    const anonymous = await client(false);
    equal(anonymous.data, "");
    equal((anonymous.error as { code: string }).code, "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED");
    const refused = await next();
    equal(refused.event, "clientError");
    equal(refused.code, "ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE");
  } finally {
    await server.stdin.close();
    await server.stdout.cancel().catch(() => {});
    const status = await server.status;
    equal(status.code, 0);
  }
});
