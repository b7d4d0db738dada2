/** Test PKIs made by the project's own CA code (`qsign pki init`), one per key algorithm. */
import { join } from "node:path";
import {
  type CaName,
  certificateSerial,
  generateCrl,
  initPki,
  issueLeaf,
  PKI_FILES,
  revokeCertificate,
} from "../../../src/pki/ca.ts";
import type { KeyAlgorithm } from "../../../src/pki/keys.ts";
import { readPrivateKeyFile } from "../../../src/pki/keys.ts";
import { pemDecodeAll, pemEncode } from "../../../src/pki/pem.ts";
import type { CertifiedKey, TlsClientConfig, TlsServerConfig } from "../../../src/tls/config.ts";
import { FileSigner, KEY_KIND_OF_ALGORITHM } from "../../../src/tls/signers.ts";

/** One PKI: root, server and client chains, as PEM (for Node) and as qsign CertifiedKeys. */
export interface TestPki {
  dir: string;
  alg: KeyAlgorithm;
  rootPem: string;
  rootDer: Uint8Array;
  serverCertPem: string;
  serverKeyPem: string;
  clientCertPem: string;
  clientKeyPem: string;
  server: CertifiedKey;
  client: CertifiedKey;
}

async function certifiedKey(dir: string, cert: string, key: string): Promise<CertifiedKey> {
  const chain = pemDecodeAll(await Deno.readTextFile(join(dir, cert)), "CERTIFICATE");
  const loaded = await readPrivateKeyFile(join(dir, key));
  const signer = await FileSigner.fromPkcs8(
    loaded.pkcs8,
    KEY_KIND_OF_ALGORITHM[loaded.keyAlgorithm],
    `file:${join(dir, key)}`,
  );
  return { chain, signer };
}

/** Creates a PKI of `alg` under `dir` (root → server/client intermediates → leaves). */
export async function makePki(dir: string, alg: KeyAlgorithm): Promise<TestPki> {
  await initPki({ dir, alg });
  const read = (f: string) => Deno.readTextFile(join(dir, f));
  const rootPem = await read(PKI_FILES.rootCert);
  return {
    dir,
    alg,
    rootPem,
    rootDer: pemDecodeAll(rootPem, "CERTIFICATE")[0],
    serverCertPem: await read(PKI_FILES.serverCert),
    serverKeyPem: await read(PKI_FILES.serverKey),
    clientCertPem: await read(PKI_FILES.clientCert),
    clientKeyPem: await read(PKI_FILES.clientKey),
    server: await certifiedKey(dir, PKI_FILES.serverCert, PKI_FILES.serverKey),
    client: await certifiedKey(dir, PKI_FILES.clientCert, PKI_FILES.clientKey),
  };
}

/** The server side of mutual TLS over `pki`: its server leaf, a client certificate required. */
export function mutualTlsServer(pki: TestPki): TlsServerConfig {
  return { certificates: [pki.server], clientAuth: "require", trustAnchors: [pki.rootDer] };
}

/** The client side of mutual TLS over `pki`: server name localhost, its client leaf. */
export function mutualTlsClient(pki: TestPki): TlsClientConfig {
  return { serverName: "localhost", trustAnchors: [pki.rootDer], certificate: pki.client };
}

/** A leaf issued on demand (expired, revoked, wrong purpose…), as PEM and as a CertifiedKey. */
export interface IssuedTestLeaf {
  certPem: string;
  keyPem: string;
  serial: string;
  key: CertifiedKey;
}

/** Issues a leaf from the PKI's `profile` intermediate (the leaf gets that profile's EKU). */
export async function issueTestLeaf(
  pki: TestPki,
  profile: "server" | "client",
  options: { cn?: string; sans?: string[]; now?: Date; ttlSeconds?: number } = {},
): Promise<IssuedTestLeaf> {
  const cn = options.cn ?? `${profile}-test.qsign.local`;
  // The CN must be a copy of a subjectAltName (CA/Browser Forum BR §7.1.4.3).
  const sans = options.sans && !options.sans.includes(`DNS:${cn}`)
    ? [`DNS:${cn}`, ...options.sans]
    : options.sans;
  const issued = await issueLeaf({
    dir: pki.dir,
    profile,
    cn,
    sans,
    now: options.now,
    ttlSeconds: options.ttlSeconds,
  });
  const signer = await FileSigner.fromPkcs8(
    issued.key!.pkcs8,
    KEY_KIND_OF_ALGORITHM[issued.key!.keyAlgorithm],
    "test",
  );
  return {
    certPem: issued.certPem,
    keyPem: issued.keyPem!,
    serial: issued.serial,
    key: { chain: issued.chain, signer },
  };
}

/** One CRL, as DER (for qsign) and PEM (for Node). */
export interface TestCrl {
  der: Uint8Array;
  pem: string;
}

/** Revokes each serial (leaves or intermediate CAs) in the PKI's index. */
export async function revoke(pki: TestPki, ...serials: string[]): Promise<void> {
  for (const serial of serials) await revokeCertificate({ dir: pki.dir, serial });
}

/**
 * The CRLs `qsign pki crl --ca root|server|client` publishes now: the Root CA's covers the
 * intermediates, each intermediate's its leaves. A chain check (OpenSSL's CRL_CHECK_ALL, which
 * Node's `crl` option sets) needs the root's and the leaf's issuer's.
 */
export async function publishCrls(pki: TestPki): Promise<Record<CaName, TestCrl>> {
  const crl = async (profile: CaName) => {
    const der = await generateCrl({ dir: pki.dir, profile });
    return { der, pem: pemEncode("X509 CRL", der) };
  };
  return { root: await crl("root"), server: await crl("server"), client: await crl("client") };
}

/** The serial of an intermediate CA of the PKI, as `qsign pki revoke` takes it. */
export async function caSerial(pki: TestPki, profile: "server" | "client"): Promise<string> {
  const file = profile === "server" ? PKI_FILES.serverCaCert : PKI_FILES.clientCaCert;
  const [der] = pemDecodeAll(await Deno.readTextFile(join(pki.dir, file)), "CERTIFICATE");
  return certificateSerial(der);
}
