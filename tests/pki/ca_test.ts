/** The embedded CA through the module API: init, issue (with and without a CSR), revoke, CRL. */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { deepEqual, equal, ok, rejects } from "node:assert/strict";
import {
  CsrError,
  generateCrl,
  initPki,
  issueLeaf,
  PKI_FILES,
  PkiError,
  readIndex,
  revokeCertificate,
} from "../../src/pki/ca.ts";
import { createCertificateRequest, parseSubjectAltName } from "../../src/pki/certificate.ts";
import { generateKeyPair } from "../../src/pki/keys.ts";
import { readCertificatesFile } from "../../src/pki/pem.ts";
import { verifySignature } from "../../src/pki/signatures.ts";
import { verifyChain } from "../../src/pki/verify.ts";
import { tempDir } from "../support/env.ts";

const YEAR = 365 * 24 * 3600 * 1000;
const cert = (der: Uint8Array) => new x509.X509Certificate(der as Uint8Array<ArrayBuffer>);
const years = (c: x509.X509Certificate) =>
  Math.round((c.notAfter.getTime() - c.notBefore.getTime()) / YEAR);

Deno.test("pki init creates the tree of the original example", async () => {
  await using dir = await tempDir();
  const now = new Date();
  await initPki({ dir: dir.path, now });
  for (const name of Object.values(PKI_FILES)) {
    ok((await Deno.stat(`${dir.path}/${name}`)).isFile, name);
  }
  for (
    const name of ["root-ca.key", "server-ca.key", "client-ca.key", "server.key", "client.key"]
  ) {
    equal((await Deno.stat(`${dir.path}/${name}`)).mode! & 0o777, 0o600, name);
  }
  const [root] = (await readCertificatesFile(`${dir.path}/root-ca.crt`)).map(cert);
  const [serverCa] = (await readCertificatesFile(`${dir.path}/server-ca.crt`)).map(cert);
  const [clientCa] = (await readCertificatesFile(`${dir.path}/client-ca.crt`)).map(cert);
  const serverChain = (await readCertificatesFile(`${dir.path}/server.crt`)).map(cert);
  const clientChain = (await readCertificatesFile(`${dir.path}/client.crt`)).map(cert);

  equal(root.subject, "CN=QSIGN Root CA, O=QSIGN");
  equal(root.issuer, root.subject);
  equal(years(root), 20);
  equal(serverCa.subject, "CN=QSIGN Intermediate CA (Server), O=QSIGN");
  equal(clientCa.subject, "CN=QSIGN Intermediate CA (Client), O=QSIGN");
  for (const ca of [serverCa, clientCa]) {
    equal(years(ca), 10);
    equal(ca.getExtension(x509.BasicConstraintsExtension)?.pathLength, 0);
    equal(
      ca.getExtension(x509.KeyUsagesExtension)?.usages,
      x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
    );
    equal(
      ca.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId,
      root.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId,
    );
  }
  equal(serverChain.length, 2, "server.crt holds leaf + intermediate");
  ok(serverChain[1].equal(serverCa));
  ok(clientChain[1].equal(clientCa));
  const [server, client] = [serverChain[0], clientChain[0]];
  equal(server.subject, "CN=qtls-server.qsign.local, O=QSIGN");
  equal(client.subject, "CN=qtls-client.qsign.local, O=QSIGN");
  equal(years(server), 1);
  deepEqual(
    server.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON(),
    [
      { type: "dns", value: "qtls-server.qsign.local" },
      { type: "dns", value: "*.qsign.local" },
      { type: "dns", value: "localhost" },
      { type: "ip", value: "127.0.0.1" },
      { type: "ip", value: "::1" },
    ],
  );
  deepEqual(server.getExtension(x509.ExtendedKeyUsageExtension)?.usages, [
    x509.ExtendedKeyUsage.serverAuth,
  ]);
  deepEqual(client.getExtension(x509.ExtendedKeyUsageExtension)?.usages, [
    x509.ExtendedKeyUsage.clientAuth,
  ]);
  equal(server.getExtension(x509.BasicConstraintsExtension)?.ca, false);
  equal(server.publicKey.algorithm.name, "ML-DSA-65");

  const rootDer = await readCertificatesFile(`${dir.path}/root-ca.crt`);
  const [serverDer, serverCaDer] = await readCertificatesFile(`${dir.path}/server.crt`);
  const [clientDer, clientCaDer] = await readCertificatesFile(`${dir.path}/client.crt`);
  for (
    const host of [
      "qtls-server.qsign.local",
      "anything.qsign.local",
      "localhost",
      "127.0.0.1",
      "::1",
    ]
  ) {
    await verifyChain(serverDer, {
      trustAnchors: rootDer,
      intermediates: [serverCaDer],
      purpose: "server",
      host,
    });
  }
  await verifyChain(clientDer, {
    trustAnchors: rootDer,
    intermediates: [clientCaDer],
    purpose: "client",
  });
  equal((await readIndex(dir.path)).certificates.length, 4);
});

