/**
 * The providers side by side (native is the baseline of each group) for the post-quantum
 * handshake primitives and the per-record and per-handshake hot path. Numbers only, never
 * asserted. Run: `deno bench --allow-ffi --allow-env --allow-read tests/bench/crypto_bench.ts`
 * (without FFI permission or libcrypto.so.3 the libcrypto rows are left out, and said so).
 */
import {
  type CryptoProvider,
  libcryptoProvider,
  libcryptoUnavailableReason,
  nativeProvider,
  nobleProvider,
} from "../../src/crypto/index.ts";
import { createLibcryptoProvider } from "../../src/crypto/libcrypto.ts";
import { loadLibcrypto } from "../../src/crypto/libcrypto_ffi.ts";

const message = new TextEncoder().encode("TLS 1.3, server CertificateVerify".padEnd(130, "."));
const record = new Uint8Array(16 * 1024);
const transcript = new Uint8Array(9 * 3400);
const nonce = new Uint8Array(12);
const aad = Uint8Array.of(23, 3, 3, 0x40, 0x11);
const prk = new Uint8Array(48).fill(1);
const label = new TextEncoder().encode("\x00\x30\x09tls13 key\x00");

const libcrypto = libcryptoProvider();
if (!libcrypto) console.error(`libcrypto rows left out: ${libcryptoUnavailableReason()}`);
const providers: CryptoProvider[] = [
  nativeProvider,
  nobleProvider,
  ...(libcrypto ? [libcrypto] : []),
];

/** OpenSSL's own P-384 beside the Nettle one the libcrypto provider takes. */
const load = loadLibcrypto();
if (libcrypto && load.ok) {
  const p384 = createLibcryptoProvider(load.lib, { p384: "libcrypto" }).keyAgreement("P-384");
  const peer = await p384.generateKeyPair();
  Deno.bench(
    "libcrypto P-384 key pair + ECDH (OpenSSL's own)",
    { group: "p384-ecdh" },
    async () => {
      await (await p384.generateKeyPair()).deriveSharedSecret(peer.publicKey);
    },
  );
}

for (const provider of providers) {
  const baseline = provider === nativeProvider;
  const kem = provider.kem("ML-KEM-1024");
  const kemPair = await kem.generateKeyPair();
  const { ciphertext } = await kem.encapsulate(kemPair.publicKey);
  const mldsa = provider.signature("ML-DSA-65");
  const { privateKey, publicKeySpki } = await mldsa.generateKeyPair();
  const signature = await mldsa.sign(privateKey, message);
  const ecdsa = provider.signature("ECDSA-P256-SHA256");
  const ecdsaKey = await ecdsa.generateKeyPair();
  const ecdsaSignature = await ecdsa.sign(ecdsaKey.privateKey, message);
  const p384 = provider.keyAgreement("P-384");
  const p384Peer = await p384.generateKeyPair();
  const x25519 = provider.keyAgreement("X25519");
  const x25519Peer = await x25519.generateKeyPair();
  const aes = await provider.aead("AES-256-GCM", new Uint8Array(32));
  const aesSync = provider.aeadSync("AES-256-GCM", new Uint8Array(32));
  const chacha = provider.aeadSync("ChaCha20-Poly1305", new Uint8Array(32));
  const sealed = aesSync.sealSync(nonce, record, aad);
  const out = new Uint8Array(record.length + 16);
  const name = provider.name;

  Deno.bench(`${name} ML-KEM-1024 encapsulate`, { group: "mlkem-encaps", baseline }, async () => {
    await kem.encapsulate(kemPair.publicKey);
  });
  // What a client does with its key share: a new key pair, one decapsulation (of another key's
  // ciphertext here: implicit rejection costs the same).
  Deno.bench(`${name} ML-KEM-1024 key pair + decapsulate`, {
    group: "mlkem-decaps",
    baseline,
  }, async () => {
    await (await kem.generateKeyPair()).decapsulate(ciphertext);
  });
  Deno.bench(`${name} ML-DSA-65 sign`, { group: "mldsa-sign", baseline }, async () => {
    await mldsa.sign(privateKey, message);
  });
  Deno.bench(`${name} ML-DSA-65 verify`, { group: "mldsa-verify", baseline }, async () => {
    await mldsa.verify(publicKeySpki, message, signature);
  });
  Deno.bench(`${name} ECDSA P-256 sign`, { group: "p256-sign", baseline }, async () => {
    await ecdsa.sign(ecdsaKey.privateKey, message);
  });
  Deno.bench(`${name} ECDSA P-256 verify`, { group: "p256-verify", baseline }, async () => {
    await ecdsa.verify(ecdsaKey.publicKeySpki, message, ecdsaSignature);
  });
  Deno.bench(`${name} X25519 key pair + ECDH`, { group: "x25519-ecdh", baseline }, async () => {
    await (await x25519.generateKeyPair()).deriveSharedSecret(x25519Peer.publicKey);
  });
  Deno.bench(
    `${name} P-384 key pair + ECDH (${provider.primitives["ECDH P-384"]})`,
    { group: "p384-ecdh", baseline },
    async () => {
      await (await p384.generateKeyPair()).deriveSharedSecret(p384Peer.publicKey);
    },
  );
  Deno.bench(`${name} HKDF-Expand-Label SHA-384`, { group: "hkdf", baseline }, async () => {
    await provider.hkdfExpand("SHA-384", prk, label, 32);
  });
  Deno.bench(`${name} HKDF-Expand-Label SHA-384, sync`, { group: "hkdf-sync", baseline }, () => {
    provider.hkdfExpandSync("SHA-384", prk, label, 32);
  });
  Deno.bench(`${name} AES-256-GCM seal 16 KiB`, { group: "aes-gcm", baseline }, async () => {
    await aes.seal(nonce, record, aad);
  });
  Deno.bench(`${name} AES-256-GCM sealInto 16 KiB, sync`, {
    group: "aes-gcm-sync",
    baseline,
  }, () => {
    aesSync.sealIntoSync(nonce, [record], aad, out);
  });
  Deno.bench(`${name} AES-256-GCM open 16 KiB, sync`, { group: "aes-gcm-open", baseline }, () => {
    aesSync.openSync(nonce, sealed, aad);
  });
  Deno.bench(`${name} AES-256-GCM seal 100 B`, { group: "aes-gcm-small", baseline }, async () => {
    await aes.seal(nonce, record.subarray(0, 100), aad);
  });
  Deno.bench(`${name} ChaCha20-Poly1305 sealInto 16 KiB, sync`, {
    group: "chacha",
    baseline,
  }, () => {
    chacha.sealIntoSync(nonce, [record], aad, out);
  });
  Deno.bench(`${name} SHA-384 transcript: 30 KB fed, read 9 times`, {
    group: "transcript",
    baseline,
  }, () => {
    const running = provider.createHash("SHA-384");
    for (let at = 0; at < transcript.length; at += transcript.length / 9) {
      running.update(transcript.subarray(at, at + transcript.length / 9));
      running.clone().digest();
    }
  });
}
