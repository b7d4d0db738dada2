/**
 * The private-key file formats people have, turned into PKCS#8 PrivateKeyInfo DER:
 *
 * - `PRIVATE KEY` (PKCS#8, RFC 5958) as is;
 * - `EC PRIVATE KEY` (SEC1, RFC 5915; `openssl ecparam -genkey`), with or without the
 *   `EC PARAMETERS` block before it;
 * - `RSA PRIVATE KEY` (PKCS#1, RFC 8017; `openssl genrsa -traditional`, older tools);
 * - `ENCRYPTED PRIVATE KEY` (PKCS#8 EncryptedPrivateKeyInfo with PBES2, RFC 8018: PBKDF2 or
 *   scrypt, AES-CBC), the form `openssl genpkey -aes-256-cbc` and `openssl pkcs8 -topk8` write;
 * - PKCS#12 bundles (RFC 7292: `.p12`/`.pfx`, `openssl pkcs12 -export`), which also carry the
 *   certificate chain.
 *
 * The ASN.1 is parsed and written with the @peculiar/asn1-* schemas; the few structures they do
 * not define (PBES2, PBKDF2, scrypt parameters, CMS EncryptedData) are declared here with the
 * same schema library. Every refusal names the file, the block found and the `openssl` command
 * that converts it into something qsign reads.
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import {
  AsnConvert,
  AsnProp,
  AsnPropTypes,
  AsnType,
  AsnTypeTypes,
  OctetString,
} from "@peculiar/asn1-schema";
import { AlgorithmIdentifier } from "@peculiar/asn1-x509";
import { EncryptedPrivateKeyInfo, PrivateKeyInfo } from "@peculiar/asn1-pkcs8";
import { ECPrivateKey } from "@peculiar/asn1-ecc";
import { RSAPrivateKey } from "@peculiar/asn1-rsa";
import { EncryptedContentInfo } from "@peculiar/asn1-cms";
import {
  AuthenticatedSafe,
  CertBag,
  PFX,
  PKCS8ShroudedKeyBag,
  SafeContents,
} from "@peculiar/asn1-pfx";
import { hmac } from "@noble/hashes/hmac.js";
import type { CHash } from "@noble/hashes/utils.js";
import { sha1 } from "@noble/hashes/legacy.js";
import { sha224, sha256, sha384, sha512 } from "@noble/hashes/sha2.js";
import { scryptAsync } from "@noble/hashes/scrypt.js";
import { Buffer } from "node:buffer";
import { createDecipheriv } from "node:crypto";
import { InputError } from "../errors.ts";
import { bufferSource } from "./der.ts";
import { readCertificatesFile, readInputFile } from "./pem.ts";

/** Raised for a key file that cannot be used. */
export class KeyFileError extends InputError {}

/** How a key file's passphrase is found: asked for only when the file is encrypted. */
export type PassphraseSource = () => Promise<string>;

/** What a key file held. */
export interface DecodedKeyFile {
  /** The private key as PKCS#8 PrivateKeyInfo DER. */
  pkcs8: Uint8Array;
  /** The format it came in, for messages: `PKCS#8`, `SEC1`, `PKCS#1`, `encrypted PKCS#8`, `PKCS#12`. */
  format: string;
  /** A PKCS#12 bundle's certificates, leaf first; empty for the other formats. */
  certificates: Uint8Array[];
}

// --- Schemas the @peculiar packages do not carry (RFC 8018, RFC 7914, RFC 5652) ---

function sequence<T extends new () => object>(type: T, props: Record<string, object>): T {
  for (const [name, options] of Object.entries(props)) {
    AsnProp(options as Parameters<typeof AsnProp>[0])(type.prototype, name);
  }
  AsnType({ type: AsnTypeTypes.Sequence })(type);
  return type;
}

/** PBES2-params (RFC 8018 A.4). */
class Pbes2Params {
  keyDerivationFunc = new AlgorithmIdentifier();
  encryptionScheme = new AlgorithmIdentifier();
}
sequence(Pbes2Params, {
  keyDerivationFunc: { type: AlgorithmIdentifier },
  encryptionScheme: { type: AlgorithmIdentifier },
});

/** PBKDF2-params (RFC 8018 A.2), with the salt given (the `otherSource` choice is unused). */
class Pbkdf2Params {
  salt = new OctetString();
  iterationCount = 0;
  keyLength?: number;
  prf?: AlgorithmIdentifier;
}
sequence(Pbkdf2Params, {
  salt: { type: OctetString },
  iterationCount: { type: AsnPropTypes.Integer },
  keyLength: { type: AsnPropTypes.Integer, optional: true },
  prf: { type: AlgorithmIdentifier, optional: true },
});