Deno.test("pki init refuses to overwrite a PKI without force, and replaces it with force", async () => {
  await using dir = await tempDir();
  await initPki({ dir: dir.path, alg: "ecdsa-p256" });
  const before = await Deno.readTextFile(`${dir.path}/root-ca.crt`);
  await rejects(initPki({ dir: dir.path, alg: "ecdsa-p256" }), PkiError);
  equal(await Deno.readTextFile(`${dir.path}/root-ca.crt`), before);
  await initPki({ dir: dir.path, alg: "ecdsa-p256", force: true, org: "ACME" });
  const [root] = (await readCertificatesFile(`${dir.path}/root-ca.crt`)).map(cert);
  equal(root.subject, "CN=ACME Root CA, O=ACME");
});

Deno.test("issueLeaf: random positive 16-byte serials, lifetime, SANs, AKI, index", async () => {
  await using dir = await tempDir();
  await initPki({ dir: dir.path });
  const now = new Date();
  const issued = await issueLeaf({
    dir: dir.path,
    profile: "client",
    cn: "alice",
    sans: ["EMAIL:alice@example.test", "URI:spiffe://qsign/alice"],
    ttlSeconds: 3600,
    now,
  });
  ok(/^(0[1-9a-f]|[1-7][0-9a-f])[0-9a-f]{30}$/.test(issued.serial), issued.serial);
  ok(issued.keyPem?.startsWith("-----BEGIN PRIVATE KEY-----"));
  equal(issued.notAfter.getTime(), now.getTime() + 3600_000);
  const [leaf, intermediate] = issued.chain.map(cert);
  equal(leaf.serialNumber.toLowerCase(), issued.serial);
  equal(leaf.subject, "CN=alice, O=QSIGN");
  deepEqual(leaf.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON(), [
    { type: "email", value: "alice@example.test" },
    { type: "url", value: "spiffe://qsign/alice" },
  ]);
  equal(
    leaf.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId,
    intermediate.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId,
  );
  const index = await readIndex(dir.path);
  equal(index.certificates.at(-1)?.serial, issued.serial);
  equal(index.certificates.at(-1)?.issuer, "client");
});

Deno.test("issueLeaf certifies a CSR's key, and refuses a CSR whose signature does not verify", async () => {
  await using dir = await tempDir();
  await initPki({ dir: dir.path, alg: "ecdsa-p256" });
  const key = await generateKeyPair("mldsa65-ecdsa-p384");
  const csr = await createCertificateRequest({ subject: "CN=hsm.qsign.local", signer: key });
  const csrDer = new Uint8Array(csr.rawData);
  const issued = await issueLeaf({
    dir: dir.path,
    profile: "server",
    cn: "hsm.qsign.local",
    csrDer,
  });
  equal(issued.keyPem, undefined);
  const leaf = cert(issued.chain[0]);
  deepEqual(new Uint8Array(leaf.publicKey.rawData), key.spki);
  // The composite leaf is signed by the ECDSA intermediate.
  ok(await verifySignature(leaf, cert(issued.chain[1]).publicKey));
  const tampered = csrDer.slice();
  tampered[tampered.length - 3] ^= 0x01;
  await rejects(
    issueLeaf({ dir: dir.path, profile: "server", cn: "x", csrDer: tampered }),
    CsrError,
  );
  await rejects(
    issueLeaf({ dir: dir.path, profile: "server", cn: "x", csrDer: new Uint8Array([1, 2]) }),
    CsrError,
  );
});

