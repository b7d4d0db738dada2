/**
 * Key objects in a token: finding the signing key by label or CKA_ID, describing it (type and
 * the attributes that prove it cannot leave the token), generating key pairs that never leave
 * it, and turning the public half into a SubjectPublicKeyInfo for CSRs and certificate checks.
 */
import { Buffer } from "node:buffer";
import {
  CKA_PARAMETER_SET,
  CKK_ML_DSA,
  CKM_ML_DSA_KEY_PAIR_GEN,
  CKP_ML_DSA_44,
  CKP_ML_DSA_65,
  CKP_ML_DSA_87,
  type Handle,
  HsmError,
  type Pkcs11Module,
  type TokenLocation,
} from "./module.ts";

/** The key types qsign signs with. */
export type KeyKind = "ec-p256" | "ec-p384" | "rsa" | "mldsa44" | "mldsa65" | "mldsa87";

/** The key pairs `qsign hsm keygen` makes. */
export const KEYGEN_TYPES = ["ec-p256", "ec-p384", "rsa-3072", "mldsa65"] as const;
export type KeygenType = typeof KEYGEN_TYPES[number];

/** A private key by CKA_LABEL or by CKA_ID (hex). */
export type KeySelector = { label: string } | { id: string };

/** A private key found in the token. */
export interface TokenKey {
  handle: Handle;
  label: string;
  /** CKA_ID in lowercase hex ("" when the key has none). */
  id: string;
  kind: KeyKind;
  /** RSA modulus size in bits. */
  modulusBits?: number;
}

/** One key object as `qsign hsm keys` shows it. */
export interface KeyListing {
  class: "private" | "public";
  label: string;
  id: string;
  /** `EC P-384`, `RSA 3072`, `ML-DSA-65`, or the raw key type for others. */
  type: string;
  /** The protection attributes; private keys only. */
  sensitive?: boolean;
  extractable?: boolean;
  neverExtractable?: boolean;
  alwaysSensitive?: boolean;
}

/** DER of the namedCurve OIDs as CKA_EC_PARAMS carries them. */
const CURVES: Record<string, { kind: KeyKind; namedCurve: string }> = {
  "06082a8648ce3d030107": { kind: "ec-p256", namedCurve: "P-256" },
  "06052b81040022": { kind: "ec-p384", namedCurve: "P-384" },
};
const ML_DSA_SETS: Record<number, KeyKind> = {
  [CKP_ML_DSA_44]: "mldsa44",
  [CKP_ML_DSA_65]: "mldsa65",
  [CKP_ML_DSA_87]: "mldsa87",
};
const ML_DSA_NAMES: Partial<Record<KeyKind, string>> = {
  mldsa44: "ML-DSA-44",
  mldsa65: "ML-DSA-65",
  mldsa87: "ML-DSA-87",
};

/** Reads a CK_ULONG attribute (native width, little-endian here). */
function ulong(value: Buffer): number {
  return value.length >= 8 ? Number(value.readBigUInt64LE(0)) : value.readUInt32LE(0);
}

const hex = (value: Uint8Array) => Buffer.from(value).toString("hex");

/** Operations on the key objects of one token, through one open session. */
export class TokenKeys {
  readonly #b;
  readonly #where;

  constructor(
    private readonly module: Pkcs11Module,
    readonly token: TokenLocation,
    private readonly session: Handle,
  ) {
    this.#b = module.binding;
    this.#where = { token: token.label, slot: token.slot };
  }

