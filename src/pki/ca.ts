/**
 * The embedded QSIGN CA: the directory tree `qsign pki init` creates (Root CA → Server and
 * Client intermediate CAs → leaves), issuing leaves from a profile, revocation and CRLs. The CA
 * keeps an index of what it issued and revoked in `DIR/index.json`, written atomically under a
 * lock so concurrent `qsign pki issue` and renewals do not lose entries.
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { basename, join } from "node:path";
import { QsignError, UsageError } from "../errors.ts";
import { writeFileAtomic } from "../fsutil.ts";
import { toHex } from "../hex.ts";
import { createCertificate, createCrl, normalizeIp, parseSubjectAltName } from "./certificate.ts";
import { altNamesWithCommonName, dnsNameProblem, issuanceNameProblem } from "./names.ts";
import {
  DEFAULT_KEY_ALGORITHM,
  generateKeyPair,
  type KeyAlgorithm,
  type LoadedPrivateKey,
  type PassphraseSource,
  privateKeyPem,
  readPrivateKeyFile,
  type TbsSigner,
  writePrivateKeyFile,
} from "./keys.ts";
import { bufferSource } from "./der.ts";
import { pemEncode, readCertificatesFile } from "./pem.ts";
import { publicKeyProblem, verifySignature } from "./signatures.ts";
import { lazySecret } from "../secrets.ts";
import { noPassphrase } from "./key_formats.ts";

export type CaProfile = "server" | "client";
/** Every CA of a PKI directory: the Root CA and the two intermediates. */
export type CaName = "root" | CaProfile;

/** File names inside a PKI directory. */
export const PKI_FILES = {
  rootCert: "root-ca.crt",
  rootKey: "root-ca.key",
  serverCaCert: "server-ca.crt",
  serverCaKey: "server-ca.key",
  clientCaCert: "client-ca.crt",
  clientCaKey: "client-ca.key",
  serverCert: "server.crt",
  serverKey: "server.key",
  clientCert: "client.crt",
  clientKey: "client.key",
  index: "index.json",
} as const;

const YEAR_MS = 365 * 24 * 3600 * 1000;
/** Leaves are valid from a minute ago, so a peer with a slightly slow clock accepts them. */
const BACKDATE_MS = 60 * 1000;

export const SERVER_LEAF_CN = "qtls-server.qsign.local";
export const CLIENT_LEAF_CN = "qtls-client.qsign.local";
export const SERVER_LEAF_SANS = [
  "DNS:qtls-server.qsign.local",
  "DNS:*.qsign.local",
  "DNS:localhost",
  "IP:127.0.0.1",
  "IP:::1",
];

const EKU = { server: x509.ExtendedKeyUsage.serverAuth, client: x509.ExtendedKeyUsage.clientAuth };

/** Revocation reasons of `qsign pki revoke --reason` (RFC 5280 CRLReason names). */
export const REVOCATION_REASONS = [
  "unspecified",
  "keyCompromise",
  "cACompromise",
  "affiliationChanged",
  "superseded",
  "cessationOfOperation",
  "certificateHold",
  "privilegeWithdrawn",
] as const;
export type RevocationReason = typeof REVOCATION_REASONS[number];

/** One certificate the CA issued. */
export interface IndexEntry {
  serial: string;
  /** Which CA issued it. */
  issuer: CaName;
  subject: string;
  notBefore: string;
  notAfter: string;
  sha256: string;
  status: "valid" | "revoked";
  revokedAt?: string;
  reason?: RevocationReason;
}

interface CaIndex {
  version: 1;
  crlNumbers: Partial<Record<CaName, number>>;
  certificates: IndexEntry[];
}

/** Raised for PKI directory problems an operator must fix (missing CA, existing PKI...). */
export class PkiError extends QsignError {}

/** A CA ready to sign: its certificate and key. */
export interface OpenCa {
  dir: string;
  profile: CaName;
  cert: x509.X509Certificate;
  der: Uint8Array;
  key: LoadedPrivateKey;
}

const CA_FILES: Record<CaName, { cert: string; key: string }> = {
  root: { cert: PKI_FILES.rootCert, key: PKI_FILES.rootKey },
  server: { cert: PKI_FILES.serverCaCert, key: PKI_FILES.serverCaKey },
  client: { cert: PKI_FILES.clientCaCert, key: PKI_FILES.clientCaKey },
};