Deno.test("issueLeaf with a CSR keeps the requested subject and names, and refuses another CN", async () => {
  await using dir = await tempDir();
  await initPki({ dir: dir.path, alg: "ecdsa-p256" });
  const key = await generateKeyPair("ecdsa-p384");
  const request = async (subject: string, sans: string[] = []) =>
    new Uint8Array(
      (await createCertificateRequest({
        subject,
        signer: key,
        subjectAltNames: sans.map(parseSubjectAltName),
      })).rawData,
    );
  const korean = await request("C=KR, O=QSIGN, CN=api.qsign.local", [
    "DNS:api.qsign.local",
    "IP:127.0.0.1",
  ]);

  // The CN the operator expects, in any case: the request's whole subject and its SANs.
  const leaf = cert(
    (await issueLeaf({ dir: dir.path, profile: "server", cn: "API.qsign.local", csrDer: korean }))
      .chain[0],
  );
  equal(leaf.subject, "C=KR, O=QSIGN, CN=api.qsign.local");
  deepEqual(leaf.subjectName.getField("C"), ["KR"]);
  deepEqual(leaf.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON(), [
    { type: "dns", value: "api.qsign.local" },
    { type: "ip", value: "127.0.0.1" },
  ]);
  await verifyChain(new Uint8Array(leaf.rawData), {
    trustAnchors: await readCertificatesFile(`${dir.path}/${PKI_FILES.rootCert}`),
    intermediates: await readCertificatesFile(`${dir.path}/${PKI_FILES.serverCaCert}`),
    purpose: "server",
    host: "api.qsign.local",
  });

  // No CN given: the request's; SANs given: those instead of the request's, with the CN among
  // them (CA/Browser Forum BR 7.1.4.3: the CN is a copy of a SAN).
  const named = cert(
    (await issueLeaf({
      dir: dir.path,
      profile: "server",
      sans: ["DNS:other.qsign.local"],
      csrDer: korean,
    })).chain[0],
  );
  equal(named.subject, "C=KR, O=QSIGN, CN=api.qsign.local");
  deepEqual(named.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON(), [
    { type: "dns", value: "api.qsign.local" },
    { type: "dns", value: "other.qsign.local" },
  ]);

  // A request without SANs gets DNS:<cn>, as a generated key does.
  const plain = cert(
    (await issueLeaf({
      dir: dir.path,
      profile: "server",
      csrDer: await request("CN=p.qsign.local"),
    }))
      .chain[0],
  );
  deepEqual(plain.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON(), [
    { type: "dns", value: "p.qsign.local" },
  ]);

  // An empty subject takes the CN given, with the CA's O; without a CN there is nothing to issue.
  const empty = await request("");
  const unnamed = cert(
    (await issueLeaf({ dir: dir.path, profile: "client", cn: "bob", csrDer: empty })).chain[0],
  );
  equal(unnamed.subject, "CN=bob, O=QSIGN");
  await rejects(issueLeaf({ dir: dir.path, profile: "client", csrDer: empty }), /CN is required/);

  const before = (await readIndex(dir.path)).certificates.length;
  await rejects(
    issueLeaf({ dir: dir.path, profile: "server", cn: "evil.qsign.local", csrDer: korean }),
    (e) => {
      ok(e instanceof CsrError, String(e));
      equal(
        e.message,
        'the CSR asks for CN=api.qsign.local ("C=KR, O=QSIGN, CN=api.qsign.local"), not ' +
          "CN=evil.qsign.local: refusing to certify its key under another name (issue it " +
          "without a CN to take the request's, or get a request for the right name)",
      );
      return true;
    },
  );
  await rejects(
    issueLeaf({ dir: dir.path, profile: "server", csrDer: await request("C=KR, O=QSIGN") }),
    (e) =>
      e instanceof CsrError &&
      /has no CN; qsign certifies a subject with exactly one/.test(e.message),
  );
  await rejects(
    issueLeaf({ dir: dir.path, profile: "server", csrDer: await request("CN=a, CN=b") }),
    (e) => e instanceof CsrError && /has 2 CNs/.test(e.message),
  );
  equal((await readIndex(dir.path)).certificates.length, before, "nothing issued when refused");
});

Deno.test("revoke and CRL: signed by the intermediate, numbered, listing the serial and reason", async () => {
  await using dir = await tempDir();
  await initPki({ dir: dir.path, alg: "mldsa44" });
  const issued = await issueLeaf({ dir: dir.path, profile: "server", cn: "gone.qsign.local" });
  await revokeCertificate({
    dir: dir.path,
    serial: issued.serial.toUpperCase(),
    reason: "keyCompromise",
  });
  await rejects(revokeCertificate({ dir: dir.path, serial: issued.serial }), PkiError);
  await rejects(revokeCertificate({ dir: dir.path, serial: "0badc0de" }), PkiError);
  const first = new x509.X509Crl(
    await generateCrl({ dir: dir.path, profile: "server" }) as Uint8Array<ArrayBuffer>,
  );
  const second = new x509.X509Crl(
    await generateCrl({ dir: dir.path, profile: "server", days: 2 }) as Uint8Array<ArrayBuffer>,
  );
  const serverCa = cert((await readCertificatesFile(`${dir.path}/server-ca.crt`))[0]);
  ok(await verifySignature(first, serverCa.publicKey));
  equal(first.issuer, serverCa.subject);
  equal(first.entries.length, 1);
  equal(first.entries[0].serialNumber.toLowerCase(), issued.serial);
  equal(first.entries[0].reason, x509.X509CrlReason.keyCompromise);
  equal(new Uint8Array(first.getExtension("2.5.29.20")!.value).at(-1), 1);
  equal(new Uint8Array(second.getExtension("2.5.29.20")!.value).at(-1), 2);
  const clientCrl = new x509.X509Crl(
    await generateCrl({ dir: dir.path, profile: "client" }) as Uint8Array<ArrayBuffer>,
  );
  equal(clientCrl.entries.length, 0);
});

Deno.test("concurrent issues all land in the index", async () => {
  await using dir = await tempDir();
  await initPki({ dir: dir.path, alg: "ecdsa-p256" });
  const issued = await Promise.all(
    Array.from(
      { length: 6 },
      (_, i) => issueLeaf({ dir: dir.path, profile: "server", cn: `n${i}.qsign.local` }),
    ),
  );
  const serials = new Set((await readIndex(dir.path)).certificates.map((e) => e.serial));
  for (const leaf of issued) ok(serials.has(leaf.serial));
});
