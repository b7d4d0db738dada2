/**
 * Key exchange groups (RFC 8446 §4.2.7) including the post-quantum ones:
 * pure ML-KEM (draft-ietf-tls-mlkem) and the ECDHE-MLKEM hybrids (draft-ietf-tls-ecdhe-mlkem).
 *
 * A group is a sequence of components, each an ECDH or a KEM; key shares and shared secrets are
 * the concatenation of the components' in that order. The hybrids differ in the order:
 * X25519MLKEM768 puts ML-KEM first, the SecP…MLKEM hybrids put ECDH first (both drafts, and
 * proven by interop with OpenSSL 3.5 in tests/tls).
 */
import { getCryptoProvider } from "../crypto/index.ts";
import { type EcdhName, InvalidPublicValueError, type KemName } from "../crypto/provider.ts";
import { TlsAlert } from "./alert.ts";
import { concat } from "./codec/bytes.ts";
import { isGrease } from "./codec/constants.ts";

/** A client's key share in progress: what it sent, and how to finish with the server's share. */
export interface ClientKeyShare {
  readonly group: KeyExchangeGroup;
  readonly share: Uint8Array;
  /** The shared secret from the server's share; illegal_parameter for a malformed one. */
  complete(serverShare: Uint8Array): Promise<Uint8Array>;
}

/** A NamedGroup: the client generates a share, the server answers it. */
export interface KeyExchangeGroup {
  readonly id: number;
  /** IANA name, e.g. `SecP384r1MLKEM1024`. */
  readonly name: string;
  /** True when the group includes ML-KEM (secure against a quantum adversary). */
  readonly pq: boolean;
  generateShare(): Promise<ClientKeyShare>;
  /** The server side: its share and the shared secret; illegal_parameter for a malformed share. */
  respond(clientShare: Uint8Array): Promise<{ serverShare: Uint8Array; sharedSecret: Uint8Array }>;
}

/** One half of a group: ECDH or ML-KEM. */
interface Component {
  readonly clientShareLength: number;
  readonly serverShareLength: number;
  generate(): Promise<{ share: Uint8Array; complete(serverPart: Uint8Array): Promise<Uint8Array> }>;
  respond(clientPart: Uint8Array): Promise<{ serverPart: Uint8Array; secret: Uint8Array }>;
}

function ecdh(name: EcdhName): Component {
  const length = { "X25519": 32, "P-256": 65, "P-384": 97 }[name];
  return {
    clientShareLength: length,
    serverShareLength: length,
    async generate() {
      const kp = await getCryptoProvider().keyAgreement(name).generateKeyPair();
      return { share: kp.publicKey, complete: (peer) => kp.deriveSharedSecret(peer) };
    },
    async respond(clientPart) {
      const kp = await getCryptoProvider().keyAgreement(name).generateKeyPair();
      return { serverPart: kp.publicKey, secret: await kp.deriveSharedSecret(clientPart) };
    },
  };
}

function mlkem(name: KemName): Component {
  const sizes = {
    "ML-KEM-512": [800, 768],
    "ML-KEM-768": [1184, 1088],
    "ML-KEM-1024": [1568, 1568],
  };
  const [ekLength, ctLength] = sizes[name];
  return {
    clientShareLength: ekLength,
    serverShareLength: ctLength,
    async generate() {
      const kp = await getCryptoProvider().kem(name).generateKeyPair();
      return { share: kp.publicKey, complete: (ct) => kp.decapsulate(ct) };
    },
    async respond(ek) {
      const { ciphertext, sharedSecret } = await getCryptoProvider().kem(name).encapsulate(ek);
      return { serverPart: ciphertext, secret: sharedSecret };
    },
  };
}

/** Splits `share` into the components' parts, or fails with illegal_parameter. */
function split(share: Uint8Array, lengths: number[], what: string): Uint8Array[] {
  const total = lengths.reduce((a, b) => a + b, 0);
  if (share.length !== total) {
    throw new TlsAlert("illegal_parameter", `${what} is ${share.length} bytes, expected ${total}`);
  }
  const parts: Uint8Array[] = [];
  let at = 0;
  for (const n of lengths) {
    parts.push(share.subarray(at, at + n));
    at += n;
  }
  return parts;
}

/** Maps a provider's "invalid public value" to the alert RFC 8446 §4.2.8 asks for. */
async function asIllegalParameter<T>(what: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (e) {
    if (e instanceof InvalidPublicValueError) {
      throw new TlsAlert("illegal_parameter", `${what}: ${e.message}`);
    }
    throw e;
  }
}

/** A group made of components whose shares and secrets are concatenated in order. */
export class HybridGroup implements KeyExchangeGroup {
  readonly #components: Component[];

  constructor(
    readonly id: number,
    readonly name: string,
    readonly pq: boolean,
    ...components: Component[]
  ) {
    this.#components = components;
  }

