/**
 * Malformed input, from a peer or a file, gets the provider's typed errors on every provider:
 * InvalidPublicValueError for keys, points and ciphertexts; AeadAuthError for records;
 * InvalidPrivateKeyError for key files; RangeError for our own callers' mistakes. Never a stray
 * TypeError or a library's own message.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import {
  AeadAuthError,
  InvalidPrivateKeyError,
  InvalidPublicValueError,
} from "../../src/crypto/index.ts";
import { encodeTlv, Tag } from "../../src/crypto/der.ts";
import { encodePkcs8, encodeSpki } from "../../src/crypto/keys.ts";
import { ALL_PROVIDERS, native, noble, P384_VARIANTS } from "./providers.ts";
import { fromHex, thrown } from "./vectors.ts";

/** An ML-DSA-44 PKCS#8 in the draft's expandedKey-only form (2560 bytes of dummy key). */
const expandedOnlyMlDsa44 = encodeTlv(
  Tag.sequence,
  encodeTlv(Tag.integer, Uint8Array.of(0)),
  fromHex("300b0609608648016503040311"),
  encodeTlv(Tag.octetString, encodeTlv(Tag.octetString, new Uint8Array(2560))),
);

for (const provider of ALL_PROVIDERS) {
  const isPublicValueError = async (what: string, check: () => Promise<unknown>) => {
    const error = await thrown(check);
    ok(error instanceof InvalidPublicValueError, `${provider.name}: ${what}: ${error}`);
  };

  Deno.test(`${provider.name}: ML-KEM refuses wrong-length keys and ciphertexts`, async () => {
    const kem = provider.kem("ML-KEM-768");
    const pair = await kem.generateKeyPair();
    await isPublicValueError("short key", () => kem.encapsulate(pair.publicKey.subarray(1)));
    await isPublicValueError("empty key", () => kem.encapsulate(new Uint8Array(0)));
    // All-ones coefficients (4095) exceed q = 3329: the FIPS 203 modulus check.
    await isPublicValueError(
      "unreduced key",
      () => kem.encapsulate(new Uint8Array(1184).fill(0xff)),
    );
    await isPublicValueError("short ciphertext", () => pair.decapsulate(new Uint8Array(1087)));
    await isPublicValueError("long ciphertext", () => pair.decapsulate(new Uint8Array(1089)));
    ok(await thrown(() => kem.keyPairFromSeed(new Uint8Array(32))) instanceof RangeError);
  });

  Deno.test(`${provider.name}: (EC)DH refuses bad points and low-order X25519 keys`, async () => {
    const p256 = await provider.keyAgreement("P-256").generateKeyPair();
    const offCurve = new Uint8Array(65);
    offCurve[0] = 4;
    offCurve[64] = 1;
    await isPublicValueError("off-curve point", () => p256.deriveSharedSecret(offCurve));
    const compressed = p256.publicKey.slice(0, 33);
    compressed[0] = 2 + (p256.publicKey[64] & 1);
    await isPublicValueError("compressed point", () => p256.deriveSharedSecret(compressed));
    await isPublicValueError("P-384 point to P-256", async () => {
      const p384 = await provider.keyAgreement("P-384").generateKeyPair();
      return p256.deriveSharedSecret(p384.publicKey);
    });

    const x25519 = await provider.keyAgreement("X25519").generateKeyPair();
    await isPublicValueError("zero point", () => x25519.deriveSharedSecret(new Uint8Array(32)));
    // u = 1: order 1, shared secret all zero.
    await isPublicValueError(
      "order-1 point",
      () => x25519.deriveSharedSecret(fromHex("01".padEnd(64, "0"))),
    );
    await isPublicValueError("31 bytes", () => x25519.deriveSharedSecret(new Uint8Array(31)));

    const error = await thrown(() =>
      provider.keyAgreement("P-256").keyPairFromPrivateKey(new Uint8Array(32))
    );
    ok(error instanceof InvalidPrivateKeyError, `zero scalar: ${error}`);
  });

  Deno.test(`${provider.name}: AEAD open refuses tampered, truncated and empty records`, async () => {
    for (const name of ["AES-128-GCM", "AES-256-GCM", "ChaCha20-Poly1305"] as const) {
      const aead = await provider.aead(name, new Uint8Array(name === "AES-128-GCM" ? 16 : 32));
      const nonce = new Uint8Array(12);
      const sealed = await aead.seal(nonce, new Uint8Array(10), new Uint8Array(5));
      for (
        const [what, record, aad] of [
          ["short record", sealed.subarray(0, 15), new Uint8Array(5)],
          ["empty record", new Uint8Array(0), new Uint8Array(5)],
          ["other aad", sealed, new Uint8Array(6)],
        ] as const
      ) {
        const error = await thrown(() => aead.open(nonce, record, aad));
        ok(error instanceof AeadAuthError, `${name} ${what}: ${error}`);
      }
      ok(
        await thrown(() => aead.open(new Uint8Array(8), sealed, new Uint8Array(5))) instanceof
          RangeError,
      );
      ok(await thrown(() => provider.aead(name, new Uint8Array(24))) instanceof RangeError);
    }
  });

  Deno.test(`${provider.name}: signature verification refuses unusable keys, rejects garbage`, async () => {
    const ecdsa = provider.signature("ECDSA-P256-SHA256");
    const { publicKeySpki, privateKey } = await ecdsa.generateKeyPair();
    const message = new Uint8Array(10);
    const signature = await ecdsa.sign(privateKey, message);
    equal(await ecdsa.verify(publicKeySpki, message, new Uint8Array(0)), false);
    equal(await ecdsa.verify(publicKeySpki, message, signature.subarray(1)), false);
    // The same integers with a BER long-form length: not DER.
    const ber = new Uint8Array([0x30, 0x81, signature[1], ...signature.subarray(2)]);
    equal(await ecdsa.verify(publicKeySpki, message, ber), false);

    await isPublicValueError(
      "garbage SPKI",
      () => ecdsa.verify(new Uint8Array(20), message, signature),
    );
    await isPublicValueError("P-384 SPKI for P-256", async () => {
      const other = await provider.signature("ECDSA-P384-SHA384").generateKeyPair();
      return ecdsa.verify(other.publicKeySpki, message, signature);
    });
    const offCurve = new Uint8Array(65);
    offCurve[0] = 4;
    await isPublicValueError(
      "off-curve ECDSA key",
      () => ecdsa.verify(encodeSpki("P-256", offCurve), message, signature),
    );
    await isPublicValueError("ML-DSA-44 key for ML-DSA-65", async () => {
      const other = await provider.signature("ML-DSA-44").generateKeyPair();
      return provider.signature("ML-DSA-65").verify(other.publicKeySpki, message, signature);
    });
    await isPublicValueError(
      "garbage RSA SPKI",
      () => provider.signature("RSA-PSS-SHA256").verify(publicKeySpki, message, signature),
    );

    const mldsa = provider.signature("ML-DSA-65");
    const pair = await mldsa.generateKeyPair();
    equal(await mldsa.verify(pair.publicKeySpki, message, new Uint8Array(3309)), false);
    equal(await mldsa.verify(pair.publicKeySpki, message, new Uint8Array(5)), false);
    equal(
      await mldsa.verify(pair.publicKeySpki, message, await mldsa.sign(pair.privateKey, message), {
        context: new Uint8Array(256),
      }),
      false,
    );
  });

  Deno.test(`${provider.name}: private key import refuses what it cannot use`, async () => {
    const cases: [string, () => Promise<unknown>][] = [
      ["garbage", () => provider.signature("ML-DSA-65").importPrivateKey(new Uint8Array(10))],
      [
        "ML-DSA-44 key as ML-DSA-65",
        () =>
          provider.signature("ML-DSA-65").importPrivateKey(
            encodePkcs8("ML-DSA-44", new Uint8Array(32)),
          ),
      ],
      [
        "expanded-only ML-DSA key",
        () => provider.signature("ML-DSA-44").importPrivateKey(expandedOnlyMlDsa44),
      ],
      [
        "Ed25519 key as ECDSA",
        () =>
          provider.signature("ECDSA-P256-SHA256").importPrivateKey(
            encodePkcs8("Ed25519", new Uint8Array(32)),
          ),
      ],
      [
        "zero ECDSA scalar",
        () =>
          provider.signature("ECDSA-P256-SHA256").importPrivateKey(
            encodePkcs8("P-256", new Uint8Array(32)),
          ),
      ],
      [
        "garbage RSA",
        () => provider.signature("RSA-PSS-SHA256").importPrivateKey(new Uint8Array(10)),
      ],
    ];
    for (const [what, check] of cases) {
      const error = await thrown(check);
      ok(error instanceof InvalidPrivateKeyError, `${what}: ${error}`);
    }
    const error = await thrown(() =>
      provider.signature("ML-DSA-44").importPrivateKey(expandedOnlyMlDsa44)
    );
    ok(String(error).includes("not in seed form"), String(error));
  });

  Deno.test(`${provider.name}: caller mistakes are RangeErrors or TypeErrors`, async () => {
    const ecdsa = provider.signature("ECDSA-P256-SHA256");
    const { privateKey } = await ecdsa.generateKeyPair();
    const context = new Uint8Array(1);
    ok(
      await thrown(() => ecdsa.sign(privateKey, new Uint8Array(1), { context })) instanceof
        RangeError,
    );
    const mldsa = provider.signature("ML-DSA-44");
    const pair = await mldsa.generateKeyPair();
    ok(
      await thrown(() =>
        mldsa.sign(pair.privateKey, new Uint8Array(1), { context: new Uint8Array(256) })
      ) instanceof
        RangeError,
    );
    // A key of another algorithm, or of another provider (for ML-DSA, one that does not share
    // the implementation: libcrypto without ML-DSA hands it to native).
    ok(await thrown(() => mldsa.sign(privateKey, new Uint8Array(1))) instanceof TypeError);
    const other = provider === native ? noble : native;
    ok(
      await thrown(() =>
        other.signature("ECDSA-P256-SHA256").sign(privateKey, new Uint8Array(1))
      ) instanceof TypeError,
    );
    if (other.signature("ML-DSA-44") !== mldsa) {
      ok(
        await thrown(() =>
          other.signature("ML-DSA-44").sign(pair.privateKey, new Uint8Array(1))
        ) instanceof TypeError,
      );
    }
    ok(
      await thrown(() =>
        provider.hkdfExpand("SHA-256", new Uint8Array(32), new Uint8Array(0), 255 * 32 + 1)
      ) instanceof RangeError,
    );
  });
}

