/**
 * The name rules through `verifyChain`: for each rule and each name-constraint form, permitted
 * and excluded, a chain built with fresh keys, refused for exactly the reason, rule and
 * certificate expected, or accepted. Every accepted chain is cross-checked with OpenSSL 3.5
 * (Node.js 26, a TLS handshake over loopback trusting only the root), and so is every refused
 * one whose rule OpenSSL enforces too.
 */
import "reflect-metadata";
import type * as x509 from "@peculiar/x509";
import { equal, ok, rejects } from "node:assert/strict";
import { UsageError } from "../../src/errors.ts";
import { initPki, issueLeaf, PKI_FILES } from "../../src/pki/ca.ts";
import type { LoadedPrivateKey } from "../../src/pki/keys.ts";
import { privateKeyPem } from "../../src/pki/keys.ts";
import { MAX_COMPARISONS_PER_PAIR, RULES } from "../../src/pki/names.ts";
import { pemEncode, readCertificatesFile } from "../../src/pki/pem.ts";
import {
  type ChainFailureReason,
  ChainVerificationError,
  verifyChain,
} from "../../src/pki/verify.ts";
import { PEER_NODE, tempDir } from "../support/env.ts";
import { type Issued, make, SERVER_AUTH } from "./helpers.ts";
import { gn, ncExtension, sanExtension, subtree } from "./name_support.ts";

const ALG = "ecdsa-p256" as const;
const HOST = "leaf.example.com";

let serial = 0;
const root = (extensions: x509.Extension[] = [], subject = `CN=Names Root ${++serial}`) =>
  make({ subject, alg: ALG, ca: {}, extensions });
const ca = (
  issuer: Issued,
  extensions: x509.Extension[] = [],
  subject = `CN=Names CA ${++serial}`,
) => make({ subject, issuer, alg: ALG, ca: {}, extensions });
/** A server leaf with exactly these SANs; its subject has no CN unless one is given. */
const leaf = (issuer: Issued, sans: Uint8Array[], subject = "O=Names Rules") =>
  make({ subject, issuer, alg: ALG, eku: [SERVER_AUTH], extensions: [sanExtension(sans)] });

/** A chain: trust anchor, intermediates (leaf side first) and leaf. */
interface Chain {
  root: Issued;
  intermediates: Issued[];
  leaf: Issued;
  host?: string;
}

type Expected = "valid" | { reason: ChainFailureReason; rule: string; index: number };

/** Chains OpenSSL must judge the same way; filled by the tests, checked by the last one. */
const forOpenSsl: { name: string; chain: Chain; authorized: boolean }[] = [];

/**
 * Registers a test: builds the chain, verifies it (purpose server, host `chain.host` or HOST)
 * and compares with `expected`. `openssl: true` adds it to the OpenSSL cross-check, for a refused
 * chain only where OpenSSL enforces the same rule.
 */
function rule(name: string, build: () => Promise<Chain>, expected: Expected, openssl = false) {
  Deno.test(name, async () => {
    const chain = await build();
    let caught: unknown;
    try {
      await verifyChain(chain.leaf.der, {
        trustAnchors: [chain.root.der],
        intermediates: chain.intermediates.map((c) => c.der),
        purpose: "server",
        host: chain.host ?? HOST,
      });
    } catch (e) {
      caught = e;
    }
    if (expected === "valid") {
      equal(caught, undefined, `expected the chain to verify, got ${caught}`);
    } else {
      ok(caught instanceof ChainVerificationError, `expected a refusal, got ${caught}`);
      equal(caught.reason, expected.reason, caught.message);
      equal(caught.rule, expected.rule, caught.message);
      equal(caught.index, expected.index, caught.message);
    }
    if (openssl || expected === "valid") {
      forOpenSsl.push({ name, chain, authorized: expected === "valid" });
    }
  });
}

const invalidName = (rule: string, index = 0): Expected => ({
  reason: "invalid name",
  rule,
  index,
});
const constraintFailure = (index = 0): Expected => ({
  reason: "name constraints",
  rule: RULES.nameConstraints,
  index,
});

/** root → CA carrying `constraint` → leaf with `sans` (and `subject`). */
async function constrained(
  constraint: x509.Extension,
  sans: Uint8Array[],
  subject?: string,
): Promise<Chain> {
  const r = await root();
  const c = await ca(r, [constraint]);
  return { root: r, intermediates: [c], leaf: await leaf(c, sans, subject) };
}

