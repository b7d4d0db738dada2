/**
 * Each provider against the others, wherever their implementations differ (crossPairs):
 * signatures made by one verify on another (both ways, every algorithm), keys move between them
 * as PKCS#8, encapsulations decapsulate across, (EC)DH agrees across, AEAD records open across,
 * and the hashes/MACs/KDFs agree.
 */
import { deepEqual, equal, notDeepEqual, ok } from "node:assert/strict";
import {
  AeadAuthError,
  type AeadName,
  type EcdhName,
  type KemName,
  type SignatureAlgorithmName,
} from "../../src/crypto/index.ts";
import { ALL_PROVIDERS, crossPairs, native, noble, signatureFamily } from "./providers.ts";
import { thrown } from "./vectors.ts";

const SIGNATURE_ALGORITHMS: SignatureAlgorithmName[] = [
  "ML-DSA-44",
  "ML-DSA-65",
  "ML-DSA-87",
  "ECDSA-P256-SHA256",
  "ECDSA-P384-SHA384",
  "Ed25519",
  "RSA-PSS-SHA256",
  "RSA-PSS-SHA384",
  "RSA-PKCS1-SHA256",
  "RSA-PKCS1-SHA384",
];

const message = new TextEncoder().encode("QSIGN CertificateVerify transcript hash");
const tampered = message.slice();
tampered[0] ^= 1;

for (const name of SIGNATURE_ALGORITHMS) {
  Deno.test(`cross: ${name} signatures verify both ways`, async () => {
    const pairs = crossPairs(signatureFamily(name));
    ok(pairs.length >= 2);
    for (const [signer, verifier] of pairs) {
      const { privateKey, publicKeySpki, pkcs8 } = await signer.signature(name).generateKeyPair();
      equal(privateKey.algorithm, name);
      deepEqual(privateKey.publicKeySpki, publicKeySpki);
      const signature = await signer.signature(name).sign(privateKey, message);
      const verify = verifier.signature(name);
      equal(await verify.verify(publicKeySpki, message, signature), true, `${signer.name} signs`);
      equal(await verify.verify(publicKeySpki, tampered, signature), false);

      // The same PKCS#8 in the other provider: same public key, and its signatures verify back.
      const imported = await verify.importPrivateKey(pkcs8);
      deepEqual(imported.publicKeySpki, publicKeySpki);
      const back = await verify.sign(imported, message);
      equal(await signer.signature(name).verify(publicKeySpki, message, back), true);
    }
  });
}

for (const name of ["ML-KEM-512", "ML-KEM-768", "ML-KEM-1024"] as KemName[]) {
  Deno.test(`cross: ${name} encapsulates on one, decapsulates on the other`, async () => {
    for (const [holder, sender] of crossPairs("ML-KEM")) {
      const pair = await holder.kem(name).generateKeyPair();
      equal(pair.publicKey.length, holder.kem(name).publicKeyLength);
      const { ciphertext, sharedSecret } = await sender.kem(name).encapsulate(pair.publicKey);
      equal(ciphertext.length, sender.kem(name).ciphertextLength);
      deepEqual(await pair.decapsulate(ciphertext), sharedSecret);
    }
    // The same seed gives the same key pair; a tampered ciphertext is implicitly rejected to the
    // same pseudo-random secret (FIPS 203 Algorithm 18) on both.
    const seed = native.randomBytes(64);
    const [a, b] = await Promise.all([native, noble].map((p) => p.kem(name).keyPairFromSeed(seed)));
    deepEqual(a.publicKey, b.publicKey);
    const { ciphertext, sharedSecret } = await native.kem(name).encapsulate(a.publicKey);
    ciphertext[5] ^= 0x40;
    const rejected = await a.decapsulate(ciphertext);
    deepEqual(await b.decapsulate(ciphertext), rejected);
    notDeepEqual(rejected, sharedSecret);
  });
}