/** scrypt-params (RFC 7914 section 7.1). */
class ScryptParams {
  salt = new OctetString();
  costParameter = 0;
  blockSize = 0;
  parallelizationParameter = 0;
  keyLength?: number;
}
sequence(ScryptParams, {
  salt: { type: OctetString },
  costParameter: { type: AsnPropTypes.Integer },
  blockSize: { type: AsnPropTypes.Integer },
  parallelizationParameter: { type: AsnPropTypes.Integer },
  keyLength: { type: AsnPropTypes.Integer, optional: true },
});

/** CMS EncryptedData (RFC 5652 section 8), as PKCS#12 uses it for its certificate bags. */
class EncryptedData {
  version = 0;
  encryptedContentInfo = new EncryptedContentInfo();
}
sequence(EncryptedData, {
  version: { type: AsnPropTypes.Integer },
  encryptedContentInfo: { type: EncryptedContentInfo },
});

// --- Object identifiers ---

const OID = {
  pbes2: "1.2.840.113549.1.5.13",
  pbkdf2: "1.2.840.113549.1.5.12",
  scrypt: "1.3.6.1.4.1.11591.4.11",
  aes128Cbc: "2.16.840.1.101.3.4.1.2",
  aes192Cbc: "2.16.840.1.101.3.4.1.22",
  aes256Cbc: "2.16.840.1.101.3.4.1.42",
  desEde3Cbc: "1.2.840.113549.3.7",
  hmacWithSha256: "1.2.840.113549.2.9",
  ecPublicKey: "1.2.840.10045.2.1",
  rsaEncryption: "1.2.840.113549.1.1.1",
  data: "1.2.840.113549.1.7.1",
  encryptedData: "1.2.840.113549.1.7.6",
  keyBag: "1.2.840.113549.1.12.10.1.1",
  pkcs8ShroudedKeyBag: "1.2.840.113549.1.12.10.1.2",
  certBag: "1.2.840.113549.1.12.10.1.3",
  x509Certificate: "1.2.840.113549.1.9.22.1",
  localKeyId: "1.2.840.113549.1.9.21",
} as const;

/** PBES2 ciphers read, by OID: key length. */
const CBC_CIPHERS: Record<string, { keyBytes: number; name: string }> = {
  [OID.aes128Cbc]: { keyBytes: 16, name: "AES-CBC" },
  [OID.aes192Cbc]: { keyBytes: 24, name: "AES-CBC" },
  [OID.aes256Cbc]: { keyBytes: 32, name: "AES-CBC" },
  // Read (never written): what `openssl req -newkey` in OpenSSL 3.0 still encrypts keys with.
  [OID.desEde3Cbc]: { keyBytes: 24, name: "des-ede3-cbc" },
};

/** PBKDF2 PRFs (RFC 8018 B.1.2) and the hashes of PKCS#12 MACs, by OID. */
const HASHES: Record<string, { webCrypto: string; noble: CHash; block: number }> = {
  "1.2.840.113549.2.7": { webCrypto: "SHA-1", noble: sha1, block: 64 },
  "1.2.840.113549.2.8": { webCrypto: "SHA-224", noble: sha224, block: 64 },
  [OID.hmacWithSha256]: { webCrypto: "SHA-256", noble: sha256, block: 64 },
  "1.2.840.113549.2.10": { webCrypto: "SHA-384", noble: sha384, block: 128 },
  "1.2.840.113549.2.11": { webCrypto: "SHA-512", noble: sha512, block: 128 },
};
/** The digest OIDs of a PKCS#12 MacData DigestInfo. */
const DIGESTS: Record<string, string> = {
  "1.3.14.3.2.26": "1.2.840.113549.2.7",
  "2.16.840.1.101.3.4.2.4": "1.2.840.113549.2.8",
  "2.16.840.1.101.3.4.2.1": OID.hmacWithSha256,
  "2.16.840.1.101.3.4.2.2": "1.2.840.113549.2.10",
  "2.16.840.1.101.3.4.2.3": "1.2.840.113549.2.11",
};

/**
 * What qsign writes: PBKDF2-HMAC-SHA256 with 600 000 iterations (OWASP's 2023 figure for this
 * PRF) and a 16-byte salt, AES-256-CBC. PBKDF2 rather than scrypt: it is the FIPS 140-3
 * approved password KDF (SP 800-132), runs natively in WebCrypto off the event loop, and
 * OpenSSL reads it (`openssl pkcs8 -in ca.key` asks for the passphrase).
 */