  #find(template: { type: number; value: number | boolean | string | Buffer }[]): Handle[] {
    return this.module.call(this.#where, (api) => {
      api.C_FindObjectsInit(this.session, template);
      try {
        const found: Handle[] = [];
        for (let batch = api.C_FindObjects(this.session, 64); batch.length > 0;) {
          found.push(...batch);
          batch = api.C_FindObjects(this.session, 64);
        }
        return found;
      } finally {
        api.C_FindObjectsFinal(this.session);
      }
    });
  }

  #attributes(object: Handle, types: number[]): Buffer[] {
    return this.module.call(
      this.#where,
      (api) => api.C_GetAttributeValue(this.session, object, types.map((type) => ({ type }))),
    ).map((a) => a.value);
  }

  #bool(object: Handle, type: number): boolean | undefined {
    try {
      return this.#attributes(object, [type])[0][0] === 1;
    } catch {
      return undefined;
    }
  }

  #selectorTemplate(selector: KeySelector) {
    const b = this.#b;
    return "label" in selector
      ? { type: b.CKA_LABEL, value: selector.label }
      : { type: b.CKA_ID, value: Buffer.from(selector.id, "hex") };
  }

  /** The kind of a key object, or its raw description when qsign cannot sign with it. */
  #kind(object: Handle): { kind?: KeyKind; type: string; modulusBits?: number } {
    const b = this.#b;
    const [keyTypeValue] = this.#attributes(object, [b.CKA_KEY_TYPE]);
    const keyType = ulong(keyTypeValue);
    if (keyType === b.CKK_EC) {
      const params = hex(this.#attributes(object, [b.CKA_EC_PARAMS])[0]);
      const curve = CURVES[params];
      return curve
        ? { kind: curve.kind, type: `EC ${curve.namedCurve}` }
        : { type: `EC (curve ${params})` };
    }
    if (keyType === b.CKK_RSA) {
      const bits = this.#attributes(object, [b.CKA_MODULUS])[0].length * 8;
      return { kind: "rsa", type: `RSA ${bits}`, modulusBits: bits };
    }
    if (keyType === CKK_ML_DSA) {
      const kind = ML_DSA_SETS[ulong(this.#attributes(object, [CKA_PARAMETER_SET])[0])];
      return kind ? { kind, type: ML_DSA_NAMES[kind]! } : { type: "ML-DSA (unknown set)" };
    }
    return { type: `key type 0x${keyType.toString(16)}` };
  }

  /** Finds exactly one private key. Throws `HsmError` when there is none, or several. */
  findPrivateKey(selector: KeySelector): TokenKey {
    const b = this.#b;
    const wanted = "label" in selector ? `label "${selector.label}"` : `CKA_ID ${selector.id}`;
    const found = this.#find([
      { type: b.CKA_CLASS, value: b.CKO_PRIVATE_KEY },
      this.#selectorTemplate(selector),
    ]);
    const fail = (problem: string) =>
      new HsmError({ ...this.#where, operation: "find key", module: this.module.path, problem });
    if (found.length === 0) {
      throw fail(`no private key with ${wanted} (see qsign hsm keys; is the PIN right?)`);
    }
    if (found.length > 1) {
      throw fail(`${found.length} private keys have ${wanted}: select by --hsm-key-id`);
    }
    const handle = found[0];
    const [label, id] = this.#attributes(handle, [b.CKA_LABEL, b.CKA_ID]);
    const { kind, type, modulusBits } = this.#kind(handle);
    if (!kind) throw fail(`the key with ${wanted} is ${type}, which qsign cannot sign with`);
    return { handle, label: label.toString("utf8"), id: hex(id), kind, modulusBits };
  }

  /** Every private and public key object visible to this session. */
  list(): KeyListing[] {
    const b = this.#b;
    const listing: KeyListing[] = [];
    for (
      const [cls, name] of [[b.CKO_PRIVATE_KEY, "private"], [b.CKO_PUBLIC_KEY, "public"]] as const
    ) {
      for (const object of this.#find([{ type: b.CKA_CLASS, value: cls }])) {
        const [label, id] = this.#attributes(object, [b.CKA_LABEL, b.CKA_ID]);
        const entry: KeyListing = {
          class: name,
          label: label.toString("utf8"),
          id: hex(id),
          type: this.#kind(object).type,
        };
        if (name === "private") {
          entry.sensitive = this.#bool(object, b.CKA_SENSITIVE);
          entry.extractable = this.#bool(object, b.CKA_EXTRACTABLE);
          entry.neverExtractable = this.#bool(object, b.CKA_NEVER_EXTRACTABLE);
          entry.alwaysSensitive = this.#bool(object, b.CKA_ALWAYS_SENSITIVE);
        }
        listing.push(entry);
      }
    }
    return listing.sort((x, y) => x.label.localeCompare(y.label) || x.class.localeCompare(y.class));
  }

  /**
   * The SubjectPublicKeyInfo (DER) of `key`, read from the public key object beside it (same
   * CKA_ID, or same label when it has no ID): private key objects do not carry the EC point.
   */
  async publicKeySpki(key: TokenKey): Promise<Uint8Array> {
    const b = this.#b;
    const selector: KeySelector = key.id ? { id: key.id } : { label: key.label };
    const [object] = this.#find([
      { type: b.CKA_CLASS, value: b.CKO_PUBLIC_KEY },
      this.#selectorTemplate(selector),
    ]);
    if (!object) {
      throw new HsmError({
        ...this.#where,
        operation: "read public key",
        module: this.module.path,
        problem: `no public key object with ${
          key.id ? `CKA_ID ${key.id}` : `label "${key.label}"`
        } beside the private key`,
      });
    }
    let cryptoKey: CryptoKey;
    if (key.kind === "ec-p256" || key.kind === "ec-p384") {
      const [namedCurve, pointLength] = key.kind === "ec-p256" ? ["P-256", 65] : ["P-384", 97];
      const point = unwrapEcPoint(this.#attributes(object, [b.CKA_EC_POINT])[0], pointLength);
      cryptoKey = await crypto.subtle.importKey(
        "raw",
        new Uint8Array(point),
        { name: "ECDSA", namedCurve },
        true,
        ["verify"],
      );
    } else if (key.kind === "rsa") {
      const [n, e] = this.#attributes(object, [b.CKA_MODULUS, b.CKA_PUBLIC_EXPONENT]);
      const jwk = { kty: "RSA", n: n.toString("base64url"), e: e.toString("base64url") };
      cryptoKey = await crypto.subtle.importKey(
        "jwk",
        jwk,
        { name: "RSA-PSS", hash: "SHA-256" },
        true,
        ["verify"],
      );
    } else {
      const [value] = this.#attributes(object, [b.CKA_VALUE]);
      cryptoKey = await crypto.subtle.importKey(
        "raw-public",
        new Uint8Array(value),
        { name: ML_DSA_NAMES[key.kind]! },
        true,
        ["verify"],
      );
    }
    return new Uint8Array(await crypto.subtle.exportKey("spki", cryptoKey));
  }

  /**
   * Generates a key pair inside the token: the private key is a token object, private,
   * sensitive and not extractable, so it never exists outside the HSM. Refuses a label or ID
   * that is already taken, which would make `--hsm-key-label` ambiguous later.
   */
  generate(type: KeygenType, label: string, id: string, mechanisms: Set<number>): TokenKey {
    const b = this.#b;
    for (const selector of [{ label }, { id }]) {
      if (this.#find([this.#selectorTemplate(selector)]).length > 0) {
        throw new HsmError({
          ...this.#where,
          operation: "keygen",
          module: this.module.path,
          problem: `a key with ${
            "label" in selector ? `label "${label}"` : `CKA_ID ${id}`
          } already exists`,
        });
      }
    }
    const { mechanism, name, publicAttributes } = keygenProfile(b, type);
    if (!mechanisms.has(mechanism)) {
      throw new HsmError({
        ...this.#where,
        operation: "keygen",
        module: this.module.path,
        problem: type === "mldsa65"
          ? `the module does not offer CKM_ML_DSA_KEY_PAIR_GEN (0x1c): ML-DSA keys need a PKCS#11 ` +
            `3.2 module that has it (Luna firmware 7.9 or later); SoftHSM2 2.6 has no ML-DSA`
          : `the module does not offer ${name}`,
      });
    }
    const common = [
      { type: b.CKA_TOKEN, value: true },
      { type: b.CKA_LABEL, value: label },
      { type: b.CKA_ID, value: Buffer.from(id, "hex") },
    ];
    const pair = this.module.call(this.#where, (api) =>
      api.C_GenerateKeyPair(
        this.session,
        { mechanism },
        [
          ...common,
          { type: b.CKA_PRIVATE, value: false },
          { type: b.CKA_VERIFY, value: true },
          { type: b.CKA_ENCRYPT, value: false },
          { type: b.CKA_WRAP, value: false },
          ...publicAttributes,
        ],
        [
          ...common,
          { type: b.CKA_PRIVATE, value: true },
          { type: b.CKA_SENSITIVE, value: true },
          { type: b.CKA_EXTRACTABLE, value: false },
          { type: b.CKA_SIGN, value: true },
          // A TLS identity key signs and does nothing else.
          { type: b.CKA_DECRYPT, value: false },
          { type: b.CKA_UNWRAP, value: false },
          { type: b.CKA_DERIVE, value: false },
        ],
      ));
    const { kind, modulusBits } = this.#kind(pair.privateKey);
    return { handle: pair.privateKey, label, id: id.toLowerCase(), kind: kind!, modulusBits };
  }

  /**
   * Destroys the key pair selected by label or CKA_ID: its private and public key objects.
   * Returns how many of each it destroyed; throws `HsmError` when there is no private key, or
   * when the selector matches several private keys (the operator must say which).
   */
  deletePair(selector: KeySelector): { privateKeys: number; publicKeys: number } {
    const b = this.#b;
    const privateKeys = this.#find([
      { type: b.CKA_CLASS, value: b.CKO_PRIVATE_KEY },
      this.#selectorTemplate(selector),
    ]);
    const wanted = "label" in selector ? `label "${selector.label}"` : `CKA_ID ${selector.id}`;
    if (privateKeys.length !== 1) {
      throw new HsmError({
        ...this.#where,
        operation: "delete",
        module: this.module.path,
        problem: privateKeys.length === 0
          ? `no private key with ${wanted}`
          : `${privateKeys.length} private keys have ${wanted}: select one by --key-id`,
      });
    }
    const publicKeys = this.#find([
      { type: b.CKA_CLASS, value: b.CKO_PUBLIC_KEY },
      this.#selectorTemplate(selector),
    ]);
    this.module.call(this.#where, (api) => {
      for (const object of [...privateKeys, ...publicKeys]) {
        api.C_DestroyObject(this.session, object);
      }
    });
    return { privateKeys: privateKeys.length, publicKeys: publicKeys.length };
  }
}