/** How a CA's key is found and opened. */
export interface CaKeyOptions {
  /**
   * The passphrase of encrypted CA keys; default: the secret reference in QSIGN_CA_PASSPHRASE
   * (`file:///path`, `env:NAME`, `credential:NAME`, `prompt`), looked up only for an
   * encrypted key.
   */
  passphrase?: PassphraseSource;
  /** Where the Root CA's key is kept when it is not in the PKI directory (offline media). */
  rootDir?: string;
}

/** The passphrase source named by QSIGN_CA_PASSPHRASE, if set. */
export function caPassphraseFromEnv(): PassphraseSource | undefined {
  const ref = Deno.env.get(CA_PASSPHRASE_ENV);
  return ref
    ? lazySecret(ref, { label: "CA key passphrase", field: CA_PASSPHRASE_ENV })
    : undefined;
}

/** The environment variable naming the CA keys' passphrase (a secret reference). */
export const CA_PASSPHRASE_ENV = "QSIGN_CA_PASSPHRASE";
const CA_PASSPHRASE_HINT =
  `give its passphrase with --passphrase REF or ${CA_PASSPHRASE_ENV}=REF ` +
  "(file:///path, env:NAME, credential:NAME or prompt)";

/** Loads the Root CA or the Server or Client intermediate CA of a PKI directory. */
export async function openCa(
  dir: string,
  profile: CaName,
  options: CaKeyOptions = {},
): Promise<OpenCa> {
  const files = CA_FILES[profile];
  const [der] = await readCertificatesFile(join(dir, files.cert));
  const keyPath = await caKeyPath(dir, profile, options.rootDir);
  const key = await readPrivateKeyFile(
    keyPath,
    options.passphrase ?? caPassphraseFromEnv() ?? noPassphrase(CA_PASSPHRASE_HINT),
  );
  const cert = new x509.X509Certificate(bufferSource(der));
  if (toHex(key.spki) !== toHex(new Uint8Array(cert.publicKey.rawData))) {
    throw new PkiError(`${keyPath} is not the key of ${join(dir, files.cert)}`);
  }
  return { dir, profile, cert, der, key };
}

/** The CA's key file: in `dir`, or for the Root CA kept offline, in `rootDir`. */
async function caKeyPath(dir: string, profile: CaName, rootDir?: string): Promise<string> {
  const inDir = join(dir, CA_FILES[profile].key);
  if (profile !== "root") return inDir;
  if (rootDir !== undefined) return join(rootDir, PKI_FILES.rootKey);
  if (!(await exists(inDir))) {
    throw new PkiError(
      `${inDir}: the Root CA's key is not in ${dir} (kept offline by pki init --root-dir?): ` +
        "give --root-dir with the directory that holds it",
    );
  }
  return inDir;
}

/** Options of `qsign pki init`. */
export interface InitOptions {
  dir: string;
  alg?: KeyAlgorithm;
  org?: string;
  /** Replace an existing PKI. */
  force?: boolean;
  /** Encrypt the CA keys (Root and intermediates) with this passphrase (PBES2, key_formats.ts). */
  passphrase?: string;
  /**
   * Keep the Root CA offline: its key (and a copy of its certificate) is written to `rootDir`,
   * not to `dir`, which gets the certificate only. When `rootDir` already holds a Root CA, it
   * signs the new intermediates and no root is made.
   */
  rootDir?: string;
  /** Issue time (tests); default now. */
  now?: Date;
}