export const PBKDF2_ITERATIONS = 600_000;

/** Work bounds on a file's KDF parameters: a damaged or hostile file must not hang qsign. */
const MAX_PBKDF2_ITERATIONS = 10_000_000;
const MAX_SCRYPT_MEMORY = 256 * 1024 * 1024;

const CONVERT_TO_PKCS8 = "openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8";
const CONVERT_TO_PBES2 =
  "openssl pkcs8 -topk8 -v2 aes-256-cbc -v2prf hmacWithSHA256 -in KEY -out KEY.pk8";

// --- Reading ---

/**
 * Decodes a key file's bytes (PEM text or DER) into PKCS#8. `source` names the file in errors;
 * `passphrase` is called only for an encrypted key or a PKCS#12 bundle.
 */
export async function decodeKeyFile(
  bytes: Uint8Array,
  source: string,
  passphrase?: PassphraseSource,
): Promise<DecodedKeyFile> {
  if (bytes[0] === 0x30) return await decodeDer(bytes, source, passphrase);
  const text = new TextDecoder().decode(bytes);
  let blocks: { type: string; der: Uint8Array; headers: string[] }[];
  try {
    blocks = text.includes("-----BEGIN ") ? pemBlocks(text) : [];
  } catch (e) {
    throw new KeyFileError(source, `not valid PEM (${(e as Error).message})`, { cause: e });
  }
  for (const block of blocks) {
    switch (block.type) {
      case "PRIVATE KEY":
        return { pkcs8: checkedPkcs8(block.der, source), format: "PKCS#8", certificates: [] };
      case "ENCRYPTED PRIVATE KEY":
        return {
          pkcs8: await decryptPrivateKeyInfo(block.der, source, passphrase),
          format: "encrypted PKCS#8",
          certificates: [],
        };
      case "EC PRIVATE KEY":
      case "RSA PRIVATE KEY":
        if (block.headers.some((h) => /^Proc-Type:\s*4,\s*ENCRYPTED/i.test(h))) {
          throw new KeyFileError(
            source,
            `holds a "${block.type}" block with OpenSSL's legacy PEM encryption (DEK-Info), ` +
              `which qsign does not read; convert it to PKCS#8 with PBES2: ${CONVERT_TO_PBES2}`,
          );
        }
        return block.type === "EC PRIVATE KEY"
          ? { pkcs8: sec1ToPkcs8(block.der, source), format: "SEC1", certificates: [] }
          : { pkcs8: pkcs1ToPkcs8(block.der, source), format: "PKCS#1", certificates: [] };
    }
  }
  const found = blocks.filter((b) => b.type !== "EC PARAMETERS").map((b) => `"${b.type}"`);
  throw new KeyFileError(
    source,
    found.length
      ? `holds ${found.join(", ")} but no private key qsign reads (PRIVATE KEY, ENCRYPTED ` +
        `PRIVATE KEY, EC PRIVATE KEY, RSA PRIVATE KEY, or a PKCS#12 file)${
          found.includes('"OPENSSH PRIVATE KEY"')
            ? `; convert an OpenSSH key with: ssh-keygen -p -m PKCS8 -f KEY`
            : `; convert a key OpenSSL reads with: ${CONVERT_TO_PKCS8}`
        }`
      : "no PRIVATE KEY found (PEM with a PRIVATE KEY block, DER PKCS#8, or PKCS#12 expected)",
  );
}

/** The PEM blocks with their RFC 1421 headers (Proc-Type/DEK-Info mark legacy encryption). */
function pemBlocks(text: string): { type: string; der: Uint8Array; headers: string[] }[] {
  return x509.PemConverter.decodeWithHeaders(text).map((block) => ({
    type: block.type,
    der: new Uint8Array(block.rawData),
    headers: block.headers.map((h) => `${h.key}: ${h.value}`),
  }));
}

/** DER: PKCS#8, EncryptedPrivateKeyInfo, or a PKCS#12 PFX, told apart by their schemas. */
async function decodeDer(
  der: Uint8Array,
  source: string,
  passphrase?: PassphraseSource,
): Promise<DecodedKeyFile> {
  const pfx = tryParse(der, PFX);
  if (pfx && pfx.authSafe.contentType) {
    return { ...await decodePkcs12(pfx, der, source, passphrase), format: "PKCS#12" };
  }
  const encrypted = tryParse(der, EncryptedPrivateKeyInfo);
  if (encrypted && encrypted.encryptionAlgorithm.algorithm) {
    return {
      pkcs8: await decryptPrivateKeyInfo(der, source, passphrase),
      format: "encrypted PKCS#8",
      certificates: [],
    };
  }
  return { pkcs8: checkedPkcs8(der, source), format: "PKCS#8", certificates: [] };
}