// ---------------------------------------------------------------------------------------------
// subjectAltName syntax and the subject CN

async function direct(sans: Uint8Array[], subject?: string, host?: string): Promise<Chain> {
  const r = await root();
  return { root: r, intermediates: [], leaf: await leaf(r, sans, subject), host };
}

rule("a plain host name SAN is valid", () => direct([gn.dns(HOST)]), "valid");
rule(
  "a wildcard SAN matches one label",
  () => direct([gn.dns("*.example.com")], undefined, "www.example.com"),
  "valid",
);
rule("a CN that copies a DNS SAN is valid", () => direct([gn.dns(HOST)], `CN=${HOST}`), "valid");
rule(
  "a CN that copies an IP SAN in canonical text is valid",
  () => direct([gn.dns(HOST), gn.ip("2001:db8::1")], "CN=2001:db8::1"),
  "valid",
);
for (const bad of ["leaf_1.example.com", "leaf..example.com", ".example.com", "example.com/x"]) {
  rule(
    `dNSName SAN ${JSON.stringify(bad)} is refused`,
    () => direct([gn.dns(HOST), gn.dns(bad)]),
    invalidName(RULES.subjectAltName),
  );
}
rule(
  "a partial-label wildcard SAN is refused",
  () => direct([gn.dns(HOST), gn.dns("l*.example.com")]),
  invalidName(RULES.subjectAltName),
);
for (const wildcard of ["*.com", "*.co.uk"]) {
  rule(
    `a wildcard on the public suffix ${wildcard} is refused`,
    () => direct([gn.dns(HOST), gn.dns(wildcard)]),
    invalidName(RULES.wildcardPublicSuffix),
  );
}
rule(
  "a CN in another letter case than its SAN is refused",
  () => direct([gn.dns(HOST)], "CN=Leaf.Example.com"),
  invalidName(RULES.commonName),
);
rule(
  "a CN with an IPv6 address not in RFC 5952 form is refused",
  () => direct([gn.dns(HOST), gn.ip("2001:db8::1")], "CN=2001:DB8:0:0:0:0:0:1"),
  invalidName(RULES.commonName),
);
rule(
  "a CN in U-labels where the SAN holds the A-label is refused",
  () =>
    direct(
      [gn.dns("xn--bcher-kva.example.com")],
      "CN=b\u00fccher.example.com",
      "xn--bcher-kva.example.com",
    ),
  invalidName(RULES.commonName),
);

// ---------------------------------------------------------------------------------------------
// dNSName constraints

rule(
  "dNSName permitted: a name below the subtree passes",
  () => constrained(ncExtension({ permitted: [gn.dns("example.com")] }), [gn.dns(HOST)]),
  "valid",
);
rule(
  "dNSName permitted: a name outside is refused",
  () => constrained(ncExtension({ permitted: [gn.dns("example.org")] }), [gn.dns(HOST)]),
  constraintFailure(),
  true,
);
rule(
  "dNSName excluded: a name inside is refused",
  () => constrained(ncExtension({ excluded: [gn.dns("leaf.example.com")] }), [gn.dns(HOST)]),
  constraintFailure(),
  true,
);
rule(
  "CVE-2025-61727: an excluded name reachable by a wildcard SAN is refused",
  () =>
    constrained(
      ncExtension({ permitted: [gn.dns("example.com")], excluded: [gn.dns("bar.example.com")] }),
      [gn.dns("*.example.com")],
    ).then((c) => ({ ...c, host: "bar.example.com" })),
  constraintFailure(),
);
rule(
  "a wildcard SAN wider than the permitted subtree is refused",
  () =>
    constrained(ncExtension({ permitted: [gn.dns("foo.example.com")] }), [gn.dns("*.example.com")])
      .then((c) => ({ ...c, host: "foo.example.com" })),
  constraintFailure(),
  true,
);

// ---------------------------------------------------------------------------------------------
// iPAddress constraints