/** Creates the whole tree; returns the files written. Refuses to overwrite without `force`. */
export async function initPki(options: InitOptions): Promise<string[]> {
  const { dir, rootDir } = options;
  const alg = options.alg ?? DEFAULT_KEY_ALGORITHM;
  const org = options.org ?? "QSIGN";
  const now = options.now ?? new Date();
  const existingRoot = rootDir !== undefined && await exists(join(rootDir, PKI_FILES.rootKey));
  const files = Object.values(PKI_FILES)
    .filter((f) => rootDir === undefined || f !== PKI_FILES.rootKey)
    .map((f) => join(dir, f));
  if (!options.force) {
    const existing = [];
    for (const f of files) if (await exists(f)) existing.push(f);
    if (existing.length) {
      throw new PkiError(
        `${dir} already holds a PKI (${
          existing.map((f) => basename(f)).join(", ")
        }); use --force to replace it`,
      );
    }
  }
  await mkdirs(dir);
  if (rootDir !== undefined) {
    await mkdirs(rootDir);
    // Replacing a PKI whose root was kept here: the new root lives offline only.
    await Deno.remove(join(dir, PKI_FILES.rootKey)).catch(() => {});
  }

  const notBefore = new Date(now.getTime() - BACKDATE_MS);
  const years = (n: number) => new Date(now.getTime() + n * YEAR_MS);
  const caUsage = x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign;
  const entries: IndexEntry[] = [];

  const offline = existingRoot ? await openRootIn(rootDir!, options.passphrase) : undefined;
  const rootKey = offline?.key ?? await generateKeyPair(alg);
  const root = offline?.cert ?? await createCertificate({
    subject: distinguishedName(`${org} Root CA`, org),
    spki: rootKey.spki,
    signer: rootKey,
    notBefore,
    notAfter: years(20),
    ca: {},
    keyUsage: caUsage,
  });

  const intermediates = {} as Record<
    CaProfile,
    { cert: x509.X509Certificate; key: LoadedPrivateKey }
  >;
  for (const profile of ["server", "client"] as const) {
    const key = await generateKeyPair(alg);
    const label = profile === "server" ? "Server" : "Client";
    const cert = await createCertificate({
      subject: distinguishedName(`${org} Intermediate CA (${label})`, org),
      spki: key.spki,
      issuer: root,
      signer: rootKey,
      notBefore,
      notAfter: years(10),
      ca: { pathLength: 0 },
      keyUsage: caUsage,
      // What the intermediate may issue for: the Server CA cannot mint a client certificate.
      extendedKeyUsage: [EKU[profile]],
    });
    intermediates[profile] = { cert, key };
    entries.push(await indexEntry(cert, "root"));
  }

  const leaves = {} as Record<CaProfile, { cert: x509.X509Certificate; key: LoadedPrivateKey }>;
  for (const profile of ["server", "client"] as const) {
    const ca = intermediates[profile];
    const key = await generateKeyPair(alg);
    const cn = profile === "server" ? SERVER_LEAF_CN : CLIENT_LEAF_CN;
    const sans = profile === "server" ? SERVER_LEAF_SANS : [`DNS:${CLIENT_LEAF_CN}`];
    const cert = await createLeafCertificate({
      ca: { cert: ca.cert, signer: ca.key },
      profile,
      subject: distinguishedName(cn, org),
      spki: key.spki,
      subjectAltNames: sans.map(parseSubjectAltName),
      notBefore,
      notAfter: years(1),
    });
    leaves[profile] = { cert, key };
    entries.push(await indexEntry(cert, profile));
  }

  const pem = (c: x509.X509Certificate) => pemEncode("CERTIFICATE", new Uint8Array(c.rawData));
  const writes: [string, string | LoadedPrivateKey][] = [
    ...(rootDir === undefined ? [[PKI_FILES.rootKey, rootKey] as [string, LoadedPrivateKey]] : []),
    [PKI_FILES.rootCert, pem(root)],
    [PKI_FILES.serverCaKey, intermediates.server.key],
    [PKI_FILES.serverCaCert, pem(intermediates.server.cert)],
    [PKI_FILES.clientCaKey, intermediates.client.key],
    [PKI_FILES.clientCaCert, pem(intermediates.client.cert)],
    [PKI_FILES.serverKey, leaves.server.key],
    [PKI_FILES.serverCert, pem(leaves.server.cert) + pem(intermediates.server.cert)],
    [PKI_FILES.clientKey, leaves.client.key],
    [PKI_FILES.clientCert, pem(leaves.client.cert) + pem(intermediates.client.cert)],
  ];
  // CA keys are encrypted when a passphrase is given; the leaves' keys are the daemon's and
  // stay plain (mode 0600), as a service reads them unattended.
  const caKeys = new Set<LoadedPrivateKey>([
    rootKey,
    intermediates.server.key,
    intermediates.client.key,
  ]);
  for (const [name, content] of writes) {
    const path = join(dir, name);
    if (typeof content === "string") await writeFileAtomic(path, content);
    else {await writePrivateKeyFile(
        path,
        content,
        caKeys.has(content) ? options.passphrase : undefined,
      );}
  }
  if (rootDir !== undefined && !existingRoot) {
    await writePrivateKeyFile(join(rootDir, PKI_FILES.rootKey), rootKey, options.passphrase);
    await writeFileAtomic(join(rootDir, PKI_FILES.rootCert), pem(root));
    files.push(join(rootDir, PKI_FILES.rootKey), join(rootDir, PKI_FILES.rootCert));
  }
  await writeIndex(dir, { version: 1, crlNumbers: {}, certificates: entries });
  return files;
}