function tryParse<T>(der: Uint8Array, type: new () => T): T | undefined {
  try {
    return AsnConvert.parse(bufferSource(der), type);
  } catch {
    return undefined;
  }
}

function checkedPkcs8(der: Uint8Array, source: string): Uint8Array {
  if (!tryParse(der, PrivateKeyInfo)) {
    throw new KeyFileError(source, "not a PKCS#8 private key (PrivateKeyInfo cannot be parsed)");
  }
  return der;
}

/** SEC1 ECPrivateKey → PKCS#8 with id-ecPublicKey and the key's named curve (RFC 5915 §3). */
function sec1ToPkcs8(der: Uint8Array, source: string): Uint8Array {
  const key = tryParse(der, ECPrivateKey);
  const curve = key?.parameters?.namedCurve;
  if (!key || !curve) {
    throw new KeyFileError(
      source,
      key
        ? "the EC PRIVATE KEY names no curve (explicit parameters are not supported); " +
          `convert it with: openssl pkey -in KEY -out KEY.pk8 (after openssl ec -param_enc named_curve)`
        : "the EC PRIVATE KEY block is not a SEC1 ECPrivateKey",
    );
  }
  return new Uint8Array(AsnConvert.serialize(
    new PrivateKeyInfo({
      privateKeyAlgorithm: new AlgorithmIdentifier({
        algorithm: OID.ecPublicKey,
        parameters: AsnConvert.serialize(key.parameters),
      }),
      privateKey: new OctetString(bufferSource(der)),
    }),
  ));
}

/** PKCS#1 RSAPrivateKey → PKCS#8 with rsaEncryption (RFC 8017 A.1.2). */
function pkcs1ToPkcs8(der: Uint8Array, source: string): Uint8Array {
  if (!tryParse(der, RSAPrivateKey)) {
    throw new KeyFileError(source, "the RSA PRIVATE KEY block is not a PKCS#1 RSAPrivateKey");
  }
  return new Uint8Array(AsnConvert.serialize(
    new PrivateKeyInfo({
      privateKeyAlgorithm: new AlgorithmIdentifier({
        algorithm: OID.rsaEncryption,
        parameters: null,
      }),
      privateKey: new OctetString(bufferSource(der)),
    }),
  ));
}

async function requirePassphrase(
  source: string,
  passphrase: PassphraseSource | undefined,
  what: string,
): Promise<string> {
  if (!passphrase) throw new KeyFileError(source, `is ${what} and no passphrase was given`);
  try {
    return await passphrase();
  } catch (e) {
    if (e instanceof MissingPassphrase) throw new KeyFileError(source, `is ${what}: ${e.message}`);
    throw e;
  }
}

class MissingPassphrase extends Error {}

/**
 * The passphrase source for when none was configured: an encrypted file is then refused,
 * naming the file and `whatToDo` (e.g. "give --passphrase REF or set QSIGN_CA_PASSPHRASE").
 */
export function noPassphrase(whatToDo: string): PassphraseSource {
  return () => Promise.reject(new MissingPassphrase(whatToDo));
}

/** Decrypts an EncryptedPrivateKeyInfo (PBES2) to PKCS#8 DER. */
export async function decryptPrivateKeyInfo(
  der: Uint8Array,
  source: string,
  passphrase: PassphraseSource | undefined,
): Promise<Uint8Array> {
  const info = tryParse(der, EncryptedPrivateKeyInfo);
  if (!info) throw new KeyFileError(source, "not a PKCS#8 EncryptedPrivateKeyInfo");
  const password = await requirePassphrase(source, passphrase, "an encrypted private key");
  const plain = await pbes2Decrypt(
    info.encryptionAlgorithm,
    new Uint8Array(info.encryptedData.buffer),
    new TextEncoder().encode(password),
    source,
  );
  return checkedPkcs8(plain, source);
}