rule(
  "IPv4 permitted: an address inside passes",
  () =>
    constrained(ncExtension({ permitted: [gn.ip("192.0.2.0/24")] }), [
      gn.dns(HOST),
      gn.ip("192.0.2.7"),
    ]),
  "valid",
);
rule(
  "IPv4 permitted: an address outside is refused",
  () =>
    constrained(ncExtension({ permitted: [gn.ip("192.0.2.0/24")] }), [
      gn.dns(HOST),
      gn.ip("198.51.100.7"),
    ]),
  constraintFailure(),
  true,
);
rule(
  "IPv6 permitted: an address inside passes",
  () =>
    constrained(ncExtension({ permitted: [gn.ip("2001:db8::/32")] }), [
      gn.dns(HOST),
      gn.ip("2001:db8::7"),
    ]),
  "valid",
);
rule(
  "IPv6 excluded: an address inside is refused",
  () =>
    constrained(ncExtension({ excluded: [gn.ip("2001:db8::/32")] }), [
      gn.dns(HOST),
      gn.ip("2001:db8::7"),
    ]),
  constraintFailure(),
  true,
);

// ---------------------------------------------------------------------------------------------
// rfc822Name constraints (the subject's emailAddress counts)

rule(
  "rfc822 mailbox permitted: the exact mailbox passes",
  () =>
    constrained(ncExtension({ permitted: [gn.email("ops@example.com")] }), [
      gn.dns(HOST),
      gn.email("ops@example.com"),
    ]),
  "valid",
);
rule(
  "rfc822 host permitted: a mailbox on the host passes, literal * in the local part",
  () =>
    constrained(ncExtension({ permitted: [gn.email("example.com")] }), [
      gn.dns(HOST),
      gn.email("*@example.com"),
    ]),
  "valid",
);
rule(
  "rfc822 domain permitted: a mailbox on a host of the domain passes",
  () =>
    constrained(ncExtension({ permitted: [gn.email(".example.com")] }), [
      gn.dns(HOST),
      gn.email("ops@mail.example.com"),
    ]),
  "valid",
);
rule(
  "rfc822 mailbox permitted: another mailbox is refused",
  () =>
    constrained(ncExtension({ permitted: [gn.email("ops@example.com")] }), [
      gn.dns(HOST),
      gn.email("dev@example.com"),
    ]),
  constraintFailure(),
  true,
);
rule(
  "rfc822 host permitted: a mailbox on a subdomain is refused",
  () =>
    constrained(ncExtension({ permitted: [gn.email("example.com")] }), [
      gn.dns(HOST),
      gn.email("ops@mail.example.com"),
    ]),
  constraintFailure(),
  true,
);
rule(
  "rfc822 excluded domain: a mailbox inside is refused",
  () =>
    constrained(ncExtension({ excluded: [gn.email(".example.com")] }), [
      gn.dns(HOST),
      gn.email("ops@mail.example.com"),
    ]),
  constraintFailure(),
  true,
);
rule(
  "rfc822 permitted: a subject emailAddress outside is refused",
  () =>
    constrained(
      ncExtension({ permitted: [gn.email("example.com")] }),
      [gn.dns(HOST)],
      "O=Names Rules, E=ops@example.org",
    ),
  constraintFailure(),
  true,
);

// ---------------------------------------------------------------------------------------------
// URI constraints

rule(
  "URI host permitted: a URI on the host passes",
  () =>
    constrained(ncExtension({ permitted: [gn.uri("api.example.com")] }), [
      gn.dns(HOST),
      gn.uri("https://api.example.com:8443/v1"),
    ]),
  "valid",
);
rule(
  "URI domain permitted: a URI on a host of the domain passes",
  () =>
    constrained(ncExtension({ permitted: [gn.uri(".example.com")] }), [
      gn.dns(HOST),
      gn.uri("spiffe://workload.example.com/ns/a"),
    ]),
  "valid",
);
rule(
  "URI host permitted: a URI on a subdomain is refused",
  () =>
    constrained(ncExtension({ permitted: [gn.uri("example.com")] }), [
      gn.dns(HOST),
      gn.uri("https://api.example.com/"),
    ]),
  constraintFailure(),
  true,
);
rule(
  "URI excluded: a URI inside is refused",
  () =>
    constrained(ncExtension({ excluded: [gn.uri(".example.com")] }), [
      gn.dns(HOST),
      gn.uri("https://api.example.com/"),
    ]),
  constraintFailure(),
  true,
);

// ---------------------------------------------------------------------------------------------
// directoryName constraints (the subject and directoryName SANs)