/** The P-384 field prime and curve coefficient b (SEC 2 §2.5.1; a = -3). */
const P384_P = BigInt(
  "0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff",
);
const P384_B = BigInt(
  "0xb3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aef",
);
/** Its group order: private scalars lie in [1, n). */
const P384_N = BigInt(
  "0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973",
);

function modPow(base: bigint, exponent: bigint, modulus: bigint): bigint {
  let result = 1n;
  base %= modulus;
  for (; exponent > 0n; exponent >>= 1n) {
    if (exponent & 1n) result = (result * base) % modulus;
    base = (base * base) % modulus;
  }
  return result;
}

const bytes48 = (value: bigint) => fromHex(value.toString(16).padStart(96, "0"));

/**
 * The P-384 point of smallest x, and the same point with x + p in its place: 48 bytes still hold
 * it (p is within 2^129 of 2^384), and it passes an on-curve check done modulo p. SEC 1 §3.2.2.1
 * (and RFC 8446 §4.2.8.2) require both coordinates in [0, p).
 */
function smallestXPoint(): { point: Uint8Array; unreduced: Uint8Array } {
  for (let x = 0n;; x++) {
    const rhs = (((x * x * x - 3n * x + P384_B) % P384_P) + P384_P) % P384_P;
    // p = 3 (mod 4): a square root of a square is rhs^((p+1)/4).
    const y = modPow(rhs, (P384_P + 1n) / 4n, P384_P);
    if ((y * y) % P384_P !== rhs) continue;
    const encode = (xValue: bigint) => Uint8Array.of(4, ...bytes48(xValue), ...bytes48(y));
    return { point: encode(x), unreduced: encode(x + P384_P) };
  }
}