/** PBES2 decryption (RFC 8018 6.2.2) with PBKDF2 or scrypt and AES-CBC. */
async function pbes2Decrypt(
  algorithm: AlgorithmIdentifier,
  ciphertext: Uint8Array,
  password: Uint8Array,
  source: string,
): Promise<Uint8Array> {
  if (algorithm.algorithm !== OID.pbes2 || !algorithm.parameters) {
    throw new KeyFileError(
      source,
      `is encrypted with ${algorithm.algorithm}, an old scheme (PBES1 or PKCS#12 PBE) qsign ` +
        `does not read; re-encrypt it with PBES2: ${CONVERT_TO_PBES2}`,
    );
  }
  const params = AsnConvert.parse(algorithm.parameters, Pbes2Params);
  const scheme = params.encryptionScheme;
  const cipher = CBC_CIPHERS[scheme.algorithm];
  if (!cipher || !scheme.parameters) {
    throw new KeyFileError(
      source,
      `is encrypted with cipher ${scheme.algorithm}; qsign reads AES-128/192/256-CBC and ` +
        `3DES-CBC: ${CONVERT_TO_PBES2}`,
    );
  }
  const iv = new Uint8Array(AsnConvert.parse(scheme.parameters, OctetString).buffer);
  const key = await deriveKey(params.keyDerivationFunc, password, cipher.keyBytes, source);
  try {
    if (cipher.name !== "AES-CBC") {
      // WebCrypto has no 3DES; Node's crypto module (in Deno's Node layer) has.
      const decipher = createDecipheriv(cipher.name, key, iv);
      return new Uint8Array(Buffer.concat([decipher.update(ciphertext), decipher.final()]));
    }
    const aes = await crypto.subtle.importKey("raw", bufferSource(key), "AES-CBC", false, [
      "decrypt",
    ]);
    return new Uint8Array(
      await crypto.subtle.decrypt(
        { name: "AES-CBC", iv: bufferSource(iv) },
        aes,
        bufferSource(ciphertext),
      ),
    );
  } catch {
    // A wrong passphrase shows as bad padding (or, rarely, as garbage that is no PKCS#8).
    throw new KeyFileError(source, "cannot decrypt: wrong passphrase, or a damaged file");
  }
}

async function deriveKey(
  kdf: AlgorithmIdentifier,
  password: Uint8Array,
  length: number,
  source: string,
): Promise<Uint8Array> {
  if (kdf.algorithm === OID.pbkdf2 && kdf.parameters) {
    const p = AsnConvert.parse(kdf.parameters, Pbkdf2Params);
    const hash = HASHES[p.prf?.algorithm ?? "1.2.840.113549.2.7"];
    if (!hash) throw new KeyFileError(source, `unsupported PBKDF2 PRF ${p.prf?.algorithm}`);
    if (p.iterationCount < 1 || p.iterationCount > MAX_PBKDF2_ITERATIONS) {
      throw new KeyFileError(
        source,
        `PBKDF2 iteration count ${p.iterationCount} is outside 1..${MAX_PBKDF2_ITERATIONS}`,
      );
    }
    return await pbkdf2(
      password,
      new Uint8Array(p.salt.buffer),
      p.iterationCount,
      hash.webCrypto,
      length,
    );
  }
  if (kdf.algorithm === OID.scrypt && kdf.parameters) {
    const p = AsnConvert.parse(kdf.parameters, ScryptParams);
    const memory = 128 * p.blockSize * p.costParameter;
    if (memory > MAX_SCRYPT_MEMORY || p.parallelizationParameter > 16) {
      throw new KeyFileError(
        source,
        `scrypt parameters N=${p.costParameter} r=${p.blockSize} p=${p.parallelizationParameter} ` +
          `need more than ${MAX_SCRYPT_MEMORY >> 20} MiB or p > 16`,
      );
    }
    try {
      return await scryptAsync(password, new Uint8Array(p.salt.buffer), {
        N: p.costParameter,
        r: p.blockSize,
        p: p.parallelizationParameter,
        dkLen: length,
        maxmem: MAX_SCRYPT_MEMORY + 1024 * p.blockSize,
      });
    } catch (e) {
      throw new KeyFileError(source, `bad scrypt parameters (${(e as Error).message})`);
    }
  }
  throw new KeyFileError(
    source,
    `unsupported key derivation ${kdf.algorithm} (PBKDF2 or scrypt expected): ${CONVERT_TO_PBES2}`,
  );
}

async function pbkdf2(
  password: Uint8Array,
  salt: Uint8Array,
  iterations: number,
  hash: string,
  length: number,
): Promise<Uint8Array> {
  const base = await crypto.subtle.importKey("raw", bufferSource(password), "PBKDF2", false, [
    "deriveBits",
  ]);
  return new Uint8Array(
    await crypto.subtle.deriveBits(
      { name: "PBKDF2", salt: bufferSource(salt), iterations, hash },
      base,
      length * 8,
    ),
  );
}

// --- PKCS#12 ---

