/**
 * The verified-chain cache of the TLS engine's default verifier (src/tls/peer.ts) serves a
 * verdict only for the same chain bytes, trust anchors, CRLs, purpose and peer name, and only
 * until the first certificate of the path expires.
 */
import { equal, ok, rejects } from "node:assert/strict";
import { createCrl } from "../../src/pki/certificate.ts";
import { TlsAlert } from "../../src/tls/alert.ts";
import type { TlsServerConfig } from "../../src/tls/config.ts";
import { ChainPeerVerifier, verifierFor } from "../../src/tls/peer.ts";
import { CLIENT_AUTH, DAY, make, makeChain, SERVER_AUTH } from "./helpers.ts";

const { root, intermediate, leaf } = await makeChain("ecdsa-p256");
const chain = [leaf.der, intermediate.der];
const asClient = { role: "client" as const, serverName: "leaf.example.test" };

async function alertOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (e) {
    ok(e instanceof TlsAlert, String(e));
    return e.alert;
  }
  throw new Error("the chain was accepted");
}

Deno.test("a cached verdict is served for the same chain, purpose and name only", async () => {
  const verifier = new ChainPeerVerifier([root.der]);
  const first = await verifier.verify(chain, asClient);
  equal(await verifier.verify(chain, asClient), first, "the second verification is the cached one");
  // Another name, another purpose: verified afresh, and refused.
  equal(
    await alertOf(verifier.verify(chain, { ...asClient, serverName: "other.test" })),
    "bad_certificate",
  );
  equal(await alertOf(verifier.verify(chain, { role: "server" })), "unsupported_certificate");
  // The same bytes cut differently are another chain: the leaf followed by the intermediate
  // in one element has no intermediate to reach the root through.
  const joined = new Uint8Array(leaf.der.length + intermediate.der.length);
  joined.set(leaf.der);
  joined.set(intermediate.der, leaf.der.length);
  await rejects(verifier.verify([joined], asClient), TlsAlert);
});

Deno.test("a CRL added (even in place) or anchors replaced are never answered from the cache", async () => {
  const client = await make({
    subject: "CN=client.example.test",
    issuer: intermediate,
    alg: "ecdsa-p256",
    eku: [CLIENT_AUTH],
    sans: ["DNS:client.example.test"],
  });
  const config: TlsServerConfig = {
    certificates: [],
    clientAuth: "require",
    trustAnchors: [root.der],
    crls: [],
  };
  const context = { role: "server" as const };
  const clientChain = [client.der, intermediate.der];
  await verifierFor(config).verify(clientChain, context);

  const crl = await createCrl({
    issuer: intermediate.cert,
    signer: intermediate.key,
    thisUpdate: new Date(Date.now() - DAY),
    nextUpdate: new Date(Date.now() + DAY),
    crlNumber: 1,
    entries: [{ serial: client.cert.serialNumber, revokedAt: new Date(Date.now() - 1000) }],
  });
  config.crls!.push(new Uint8Array(crl.rawData));
  equal(await alertOf(verifierFor(config).verify(clientChain, context)), "certificate_revoked");

  // A reload: new anchors that do not include the root.
  const other = await makeChain("ecdsa-p256");
  const reloaded = { ...config, trustAnchors: [other.root.der], crls: [] };
  equal(await alertOf(verifierFor(reloaded).verify(clientChain, context)), "unknown_ca");
});

Deno.test("a cached verdict lapses when the first certificate of the path expires", async () => {
  const shortLived = await make({
    subject: "CN=leaf.example.test",
    issuer: intermediate,
    alg: "ecdsa-p256",
    eku: [SERVER_AUTH],
    sans: ["DNS:leaf.example.test"],
    // Whole seconds: the verdict holds to the end of notAfter's second.
    notAfter: new Date(Math.ceil(Date.now() / 1000) * 1000 + 1000),
  });
  const verifier = new ChainPeerVerifier([root.der]);
  const shortChain = [shortLived.der, intermediate.der];
  await verifier.verify(shortChain, asClient);
  await new Promise((r) => setTimeout(r, shortLived.cert.notAfter.getTime() + 1100 - Date.now()));
  equal(await alertOf(verifier.verify(shortChain, asClient)), "certificate_expired");
});