for (
  const { provider, label } of [
    ...ALL_PROVIDERS.map((provider) => ({ provider, label: provider.name })),
    ...P384_VARIANTS,
  ]
) {
  Deno.test(`${label}: P-384 refuses unreduced, off-curve and malformed points`, async () => {
    const agreement = provider.keyAgreement("P-384");
    const pair = await agreement.generateKeyPair();
    const isPublicValueError = async (what: string, peer: Uint8Array) => {
      const error = await thrown(() => pair.deriveSharedSecret(peer));
      ok(error instanceof InvalidPublicValueError, `${label}: ${what}: ${error}`);
    };
    const { point, unreduced } = smallestXPoint();
    // The reduced point is a valid key: with the scalar 1 the shared secret is its x.
    const one = await agreement.keyPairFromPrivateKey(bytes48(1n));
    deepEqual(await one.deriveSharedSecret(point), point.subarray(1, 49));
    await isPublicValueError("x + p", unreduced);
    const yUnreduced = pair.publicKey.slice();
    yUnreduced.set(bytes48(P384_P), 49);
    await isPublicValueError("y = p", yUnreduced);
    const offCurve = pair.publicKey.slice();
    offCurve[96] ^= 1;
    await isPublicValueError("off-curve point", offCurve);
    await isPublicValueError("no prefix", pair.publicKey.subarray(1));
    const hybrid = pair.publicKey.slice();
    hybrid[0] = 6 + (hybrid[96] & 1);
    await isPublicValueError("hybrid encoding", hybrid);
    await isPublicValueError("point at infinity", Uint8Array.of(0));

    for (
      const [what, scalar] of [
        ["zero scalar", new Uint8Array(48)],
        ["47 bytes", new Uint8Array(47).fill(1)],
        ["scalar n", bytes48(P384_N)],
        ["scalar 2^384 - 1", new Uint8Array(48).fill(0xff)],
      ] as const
    ) {
      const error = await thrown(() => agreement.keyPairFromPrivateKey(scalar));
      ok(error instanceof InvalidPrivateKeyError, `${label}: ${what}: ${error}`);
    }
  });
}
