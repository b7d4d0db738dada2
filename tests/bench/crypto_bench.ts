/**
 * The native provider against noble for the post-quantum handshake primitives and the per-record
 * and per-handshake hot path. Run: `deno bench tests/bench/crypto_bench.ts`.
 */
import { nativeProvider, nobleProvider } from "../../src/crypto/index.ts";

const message = new TextEncoder().encode("TLS 1.3, server CertificateVerify".padEnd(130, "."));
const record = new Uint8Array(16 * 1024);
const transcript = new Uint8Array(9 * 3400);
const nonce = new Uint8Array(12);
const aad = Uint8Array.of(23, 3, 3, 0x40, 0x11);
const prk = new Uint8Array(48).fill(1);
const label = new TextEncoder().encode("\x00\x30\x09tls13 key\x00");

for (const provider of [nativeProvider, nobleProvider]) {
  const baseline = provider === nativeProvider;
  const kem = provider.kem("ML-KEM-1024");
  const kemPair = await kem.generateKeyPair();
  const { ciphertext } = await kem.encapsulate(kemPair.publicKey);
  const mldsa = provider.signature("ML-DSA-65");
  const { privateKey, publicKeySpki } = await mldsa.generateKeyPair();
  const signature = await mldsa.sign(privateKey, message);
  const p384 = provider.keyAgreement("P-384");
  const peer = await p384.generateKeyPair();
  const aead = await provider.aead("AES-256-GCM", new Uint8Array(32));
  const name = provider.name;

  Deno.bench(`${name} ML-KEM-1024 encapsulate`, { group: "mlkem-encaps", baseline }, async () => {
    await kem.encapsulate(kemPair.publicKey);
  });
  Deno.bench(`${name} ML-KEM-1024 decapsulate`, { group: "mlkem-decaps", baseline }, async () => {
    await kemPair.decapsulate(ciphertext);
  });
  Deno.bench(`${name} ML-DSA-65 sign`, { group: "mldsa-sign", baseline }, async () => {
    await mldsa.sign(privateKey, message);
  });
  Deno.bench(`${name} ML-DSA-65 verify`, { group: "mldsa-verify", baseline }, async () => {
    await mldsa.verify(publicKeySpki, message, signature);
  });
  Deno.bench(`${name} P-384 key pair + ECDH`, { group: "p384-ecdh", baseline }, async () => {
    await (await p384.generateKeyPair()).deriveSharedSecret(peer.publicKey);
  });
  Deno.bench(`${name} HKDF-Expand-Label SHA-384`, { group: "hkdf", baseline }, async () => {
    await provider.hkdfExpand("SHA-384", prk, label, 32);
  });
  Deno.bench(`${name} AES-256-GCM seal 16 KiB`, { group: "aead", baseline }, async () => {
    await aead.seal(nonce, record, aad);
  });
  Deno.bench(`${name} AES-256-GCM seal 100 B`, { group: "aead-small", baseline }, async () => {
    await aead.seal(nonce, record.subarray(0, 100), aad);
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