rule(
  "directoryName permitted: a subject below the prefix passes",
  () =>
    constrained(
      ncExtension({ permitted: [gn.dir("C=KR, O=Example")] }),
      [gn.dns(HOST)],
      "C=KR, O=Example, OU=Web",
    ),
  "valid",
);
rule(
  "directoryName permitted: a subject outside is refused",
  () =>
    constrained(
      ncExtension({ permitted: [gn.dir("C=KR, O=Example")] }),
      [gn.dns(HOST)],
      "C=KR, O=Other",
    ),
  constraintFailure(),
  true,
);
rule(
  "directoryName permitted: a directoryName SAN outside is refused",
  () =>
    constrained(ncExtension({ permitted: [gn.dir("C=KR, O=Example")] }), [
      gn.dns(HOST),
      gn.dir("C=KR, O=Other"),
    ], "C=KR, O=Example"),
  constraintFailure(),
  true,
);
rule(
  "directoryName excluded: a subject inside is refused",
  () =>
    constrained(
      ncExtension({ excluded: [gn.dir("C=KR, O=Example")] }),
      [gn.dns(HOST)],
      "C=KR, O=Example, OU=Web",
    ),
  constraintFailure(),
  true,
);

// ---------------------------------------------------------------------------------------------
// The extension itself, unsupported forms, the budget

rule(
  "a critical constraint on a form qsign does not process, with such a name, is refused",
  () => constrained(ncExtension({ excluded: [gn.other()] }), [gn.dns(HOST), gn.other()]),
  constraintFailure(),
);
rule(
  "a constraint on an unprocessed form with no such name passes",
  () =>
    constrained(ncExtension({ permitted: [gn.dns("example.com")], excluded: [gn.other()] }), [
      gn.dns(HOST),
    ]),
  "valid",
);
rule(
  "name constraints not marked critical are refused",
  () =>
    constrained(ncExtension({ permitted: [gn.dns("example.com")] }, { critical: false }), [
      gn.dns(HOST),
    ]),
  constraintFailure(1),
);
rule(
  "name constraints with neither subtree list are refused",
  () => constrained(ncExtension({}), [gn.dns(HOST)]),
  constraintFailure(1),
);
rule(
  "name constraints with empty subtree lists are refused",
  () => constrained(ncExtension({ permitted: [], excluded: [] }), [gn.dns(HOST)]),
  constraintFailure(1),
);
rule(
  "a subtree with a maximum is refused",
  () =>
    constrained(
      ncExtension({ permitted: [subtree(gn.dns("example.com"), [Uint8Array.of(0x81, 1, 1)])] }, {
        subtrees: false,
      }),
      [gn.dns(HOST)],
    ),
  constraintFailure(1),
  true,
);
rule(
  "a dNSName constraint with a leading period is refused",
  () => constrained(ncExtension({ permitted: [gn.dns(".example.com")] }), [gn.dns(HOST)]),
  constraintFailure(1),
);
rule(
  "name constraints in the end-entity certificate are refused",
  async () => {
    const r = await root();
    const l = await make({
      subject: "O=Names Rules",
      issuer: r,
      alg: ALG,
      eku: [SERVER_AUTH],
      extensions: [
        sanExtension([gn.dns(HOST)]),
        ncExtension({ permitted: [gn.dns("example.com")] }),
      ],
    });
    return { root: r, intermediates: [], leaf: l };
  },
  constraintFailure(0),
);
rule(
  "constraint checks over the budget are refused as too expensive",
  () => {
    const subtrees = Array.from({ length: 40 }, (_, i) => gn.dns(`allowed${i}.example.com`));
    const sans = Array.from({ length: 30 }, (_, i) => gn.dns(`h${i}.allowed${i}.example.com`));
    ok(subtrees.length * sans.length > MAX_COMPARISONS_PER_PAIR);
    return constrained(ncExtension({ permitted: subtrees }), sans).then((c) => ({
      ...c,
      host: "h0.allowed0.example.com",
    }));
  },
  { reason: "name constraints too expensive", rule: RULES.nameConstraints, index: 0 },
);

// ---------------------------------------------------------------------------------------------
// Which certificates are constrained