/** The mechanism and public-key template of each keygen type. */
function keygenProfile(b: Pkcs11Module["binding"], type: KeygenType) {
  switch (type) {
    case "ec-p256":
    case "ec-p384": {
      const params = Object.entries(CURVES).find(([, c]) => c.kind === type)![0];
      return {
        mechanism: b.CKM_EC_KEY_PAIR_GEN,
        name: "CKM_EC_KEY_PAIR_GEN",
        publicAttributes: [{ type: b.CKA_EC_PARAMS, value: Buffer.from(params, "hex") }],
      };
    }
    case "rsa-3072":
      return {
        mechanism: b.CKM_RSA_PKCS_KEY_PAIR_GEN,
        name: "CKM_RSA_PKCS_KEY_PAIR_GEN",
        publicAttributes: [
          { type: b.CKA_MODULUS_BITS, value: 3072 },
          { type: b.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
        ],
      };
    case "mldsa65":
      return {
        mechanism: CKM_ML_DSA_KEY_PAIR_GEN,
        name: "CKM_ML_DSA_KEY_PAIR_GEN",
        publicAttributes: [{ type: CKA_PARAMETER_SET, value: CKP_ML_DSA_65 }],
      };
  }
}

/**
 * CKA_EC_POINT is the DER OCTET STRING around the uncompressed point (PKCS#11 §2.3.3); some
 * modules give the bare point instead, recognisable by its exact length.
 */
function unwrapEcPoint(value: Buffer, pointLength: number): Uint8Array {
  if (value.length === pointLength) return value;
  const headerLength = value[1] < 0x80 ? 2 : 2 + (value[1] & 0x7f);
  return value.subarray(headerLength);
}