for (const name of ["X25519", "P-256", "P-384"] as EcdhName[]) {
  Deno.test(`cross: ${name} agreement both ways`, async () => {
    const family = name === "X25519" ? "X25519" : `ECDH ${name}` as const;
    for (const [one, other] of crossPairs(family)) {
      const a = await one.keyAgreement(name).generateKeyPair();
      const b = await other.keyAgreement(name).generateKeyPair();
      equal(a.publicKey.length, one.keyAgreement(name).publicKeyLength);
      deepEqual(await a.deriveSharedSecret(b.publicKey), await b.deriveSharedSecret(a.publicKey));
    }
    // The same private key gives the same public key on all (the top bit cleared keeps a
    // NIST scalar below the group order).
    const privateKey = native.randomBytes(name === "P-384" ? 48 : 32);
    privateKey[0] &= 0x7f;
    const publicKeys = await Promise.all(
      ALL_PROVIDERS.map(async (p) =>
        (await p.keyAgreement(name).keyPairFromPrivateKey(privateKey)).publicKey
      ),
    );
    for (const publicKey of publicKeys) deepEqual(publicKey, publicKeys[0]);
  });
}

for (const name of ["AES-128-GCM", "AES-256-GCM", "ChaCha20-Poly1305"] as AeadName[]) {
  Deno.test(`cross: ${name} records open on the other provider`, async () => {
    const key = native.randomBytes(name === "AES-128-GCM" ? 16 : 32);
    const nonce = native.randomBytes(12);
    const aad = Uint8Array.of(23, 3, 3, 0, 40);
    // Around the size where the native provider moves AES-GCM from node:crypto to WebCrypto.
    for (const size of [0, 1000, 4095, 4096, 16385]) {
      const plaintext = native.randomBytes(size);
      for (const [sealer, opener] of crossPairs(name === "ChaCha20-Poly1305" ? name : "AES-GCM")) {
        const sealed = await (await sealer.aead(name, key)).seal(nonce, plaintext, aad);
        equal(sealed.length, plaintext.length + 16);
        const openAead = await opener.aead(name, key);
        deepEqual(await openAead.open(nonce, sealed, aad), plaintext);
        deepEqual(opener.aeadSync(name, key).openSync(nonce, sealed, aad), plaintext);
        sealed[sealed.length - 1] ^= 1;
        ok(await thrown(() => openAead.open(nonce, sealed, aad)) instanceof AeadAuthError);
      }
    }
  });
}

Deno.test("cross: hashes, HMAC and HKDF agree", async () => {
  for (const hash of ["SHA-256", "SHA-384", "SHA-512"] as const) {
    const data = native.randomBytes(300);
    const key = native.randomBytes(40);
    // Incremental: fed in pieces, read midway through a clone, then finished.
    for (const provider of ALL_PROVIDERS) {
      deepEqual(await provider.hash(hash, data), await noble.hash(hash, data), provider.name);
      deepEqual(provider.hashSync(hash, data), await noble.hash(hash, data), provider.name);
      const running = provider.createHash(hash).update(data.subarray(0, 100));
      deepEqual(running.clone().digest(), await noble.hash(hash, data.subarray(0, 100)));
      running.update(data.subarray(100, 250)).update(data.subarray(250));
      deepEqual(running.digest(), await noble.hash(hash, data), provider.name);
    }
    const prk = await noble.hkdfExtract(hash, new Uint8Array(0), key);
    const okm = await noble.hkdfExpand(hash, prk, data.subarray(0, 20), 200);
    for (const provider of ALL_PROVIDERS) {
      deepEqual(await provider.hmac(hash, key, data), await noble.hmac(hash, key, data));
      deepEqual(provider.hmacSync(hash, key, data), await noble.hmac(hash, key, data));
      deepEqual(await provider.hkdfExtract(hash, new Uint8Array(0), key), prk);
      deepEqual(provider.hkdfExtractSync(hash, new Uint8Array(0), key), prk);
      deepEqual(await provider.hkdfExpand(hash, prk, data.subarray(0, 20), 200), okm);
      deepEqual(provider.hkdfExpandSync(hash, prk, data.subarray(0, 20), 200), okm);
    }
  }
});