async function decodePkcs12(
  pfx: PFX,
  der: Uint8Array,
  source: string,
  passphrase?: PassphraseSource,
): Promise<Omit<DecodedKeyFile, "format">> {
  if (pfx.authSafe.contentType !== OID.data) {
    throw new KeyFileError(
      source,
      "is a public-key-signed PKCS#12 (not password-integrity); export it again with: " +
        "openssl pkcs12 -export -inkey KEY -in CERTS -out BUNDLE.p12",
    );
  }
  const password = await requirePassphrase(source, passphrase, "a PKCS#12 bundle");
  const content = new Uint8Array(AsnConvert.parse(pfx.authSafe.content, OctetString).buffer);
  if (pfx.macData) await checkPkcs12Mac(pfx, content, password, source);
  void der;
  const safe = AsnConvert.parse(bufferSource(content), AuthenticatedSafe);
  const utf8 = new TextEncoder().encode(password);
  const keys: { pkcs8: Uint8Array; localKeyId?: string }[] = [];
  const certs: { der: Uint8Array; localKeyId?: string }[] = [];
  for (const info of safe) {
    let bagsDer: Uint8Array;
    if (info.contentType === OID.data) {
      bagsDer = new Uint8Array(AsnConvert.parse(info.content, OctetString).buffer);
    } else if (info.contentType === OID.encryptedData) {
      const encrypted = AsnConvert.parse(info.content, EncryptedData).encryptedContentInfo;
      const value = encrypted.encryptedContent?.value ??
        concatOctetStrings(encrypted.encryptedContent?.constructedValue ?? []);
      bagsDer = await pbes2Decrypt(
        encrypted.contentEncryptionAlgorithm as unknown as AlgorithmIdentifier,
        new Uint8Array(value.buffer),
        utf8,
        source,
      ).catch((e) => {
        throw legacyPkcs12(e, source);
      });
    } else continue;
    for (const bag of AsnConvert.parse(bufferSource(bagsDer), SafeContents)) {
      const localKeyId = bag.bagAttributes?.find((a) => a.attrId === OID.localKeyId)?.attrValues[0];
      const id = localKeyId ? hex(new Uint8Array(localKeyId)) : undefined;
      if (bag.bagId === OID.pkcs8ShroudedKeyBag) {
        const shrouded = AsnConvert.parse(bag.bagValue, PKCS8ShroudedKeyBag);
        const plain = await pbes2Decrypt(
          shrouded.encryptionAlgorithm,
          new Uint8Array(shrouded.encryptedData.buffer),
          utf8,
          source,
        ).catch((e) => {
          throw legacyPkcs12(e, source);
        });
        keys.push({ pkcs8: checkedPkcs8(plain, source), localKeyId: id });
      } else if (bag.bagId === OID.keyBag) {
        keys.push({ pkcs8: checkedPkcs8(new Uint8Array(bag.bagValue), source), localKeyId: id });
      } else if (bag.bagId === OID.certBag) {
        const cert = AsnConvert.parse(bag.bagValue, CertBag);
        if (cert.certId !== OID.x509Certificate) continue;
        certs.push({
          der: new Uint8Array(AsnConvert.parse(cert.certValue, OctetString).buffer),
          localKeyId: id,
        });
      }
    }
  }
  if (keys.length !== 1) {
    throw new KeyFileError(
      source,
      `PKCS#12 bundle holds ${keys.length} private keys; qsign needs exactly one`,
    );
  }
  const [key] = keys;
  const leaf = certs.find((c) => key.localKeyId && c.localKeyId === key.localKeyId);
  return {
    pkcs8: key.pkcs8,
    certificates: orderChain(certs.map((c) => c.der), leaf?.der),
  };
}

function legacyPkcs12(e: unknown, source: string): unknown {
  if (!(e instanceof KeyFileError) || !/old scheme|cipher/.test(e.message)) return e;
  return new KeyFileError(
    source,
    "is a legacy PKCS#12 (RC2/3DES, as openssl pkcs12 -legacy and older tools write it); " +
      "re-export it with AES: openssl pkcs12 -legacy -in OLD.p12 -nodes -out tmp.pem && " +
      "openssl pkcs12 -export -in tmp.pem -out NEW.p12 && shred -u tmp.pem",
  );
}

function concatOctetStrings(parts: OctetString[]): OctetString {
  const total = parts.reduce((n, p) => n + p.byteLength, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(new Uint8Array(p.buffer), at);
    at += p.byteLength;
  }
  return new OctetString(out.buffer);
}