  async generateShare(): Promise<ClientKeyShare> {
    const parts = await Promise.all(this.#components.map((c) => c.generate()));
    const lengths = this.#components.map((c) => c.serverShareLength);
    return {
      group: this,
      share: concat(...parts.map((p) => p.share)),
      complete: (serverShare) =>
        asIllegalParameter(`${this.name} server share`, async () => {
          const pieces = split(serverShare, lengths, `${this.name} server share`);
          const secrets = await Promise.all(parts.map((p, i) => p.complete(pieces[i])));
          return concat(...secrets);
        }),
    };
  }

  respond(clientShare: Uint8Array) {
    return asIllegalParameter(`${this.name} client share`, async () => {
      const lengths = this.#components.map((c) => c.clientShareLength);
      const pieces = split(clientShare, lengths, `${this.name} client share`);
      const results = await Promise.all(this.#components.map((c, i) => c.respond(pieces[i])));
      return {
        serverShare: concat(...results.map((r) => r.serverPart)),
        sharedSecret: concat(...results.map((r) => r.secret)),
      };
    });
  }
}

/** Every group qsign knows, in its default preference order (post-quantum first). */
export const GROUPS: readonly KeyExchangeGroup[] = [
  new HybridGroup(0x11ed, "SecP384r1MLKEM1024", true, ecdh("P-384"), mlkem("ML-KEM-1024")),
  new HybridGroup(0x11ec, "X25519MLKEM768", true, mlkem("ML-KEM-768"), ecdh("X25519")),
  new HybridGroup(0x11eb, "SecP256r1MLKEM768", true, ecdh("P-256"), mlkem("ML-KEM-768")),
  new HybridGroup(0x0202, "MLKEM1024", true, mlkem("ML-KEM-1024")),
  new HybridGroup(0x0201, "MLKEM768", true, mlkem("ML-KEM-768")),
  new HybridGroup(0x001d, "x25519", false, ecdh("X25519")),
  new HybridGroup(0x0017, "secp256r1", false, ecdh("P-256")),
  new HybridGroup(0x0018, "secp384r1", false, ecdh("P-384")),
];

/** The default offer: the post-quantum groups. */
export const DEFAULT_GROUPS: readonly string[] = GROUPS.filter((g) => g.pq).map((g) => g.name);

export function groupById(id: number): KeyExchangeGroup | undefined {
  return GROUPS.find((g) => g.id === id);
}

/** Names of the Supported Groups registry's code points qsign does not implement, for logs. */
const OTHER_GROUP_NAMES: ReadonlyMap<number, string> = new Map([
  ...[
    "sect163k1",
    "sect163r1",
    "sect163r2",
    "sect193r1",
    "sect193r2",
    "sect233k1",
    "sect233r1",
    "sect239k1",
    "sect283k1",
    "sect283r1",
    "sect409k1",
    "sect409r1",
    "sect571k1",
    "sect571r1",
    "secp160k1",
    "secp160r1",
    "secp160r2",
    "secp192k1",
    "secp192r1",
    "secp224k1",
    "secp224r1",
    "secp256k1",
  ].map((name, i) => [i + 1, name] as [number, string]),
  [0x0019, "secp521r1"],
  [0x001a, "brainpoolP256r1"],
  [0x001b, "brainpoolP384r1"],
  [0x001c, "brainpoolP512r1"],
  [0x001e, "x448"],
  [0x001f, "brainpoolP256r1tls13"],
  [0x0020, "brainpoolP384r1tls13"],
  [0x0021, "brainpoolP512r1tls13"],
  [0x0022, "GC256A"],
  [0x0023, "GC256B"],
  [0x0024, "GC256C"],
  [0x0025, "GC256D"],
  [0x0026, "GC512A"],
  [0x0027, "GC512B"],
  [0x0028, "GC512C"],
  [0x0029, "curveSM2"],
  [0x0100, "ffdhe2048"],
  [0x0101, "ffdhe3072"],
  [0x0102, "ffdhe4096"],
  [0x0103, "ffdhe6144"],
  [0x0104, "ffdhe8192"],
  [0x0200, "MLKEM512"],
  [0x11ee, "curveSM2MLKEM768"],
  [0x6399, "X25519Kyber768Draft00"],
  [0x639a, "SecP256r1Kyber768Draft00"],
  [0xff01, "arbitrary_explicit_prime_curves"],
  [0xff02, "arbitrary_explicit_char2_curves"],
]);

/** A readable name for a group code point: every registered one by name, GREASE as `grease`. */
export function groupName(id: number): string {
  return groupById(id)?.name ?? OTHER_GROUP_NAMES.get(id) ??
    (isGrease(id) ? "grease" : `0x${id.toString(16).padStart(4, "0")}`);
}

/**
 * Resolves configured group names (case-insensitive IANA names) in order. Classical groups are
 * refused unless `allowClassical`; the default is every PQ group, plus the classical ones when
 * allowed. Throws RangeError naming the offending group.
 */
export function resolveGroups(names: readonly string[] | undefined, allowClassical = false) {
  const chosen = names?.length
    ? names.map((name) => {
      const group = GROUPS.find((g) => g.name.toLowerCase() === name.toLowerCase());
      if (!group) {
        throw new RangeError(
          `unknown group ${name} (known: ${GROUPS.map((g) => g.name).join(", ")})`,
        );
      }
      return group;
    })
    : GROUPS.filter((g) => g.pq || allowClassical);
  const classical = chosen.find((g) => !g.pq);
  if (classical && !allowClassical) {
    throw new RangeError(`group ${classical.name} is classical; it needs allowClassical`);
  }
  return chosen;
}

/**
 * Per server, the group it asked for in a HelloRetryRequest, so the next ClientHello to it
 * carries that share first and saves the round trip (as rustls keeps its kx hint). Bounded:
 * the oldest entry goes when full.
 */
export class KeyShareHints {
  readonly #groups = new Map<string, number>();

  constructor(readonly capacity = 1024) {}

  /** The group `server` last asked for, if any. */
  get(server: string): number | undefined {
    return this.#groups.get(server);
  }

  remember(server: string, group: number): void {
    this.#groups.delete(server);
    this.#groups.set(server, group);
    if (this.#groups.size > this.capacity) {
      this.#groups.delete(this.#groups.keys().next().value!);
    }
  }
}

/** The hints of clients whose configuration brings none. */
export const defaultKeyShareHints: KeyShareHints = new KeyShareHints();