rule(
  "a self-issued intermediate (key rollover) is exempt from constraints on its own names",
  async () => {
    const subject = `CN=Rollover CA ${++serial}`;
    const r = await root([ncExtension({ permitted: [gn.dns("example.com")] })], subject);
    const rollover = await ca(r, [sanExtension([gn.dns("not-example.org")])], subject);
    return { root: r, intermediates: [rollover], leaf: await leaf(rollover, [gn.dns(HOST)]) };
  },
  "valid",
);
rule(
  "an intermediate that is not self-issued is constrained",
  async () => {
    const r = await root([ncExtension({ permitted: [gn.dns("example.com")] })]);
    const c = await ca(r, [sanExtension([gn.dns("not-example.org")])]);
    return { root: r, intermediates: [c], leaf: await leaf(c, [gn.dns(HOST)]) };
  },
  constraintFailure(1),
  true,
);
rule(
  "constraints narrow down the path: a name the lower CA does not permit is refused",
  async () => {
    const r = await root();
    const wide = await ca(r, [
      ncExtension({ permitted: [gn.dns("leaf.example.com"), gn.dns("other.example.com")] }),
    ]);
    const narrow = await ca(wide, [ncExtension({ permitted: [gn.dns("other.example.com")] })]);
    return { root: r, intermediates: [narrow, wide], leaf: await leaf(narrow, [gn.dns(HOST)]) };
  },
  constraintFailure(0),
  true,
);

// ---------------------------------------------------------------------------------------------
// qsign pki issue makes only what these rules accept

Deno.test("issueLeaf adds the CN to the SANs, and refuses names the rules refuse", async () => {
  await using dir = await tempDir();
  await initPki({ dir: dir.path, alg: ALG });
  const trust = {
    trustAnchors: await readCertificatesFile(`${dir.path}/${PKI_FILES.rootCert}`),
    purpose: "server" as const,
  };
  const issued = await issueLeaf({
    dir: dir.path,
    profile: "server",
    cn: "renewed.example.com",
    sans: ["DNS:localhost", "IP:127.0.0.1"],
  });
  const [leafDer, caDer] = issued.chain;
  for (const host of ["renewed.example.com", "localhost", "127.0.0.1"]) {
    await verifyChain(leafDer, { ...trust, intermediates: [caDer], host });
  }
  for (
    const [options, why] of [
      [{ cn: "renewed.example.com", sans: ["DNS:*.com"] }, /public suffix/],
      [{ cn: "renewed.example.com", sans: ["DNS:under_score.example.com"] }, /not a host name/],
      [{ cn: "under_score.example.com" }, /not a host name/],
      [{ cn: "192.168.001.001" }, /not a host name/],
      [{ cn: "ops", sans: ["EMAIL:ops@a@example.com"] }, /mailbox/],
    ] as const
  ) {
    await rejects(
      issueLeaf({ dir: dir.path, profile: "server", ...options, sans: [...options.sans ?? []] }),
      (e: Error) => e instanceof UsageError && why.test(e.message),
    );
  }
});

// ---------------------------------------------------------------------------------------------
// OpenSSL agrees (runs last: tests run in file order)

Deno.test("OpenSSL 3.5 judges the same chains the same way", async () => {
  ok(forOpenSsl.length >= 30, `only ${forOpenSsl.length} chains recorded`);
  await using dir = await tempDir();
  const pem = (c: Issued) => pemEncode("CERTIFICATE", c.der);
  const cases = forOpenSsl.map(({ name, chain }) => ({
    name,
    chain: [pem(chain.leaf), ...chain.intermediates.map(pem)],
    key: privateKeyPem(chain.leaf.key as LoadedPrivateKey),
    root: pem(chain.root),
    host: chain.host ?? HOST,
  }));
  const file = `${dir.path}/cases.json`;
  await Deno.writeTextFile(file, JSON.stringify(cases));
  const script = new URL("./peer/chain_check.mjs", import.meta.url).pathname;
  const out = await new Deno.Command(PEER_NODE, {
    args: [script, file],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const results = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    name: string;
    authorized: boolean;
    error?: string;
  }[];
  equal(results.length, forOpenSsl.length);
  // Node names OpenSSL's name-constraint errors UNSPECIFIED, so the verdicts are compared; each
  // refused chain here has an accepted twin above that differs only in the name.
  const disagreements = results.filter((r, i) => r.authorized !== forOpenSsl[i].authorized)
    .map((r) => `${r.name}: OpenSSL ${r.authorized ? "accepted" : `refused (${r.error})`}`);
  equal(disagreements.join("\n"), "");
});