/** The MAC of a password-integrity PFX (RFC 7292 section 5 and appendix B). */
async function checkPkcs12Mac(pfx: PFX, content: Uint8Array, password: string, source: string) {
  const mac = pfx.macData!;
  const prf = DIGESTS[mac.mac.digestAlgorithm.algorithm];
  const hash = prf ? HASHES[prf] : undefined;
  if (!hash) {
    throw new KeyFileError(
      source,
      `PKCS#12 MAC algorithm ${mac.mac.digestAlgorithm.algorithm} is not supported; export it ` +
        "again with: openssl pkcs12 -export -macalg sha256 …",
    );
  }
  if (mac.iterations < 1 || mac.iterations > MAX_PBKDF2_ITERATIONS) {
    throw new KeyFileError(source, `PKCS#12 MAC iteration count ${mac.iterations} out of range`);
  }
  const key = pkcs12Kdf(
    hash,
    3,
    bmpPassword(password),
    new Uint8Array(mac.macSalt.buffer),
    mac.iterations,
    hash.noble.outputLen,
  );
  const expected = hmac(hash.noble, key, content);
  const actual = new Uint8Array(mac.mac.digest.buffer);
  if (!constantTimeEqual(expected, actual)) {
    throw new KeyFileError(
      source,
      "PKCS#12 MAC does not verify: wrong passphrase, or a damaged file",
    );
  }
  await Promise.resolve();
}

/** The password as PKCS#12's KDF takes it: BMPString (UTF-16BE) with a terminating zero. */
function bmpPassword(password: string): Uint8Array {
  const out = new Uint8Array((password.length + 1) * 2);
  for (let i = 0; i < password.length; i++) {
    out[2 * i] = password.charCodeAt(i) >> 8;
    out[2 * i + 1] = password.charCodeAt(i) & 0xff;
  }
  return out;
}

/** The PKCS#12 key derivation (RFC 7292 appendix B.2), used for the integrity MAC (ID 3). */
function pkcs12Kdf(
  hash: { noble: CHash; block: number },
  id: number,
  password: Uint8Array,
  salt: Uint8Array,
  iterations: number,
  length: number,
): Uint8Array {
  const v = hash.block;
  const repeatTo = (data: Uint8Array) => {
    const out = new Uint8Array(v * Math.ceil(data.length / v));
    for (let i = 0; i < out.length; i++) out[i] = data[i % data.length];
    return out;
  };
  const input = new Uint8Array([...repeatTo(salt), ...(password.length ? repeatTo(password) : [])]);
  const diversifier = new Uint8Array(v).fill(id);
  const out = new Uint8Array(length);
  for (let done = 0; done < length;) {
    let a = hash.noble(new Uint8Array([...diversifier, ...input]));
    for (let i = 1; i < iterations; i++) a = hash.noble(a);
    out.set(a.subarray(0, Math.min(a.length, length - done)), done);
    done += a.length;
    if (done >= length) break;
    const b = repeatTo(a).subarray(0, v);
    for (let j = 0; j < input.length; j += v) {
      let carry = 1;
      for (let k = v - 1; k >= 0; k--) {
        const sum = input[j + k] + b[k] + carry;
        input[j + k] = sum & 0xff;
        carry = sum >> 8;
      }
    }
  }
  return out;
}

function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/**
 * Certificates leaf first, each followed by its issuer: the leaf is the one tied to the key by
 * localKeyId, else the one that issued none of the others.
 */
function orderChain(certs: Uint8Array[], leaf: Uint8Array | undefined): Uint8Array[] {
  if (certs.length < 2) return certs;
  const names = certs.map((der) => certificateNames(der));
  let current = leaf
    ? certs.indexOf(leaf)
    : names.findIndex((n, i) =>
      !names.some((other, j) =>
        j !== i && other.issuer === n.subject && other.subject !== n.subject
      )
    );
  if (current < 0) return certs;
  const ordered: number[] = [];
  while (current >= 0 && !ordered.includes(current)) {
    ordered.push(current);
    const { issuer, subject } = names[current];
    current = issuer === subject ? -1 : names.findIndex((n) => n.subject === issuer);
  }
  return [...ordered, ...certs.keys().filter((i) => !ordered.includes(i))].map((i) => certs[i]);
}

function certificateNames(der: Uint8Array): { subject: string; issuer: string } {
  // Names compared as DER: the same encoding within one bundle made by one tool.
  const seq = tryParse(der, CertificateNames);
  return seq
    ? { subject: hex(new Uint8Array(seq.tbs.subject)), issuer: hex(new Uint8Array(seq.tbs.issuer)) }
    : { subject: hex(der), issuer: "" };
}

