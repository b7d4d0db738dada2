/**
 * The cross-certificate maze that made path building exponential: a leaf issued by `CN=X`,
 * m certificates `X←Y` and m certificates `Y←X`, without key identifiers, so that every
 * ordering of them is a simple path that never reaches a trust anchor: (m!)² paths.
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { generatorSigning, randomSerial } from "../../src/pki/certificate.ts";
import { bufferSource } from "../../src/pki/der.ts";
import { generateKeyPair, type LoadedPrivateKey, type TbsSigner } from "../../src/pki/keys.ts";
import type { CertifiedKey } from "../../src/tls/config.ts";
import { FileSigner, KEY_KIND_OF_ALGORITHM } from "../../src/tls/signers.ts";
import { DAY } from "./helpers.ts";

export interface Maze {
  /** The leaf (issued by CN=X), then the cross-certificates, X←Y and Y←X alternating. */
  chain: Uint8Array[];
  /** The leaf's key. */
  leafKey: LoadedPrivateKey;
  /** The chain with a signer for the leaf's key, for the TLS engine to present. */
  certified: CertifiedKey;
}

/**
 * Builds the maze with `m` certificates each way. With `validSignatures` every link verifies
 * (the attacker holds the keys of X and Y), so only a work budget stops the search; otherwise
 * every signature is junk (made with an unrelated key).
 */
export async function crossCertificateMaze(
  m: number,
  options: { validSignatures?: boolean } = {},
): Promise<Maze> {
  const [x, y, junk, leafKey] = await Promise.all(
    [0, 1, 2, 3].map(() => generateKeyPair("ecdsa-p256")),
  );
  const signer = (real: TbsSigner) => options.validSignatures ? real : junk;
  const now = Date.now();
  const make = async (
    subject: string,
    issuer: string,
    spki: Uint8Array,
    by: TbsSigner,
    ca: boolean,
  ) => {
    const signing = generatorSigning(by);
    const extensions: x509.Extension[] = ca
      ? [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
      ]
      : [
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([
          x509.ExtendedKeyUsage.serverAuth,
          x509.ExtendedKeyUsage.clientAuth,
        ]),
        new x509.SubjectAlternativeNameExtension([{ type: "dns", value: "localhost" }]),
      ];
    const cert = await x509.X509CertificateGenerator.create(
      {
        serialNumber: randomSerial(),
        subject,
        issuer,
        notBefore: new Date(now - DAY),
        notAfter: new Date(now + DAY),
        publicKey: bufferSource(spki),
        signingKey: signing.signingKey,
        signingAlgorithm: signing.signingAlgorithm,
        extensions,
      },
      signing.crypto,
    );
    return new Uint8Array(cert.rawData);
  };
  const leaf = await make("CN=localhost", "CN=X", leafKey.spki, signer(x), false);
  const cross: Uint8Array[] = [];
  for (let i = 0; i < m; i++) {
    cross.push(await make("CN=X", "CN=Y", x.spki, signer(y), true));
    cross.push(await make("CN=Y", "CN=X", y.spki, signer(x), true));
  }
  const chain = [leaf, ...cross];
  const tlsSigner = await FileSigner.fromPkcs8(
    leafKey.pkcs8,
    KEY_KIND_OF_ALGORITHM[leafKey.keyAlgorithm],
    "maze leaf",
  );
  return { chain, leafKey, certified: { chain, signer: tlsSigner } };
}

/**
 * Samples event-loop delay: a 5 ms interval timer whose lateness is recorded; `stop()` returns
 * the largest lateness seen, in milliseconds.
 */
export function watchEventLoop(): { stop(): number } {
  const period = 5;
  let expected = performance.now() + period;
  let worst = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - expected);
    expected = now + period;
  }, period);
  return {
    stop() {
      clearInterval(timer);
      return worst;
    },
  };
}