async function mkdirs(dir: string): Promise<void> {
  try {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new PkiError(`${dir}: cannot create the PKI directory (${(e as Error).message})`, 1, {
      cause: e,
    });
  }
}

/** The Root CA kept in `rootDir` (its certificate and key), to sign new intermediates. */
async function openRootIn(rootDir: string, passphrase: string | undefined) {
  const [der] = await readCertificatesFile(join(rootDir, PKI_FILES.rootCert));
  const keyPath = join(rootDir, PKI_FILES.rootKey);
  const key = await readPrivateKeyFile(
    keyPath,
    passphrase === undefined
      ? caPassphraseFromEnv() ?? noPassphrase(CA_PASSPHRASE_HINT)
      : () => Promise.resolve(passphrase),
  );
  const cert = new x509.X509Certificate(bufferSource(der));
  if (toHex(key.spki) !== toHex(new Uint8Array(cert.publicKey.rawData))) {
    throw new PkiError(`${keyPath} is not the key of ${join(rootDir, PKI_FILES.rootCert)}`);
  }
  return { cert, key };
}

/** `CN=…, OU=…, O=…` with the characters RFC 4514 needs escaped. */
function distinguishedName(cn: string, org: string, ou: string[] = []): string {
  const escape = (v: string) => v.replace(/([,+"\\<>;=])/g, "\\$1").replace(/^([ #])/, "\\$1");
  return [`CN=${escape(cn)}`, ...ou.map((u) => `OU=${escape(u)}`), `O=${escape(org)}`].join(", ");
}

async function createLeafCertificate(options: {
  ca: { cert: x509.X509Certificate; signer: TbsSigner };
  profile: CaProfile;
  subject: string;
  spki: Uint8Array;
  subjectAltNames: x509.JsonGeneralName[];
  notBefore: Date;
  notAfter: Date;
}): Promise<x509.X509Certificate> {
  // Never issue what the verifier refuses: bad host names, wildcards on a public suffix, a CN
  // that is not one of the subjectAltNames (a host CN is added to them).
  const [cn] = new x509.Name(options.subject).getField("CN");
  const subjectAltNames = altNamesWithCommonName(cn, options.subjectAltNames);
  const problem = issuanceNameProblem(cn, subjectAltNames);
  if (problem) throw new UsageError(`cannot issue for "${options.subject}": ${problem}`);
  return await createCertificate({
    subject: options.subject,
    spki: options.spki,
    issuer: options.ca.cert,
    signer: options.ca.signer,
    notBefore: options.notBefore,
    notAfter: options.notAfter,
    keyUsage: x509.KeyUsageFlags.digitalSignature,
    extendedKeyUsage: [EKU[options.profile]],
    subjectAltNames,
  });
}

/** Options of `qsign pki issue` and of the `local` renewal issuer. */
export interface IssueLeafOptions {
  dir: string;
  profile: CaProfile;
  /**
   * Subject CN. Required without `csrDer`; with it, optional, and when given it must be the CN
   * the request asks for (see `issueLeaf`).
   */
  cn?: string;
  /**
   * `DNS:…`, `IP:…`, `URI:…`, `EMAIL:…`; default: the names a CSR asks for, else `DNS:<cn>`
   * when the CN is a host name.
   */
  sans?: string[];
  /** Lifetime; default one year. */
  ttlSeconds?: number;
  /** Key algorithm of a generated key (ignored with `csrDer`); default: the CA's. */
  alg?: KeyAlgorithm;
  /** Certify the key of this PKCS#10 request instead of generating one. */
  csrDer?: Uint8Array;
  /** Subject O of a generated key's certificate; default: the CA's. */
  org?: string;
  /**
   * The whole subject of a generated key's certificate (RFC 4514, e.g. `CN=gw, OU=payments,
   * O=ACME`), with exactly one CN; instead of `cn`/`org`/`ou`. Not with `csrDer`.
   */
  subject?: string;
  /** Organizational units (OU) of a generated key's subject, e.g. for `allow_ou`. */
  ou?: string[];
  /** How the intermediate's (encrypted) key is opened. */
  caKey?: CaKeyOptions;
  /**
   * Hands the issued leaf over (writes its files) before it is recorded in the index: when this
   * fails, nothing is recorded, so the index lists only certificates someone received.
   */
  deliver?: (issued: IssuedLeaf) => Promise<void>;
  /** Issue time (tests); default now. */
  now?: Date;
}

export interface IssuedLeaf {
  /** The leaf followed by its intermediate, PEM: servable as is. */
  certPem: string;
  /** The generated key (PKCS#8 PEM); absent when a CSR was certified. */
  keyPem?: string;
  /** The generated key; absent when a CSR was certified. */
  key?: LoadedPrivateKey;
  /** Serial number, lowercase hex. */
  serial: string;
  notBefore: Date;
  notAfter: Date;
  /** Leaf then intermediate, DER. */
  chain: Uint8Array[];
}

/** Raised for a CSR that cannot be certified (unparsable, or its signature does not verify). */
export class CsrError extends QsignError {}

/**
 * Issues a leaf from the profile's intermediate and records it in the index.
 *
 * With a CSR the certificate carries the subject the request asks for, whole (`/C=KR/O=QSIGN/
 * CN=…` keeps its C and O), and its subjectAltNames unless `sans` replaces them: the operator
 * certifies what the requester asked for or nothing. `cn`, when given, is the operator's check
 * of that request: a CSR for another CN is refused (`CsrError`), as is one whose subject has
 * no single CN. A CSR with an empty subject gets `CN=<cn>, O=<org>` as a generated key does.
 */
export async function issueLeaf(options: IssueLeafOptions): Promise<IssuedLeaf> {
  const ca = await openCa(options.dir, options.profile, options.caKey);
  const now = options.now ?? new Date();
  const ttlMs = (options.ttlSeconds ?? YEAR_MS / 1000) * 1000;
  if (ttlMs <= 0) throw new UsageError("certificate lifetime must be positive");
  const notBefore = new Date(now.getTime() - BACKDATE_MS);
  const notAfter = new Date(Math.min(now.getTime() + ttlMs, ca.cert.notAfter.getTime()));

  const csr = options.csrDer ? await certifiableCsr(options.csrDer) : undefined;
  let key: LoadedPrivateKey | undefined;
  if (!csr) key = await generateKeyPair(options.alg ?? ca.key.keyAlgorithm);
  const org = options.org ?? ca.cert.subjectName.getField("O")[0] ?? "QSIGN";
  if (csr && (options.subject !== undefined || options.ou?.length)) {
    throw new UsageError("a CSR names its own subject: --subject and --ou do not apply with --csr");
  }
  const names = csr?.subject
    ? requestedNames(csr, options.cn)
    : options.subject !== undefined
    ? givenSubject(options.subject, options.cn)
    : undefined;
  const cn = names?.cn ?? options.cn;
  if (cn === undefined) throw new UsageError("a subject CN is required");
  const cert = await createLeafCertificate({
    ca: { cert: ca.cert, signer: ca.key },
    profile: options.profile,
    subject: names?.subject ?? distinguishedName(cn, org, options.ou),
    spki: csr ? new Uint8Array(csr.publicKey.rawData) : key!.spki,
    subjectAltNames: options.sans?.length
      ? options.sans.map(parseSubjectAltName)
      : csr?.requestedAltNames ?? defaultSans(cn).map(parseSubjectAltName),
    notBefore,
    notAfter,
  });
  const entry = await indexEntry(cert, options.profile);
  const leafDer = new Uint8Array(cert.rawData);
  const issued: IssuedLeaf = {
    certPem: pemEncode("CERTIFICATE", leafDer) + pemEncode("CERTIFICATE", ca.der),
    keyPem: key ? privateKeyPem(key) : undefined,
    key,
    serial: entry.serial,
    notBefore,
    notAfter,
    chain: [leafDer, ca.der],
  };
  await options.deliver?.(issued);
  await updateIndex(options.dir, (index) => index.certificates.push(entry));
  return issued;
}

/** An operator's `--subject`: parsed, with exactly one CN (agreeing with `cn` when given). */
function givenSubject(subject: string, expectedCn: string | undefined) {
  let name: x509.Name;
  try {
    name = new x509.Name(subject);
  } catch (e) {
    throw new UsageError(
      `--subject "${subject}" is not a distinguished name like "CN=gw.example, OU=payments, ` +
        `O=ACME" (${(e as Error).message})`,
    );
  }
  const cns = name.getField("CN");
  if (cns.length !== 1) {
    throw new UsageError(`--subject "${subject}" must hold exactly one CN, not ${cns.length}`);
  }
  if (expectedCn !== undefined && expectedCn.toLowerCase() !== cns[0].toLowerCase()) {
    throw new UsageError(`--cn ${expectedCn} disagrees with the CN of --subject "${subject}"`);
  }
  return { cn: cns[0], subject: name.toString() };
}

/**
 * The subjectAltName a CN stands for when none are given: the CN itself as an IP address (in
 * canonical text) or a DNS name, so that the CN is a copy of a SAN and host checks can pass.
 */
function defaultSans(cn: string): string[] {
  if (normalizeIp(cn) === cn) return [`IP:${cn}`];
  return dnsNameProblem(cn) ? [] : [`DNS:${cn}`];
}

const SUBJECT_ALT_NAME_OID = "2.5.29.17";

/** A parsed CSR whose self-signature verifies. */
interface CertifiableCsr {
  subject: string;
  subjectName: x509.Name;
  publicKey: x509.PublicKey;
  /** The subjectAltNames its extensionRequest asks for, if any. */
  requestedAltNames?: x509.JsonGeneralName[];
}

/** Parses a CSR and checks its self-signature. Throws `CsrError`. */
async function certifiableCsr(csrDer: Uint8Array): Promise<CertifiableCsr> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(bufferSource(csrDer));
  } catch (e) {
    throw new CsrError(`the CSR cannot be parsed (${(e as Error).message})`);
  }
  if (!(await verifySignature(csr, csr.publicKey))) {
    throw new CsrError(`the CSR's signature does not verify (subject ${csr.subject || "empty"})`);
  }
  // The verifier refuses weak keys (publicKeyProblem): never certify one.
  const keyProblem = publicKeyProblem(new Uint8Array(csr.publicKey.rawData));
  if (keyProblem) throw new CsrError(`the CSR's key cannot be certified: ${keyProblem}`);
  const extension = csr.getExtension(SUBJECT_ALT_NAME_OID);
  const sans = extension instanceof x509.SubjectAlternativeNameExtension
    ? extension.names.toJSON()
    : undefined;
  return {
    subject: csr.subject,
    subjectName: csr.subjectName,
    publicKey: csr.publicKey,
    requestedAltNames: sans?.length ? sans : undefined,
  };
}

/**
 * The subject a CSR asks for and its one CN, checked against the CN the operator expects
 * (compared without regard to case, as RFC 5280 compares names). Throws `CsrError`.
 */
function requestedNames(csr: CertifiableCsr, expectedCn: string | undefined) {
  const cns = csr.subjectName.getField("CN");
  if (cns.length !== 1) {
    throw new CsrError(
      `the CSR's subject "${csr.subject}" has ${cns.length || "no"} CN${
        cns.length > 1 ? "s" : ""
      }; qsign certifies a subject with exactly one`,
    );
  }
  const [cn] = cns;
  if (expectedCn !== undefined && expectedCn.toLowerCase() !== cn.toLowerCase()) {
    throw new CsrError(
      `the CSR asks for CN=${cn} ("${csr.subject}"), not CN=${expectedCn}: refusing to certify ` +
        "its key under another name (issue it without a CN to take the request's, or get a " +
        "request for the right name)",
    );
  }
  return { cn, subject: csr.subject };
}

/**
 * Marks a certificate revoked in the index: a leaf (listed by its intermediate's CRL) or an
 * intermediate CA (listed by the Root CA's CRL, `generateCrl({profile: "root"})`). `serial` is
 * hex (any case, colons allowed).
 */
export async function revokeCertificate(options: {
  dir: string;
  serial: string;
  reason?: RevocationReason;
  at?: Date;
}): Promise<IndexEntry> {
  const serial = normalizeSerial(options.serial);
  let revoked: IndexEntry | undefined;
  await updateIndex(options.dir, (index) => {
    const entry = index.certificates.find((e) => e.serial === serial);
    if (!entry) throw new PkiError(`serial ${serial} was not issued by the CA in ${options.dir}`);
    if (entry.status === "revoked") throw new PkiError(`serial ${serial} is already revoked`);
    entry.status = "revoked";
    entry.revokedAt = (options.at ?? new Date()).toISOString();
    entry.reason = options.reason ?? "unspecified";
    revoked = entry;
  });
  return revoked!;
}

/** The serial number of a certificate, as the index stores it. */
export function certificateSerial(der: Uint8Array): string {
  return normalizeSerial(new x509.X509Certificate(bufferSource(der)).serialNumber);
}

function normalizeSerial(serial: string): string {
  const hex = serial.replace(/[:\s]/g, "").toLowerCase().replace(/^0x/, "");
  if (!/^[0-9a-f]+$/.test(hex)) throw new UsageError(`"${serial}" is not a hex serial number`);
  return hex.replace(/^(00)+(?=[0-9a-f]{2})/, "");
}

/**
 * Issues a CRL from one CA of the directory listing every certificate it revoked: an
 * intermediate's CRL covers its leaves, the Root CA's covers the intermediates. A verifier that
 * checks revocation for the whole chain (OpenSSL's X509_V_FLAG_CRL_CHECK_ALL, which Node's `crl`
 * option turns on; `verifyChain` with `crlCheck: "chain"`) needs both.
 */
export async function generateCrl(options: {
  dir: string;
  profile: CaName;
  days?: number;
  /** How the signing CA's key is opened (the Root CA's may be offline). */
  caKey?: CaKeyOptions;
  now?: Date;
}): Promise<Uint8Array> {
  const ca = await openCa(options.dir, options.profile, options.caKey);
  const now = options.now ?? new Date();
  let crlNumber = 0;
  let revoked: IndexEntry[] = [];
  await updateIndex(options.dir, (index) => {
    crlNumber = (index.crlNumbers[options.profile] ?? 0) + 1;
    index.crlNumbers[options.profile] = crlNumber;
    revoked = index.certificates.filter((e) =>
      e.issuer === options.profile && e.status === "revoked"
    );
  });
  const crl = await createCrl({
    issuer: ca.cert,
    signer: ca.key,
    thisUpdate: new Date(now.getTime() - BACKDATE_MS),
    nextUpdate: new Date(now.getTime() + (options.days ?? 7) * 24 * 3600 * 1000),
    crlNumber,
    entries: revoked.map((e) => ({
      serial: e.serial,
      revokedAt: new Date(e.revokedAt!),
      reason: x509.X509CrlReason[e.reason ?? "unspecified"],
    })),
  });
  return new Uint8Array(crl.rawData);
}

async function indexEntry(
  cert: x509.X509Certificate,
  issuer: IndexEntry["issuer"],
): Promise<IndexEntry> {
  return {
    serial: normalizeSerial(cert.serialNumber),
    issuer,
    subject: cert.subject,
    notBefore: cert.notBefore.toISOString(),
    notAfter: cert.notAfter.toISOString(),
    sha256: toHex(new Uint8Array(await cert.getThumbprint("SHA-256"))),
    status: "valid",
  };
}

/** Reads the CA index of a PKI directory. */
export async function readIndex(dir: string): Promise<CaIndex> {
  const path = join(dir, PKI_FILES.index);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new PkiError(`${path}: no CA index (is ${dir} a PKI made by qsign pki init?)`);
    }
    throw e;
  }
  try {
    const index = JSON.parse(text) as CaIndex;
    if (index.version !== 1 || !Array.isArray(index.certificates)) {
      throw new Error("unknown layout");
    }
    index.crlNumbers ??= {};
    return index;
  } catch (e) {
    throw new PkiError(`${path}: not a qsign CA index (${(e as Error).message})`);
  }
}

async function writeIndex(dir: string, index: CaIndex): Promise<void> {
  await writeFileAtomic(join(dir, PKI_FILES.index), JSON.stringify(index, null, 2) + "\n");
}

/** Read-modify-write of the index under an exclusive lock file. */
async function updateIndex(dir: string, change: (index: CaIndex) => void): Promise<void> {
  const lock = join(dir, ".index.lock");
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      (await Deno.open(lock, { write: true, createNew: true })).close();
      break;
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
      if (Date.now() > deadline) {
        throw new PkiError(
          `${lock} is held by another qsign; remove it if no qsign pki is running`,
        );
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  try {
    const index = await readIndex(dir);
    change(index);
    await writeIndex(dir, index);
  } finally {
    await Deno.remove(lock).catch(() => {});
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}