/** Just enough of a Certificate to compare issuer and subject names. */
class TbsNames {
  version?: ArrayBuffer;
  serialNumber = new ArrayBuffer(0);
  signature = new AlgorithmIdentifier();
  issuer = new ArrayBuffer(0);
  validity = new ArrayBuffer(0);
  subject = new ArrayBuffer(0);
}
sequence(TbsNames, {
  version: { type: AsnPropTypes.Any, context: 0, optional: true },
  serialNumber: { type: AsnPropTypes.Any },
  signature: { type: AlgorithmIdentifier },
  issuer: { type: AsnPropTypes.Any },
  validity: { type: AsnPropTypes.Any },
  subject: { type: AsnPropTypes.Any },
});
class CertificateNames {
  tbs = new TbsNames();
}
sequence(CertificateNames, { tbs: { type: TbsNames } });

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// --- Writing ---

/**
 * Encrypts PKCS#8 DER as an EncryptedPrivateKeyInfo: PBES2, PBKDF2-HMAC-SHA256
 * (`PBKDF2_ITERATIONS`, 16-byte random salt), AES-256-CBC with a random IV.
 */
export async function encryptPrivateKeyInfo(
  pkcs8: Uint8Array,
  passphrase: string,
  iterations = PBKDF2_ITERATIONS,
): Promise<Uint8Array> {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const iv = crypto.getRandomValues(new Uint8Array(16));
  const key = await pbkdf2(new TextEncoder().encode(passphrase), salt, iterations, "SHA-256", 32);
  const aes = await crypto.subtle.importKey("raw", bufferSource(key), "AES-CBC", false, [
    "encrypt",
  ]);
  const ciphertext = await crypto.subtle.encrypt(
    { name: "AES-CBC", iv: bufferSource(iv) },
    aes,
    bufferSource(pkcs8),
  );
  const kdf = new Pbkdf2Params();
  kdf.salt = new OctetString(bufferSource(salt));
  kdf.iterationCount = iterations;
  kdf.prf = new AlgorithmIdentifier({ algorithm: OID.hmacWithSha256, parameters: null });
  const params = new Pbes2Params();
  params.keyDerivationFunc = new AlgorithmIdentifier({
    algorithm: OID.pbkdf2,
    parameters: AsnConvert.serialize(kdf),
  });
  params.encryptionScheme = new AlgorithmIdentifier({
    algorithm: OID.aes256Cbc,
    parameters: AsnConvert.serialize(new OctetString(bufferSource(iv))),
  });
  return new Uint8Array(AsnConvert.serialize(
    new EncryptedPrivateKeyInfo({
      encryptionAlgorithm: new AlgorithmIdentifier({
        algorithm: OID.pbes2,
        parameters: AsnConvert.serialize(params),
      }),
      encryptedData: new OctetString(ciphertext),
    }),
  ));
}

/** True when the key file's bytes are an encrypted key or a PKCS#12 bundle (needs a passphrase). */
export function needsPassphrase(bytes: Uint8Array): boolean {
  if (bytes[0] === 0x30) {
    return Boolean(tryParse(bytes, PFX)?.authSafe.contentType) ||
      Boolean(tryParse(bytes, EncryptedPrivateKeyInfo)?.encryptionAlgorithm.algorithm);
  }
  return new TextDecoder().decode(bytes).includes("-----BEGIN ENCRYPTED PRIVATE KEY-----");
}

/** Reads and decodes a key file (see `decodeKeyFile`). Throws `InputError` naming the file. */
export async function readKeyFile(
  path: string,
  passphrase?: PassphraseSource,
): Promise<DecodedKeyFile> {
  return await decodeKeyFile(await readInputFile(path), path, passphrase);
}

/**
 * The certificate chain in a file: PEM or DER certificates, or a PKCS#12 bundle's (leaf first;
 * `passphrase` opens it). Throws `InputError` naming the file.
 */
export async function readCertificateChainFile(
  path: string,
  passphrase?: PassphraseSource,
): Promise<Uint8Array[]> {
  const bytes = await readInputFile(path);
  const pfx = bytes[0] === 0x30 ? tryParse(bytes, PFX) : undefined;
  if (!pfx?.authSafe.contentType) return await readCertificatesFile(path);
  const { certificates } = await decodeKeyFile(bytes, path, passphrase);
  if (certificates.length === 0) {
    throw new KeyFileError(path, "PKCS#12 bundle holds no certificate");
  }
  return certificates;
}
