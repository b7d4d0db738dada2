/**
 * The name rules of src/pki/names.ts on crafted certificates: subjectAltName syntax, wildcards
 * on public suffixes, the subject CN as a copy of a SAN, every form of name constraint, the
 * comparison budget, and RFC 6125 host matching.
 */
import "reflect-metadata";
import type * as x509 from "@peculiar/x509";
import { deepEqual, equal, match, ok } from "node:assert/strict";
import {
  altNamesWithCommonName,
  certificateMatchesHost,
  certificateMatchesIp,
  dnsNameMatches,
  endEntityNameViolation,
  issuanceNameProblem,
  MAX_COMPARISONS_PER_PAIR,
  type NameViolation,
  pathNameConstraintViolation,
  RULES,
} from "../../src/pki/names.ts";
import { CertificateView } from "../../src/pki/certificate_view.ts";
import { make } from "./helpers.ts";
import { gn, ncExtension, sanExtension, subtree } from "./name_support.ts";

const ALG = "ecdsa-p256" as const;

/** An end-entity certificate with exactly these subjectAltNames (none when `names` is empty). */
async function leaf(names: Uint8Array[], subject = "O=Names Test"): Promise<CertificateView> {
  const extensions = names.length ? [sanExtension(names)] : [];
  return CertificateView.parse((await make({ subject, alg: ALG, extensions })).der);
}

async function constrainingCa(
  constraint: x509.Extension,
  subject = "CN=Constraining CA",
): Promise<CertificateView> {
  return CertificateView.parse(
    (await make({ subject, alg: ALG, ca: {}, extensions: [constraint] })).der,
  );
}

/** The violation of `leafCert` under `caCert`, in a two-certificate path. */
function underCa(leafCert: CertificateView, caCert: CertificateView) {
  return pathNameConstraintViolation([
    { cert: leafCert, selfIssued: false },
    { cert: caCert, selfIssued: true },
  ]);
}

function isViolation(
  v: NameViolation | undefined,
  reason: NameViolation["reason"],
  rule: string,
  index: number,
  detail?: RegExp,
): void {
  ok(v, `expected a ${reason} violation`);
  equal(v.reason, reason, v.detail);
  equal(v.rule, rule, v.detail);
  equal(v.index, index, v.detail);
  if (detail) match(v.detail, detail);
}

// ---------------------------------------------------------------------------------------------
// subjectAltName syntax

Deno.test("valid subjectAltNames of every form pass", async () => {
  const cert = await leaf([
    gn.dns("leaf.example.test"),
    gn.dns("*.example.com"),
    gn.dns("*.example.co.uk"),
    gn.dns("localhost"),
    gn.dns("xn--bcher-kva.example"),
    gn.ip("192.0.2.1"),
    gn.ip("2001:db8::1"),
    gn.email("a*b@example.com"),
    gn.email('"quoted local"@example.com'),
    gn.uri("https://service.example.com:8443/path"),
    gn.dir("CN=Directory Name"),
    gn.other(),
  ]);
  equal(endEntityNameViolation(cert), undefined);
});

for (
  const [name, why] of [
    ["foo_bar.example.com", /not a host name/],
    ["foo..example.com", /not a host name/],
    [".example.com", /not a host name/],
    ["example.com.", /not a host name/],
    ["example.com/evil", /not a host name/],
    ["example.com\u0000.evil", /not a host name/],
    ["-leading.example.com", /not a host name/],
    ["example.123", /not a host name/],
    ["\u{1F61C}.example.com", /not ASCII/],
    ["ba*.example.com", /whole leftmost label/],
    ["foo.*.example.com", /whole leftmost label/],
    ["*.*.example.com", /after the wildcard/],
    ["xn--*-1b3c148a.example.com", /whole leftmost label/],
    ["*", /whole leftmost label/],
  ] as const
) {
  Deno.test(`dNSName SAN ${JSON.stringify(name)} is refused`, async () => {
    const v = endEntityNameViolation(await leaf([gn.dns("ok.example.com"), gn.dns(name)]));
    isViolation(v, "invalid name", RULES.subjectAltName, 0, why);
  });
}

// ICANN and private-section suffixes, and an unlisted TLD (the list's default rule "*").
for (const name of ["*.com", "*.co.uk", "*.github.io", "*.xn--p1ai", "*.localdomain"]) {
  Deno.test(`wildcard on the public suffix ${name} is refused`, async () => {
    const v = endEntityNameViolation(await leaf([gn.dns(name)]));
    isViolation(v, "invalid name", RULES.wildcardPublicSuffix, 0, /public suffix/);
  });
}

Deno.test("malformed iPAddress, rfc822Name and URI SANs are refused", async () => {
  for (
    const name of [
      gn.octets([192, 0, 2, 0, 255, 255, 255, 0]),
      gn.octets([10, 0, 0]),
      gn.email("invalid@address@example.com"),
      gn.email("@example.com"),
      gn.email("user@"),
      gn.email("user@exa_mple.com"),
      gn.uri("not a uri"),
    ]
  ) {
    const v = endEntityNameViolation(await leaf([name]));
    isViolation(v, "invalid name", RULES.subjectAltName, 0);
  }
});

// ---------------------------------------------------------------------------------------------
// Subject CN (CA/B Forum BR 7.1.4.3)

for (
  const [cn, san, valid] of [
    ["example.com", gn.dns("example.com"), true],
    ["*.example.com", gn.dns("*.example.com"), true],
    ["192.168.1.1", gn.ip("192.168.1.1"), true],
    ["2001:db8::1:0:0:1", gn.ip("2001:db8::1:0:0:1"), true],
    // RFC 5952 §4.2.2: one zero group is not shortened.
    ["2001:db8:0:1:1:1:1:1", gn.ip("2001:db8:0:1:1:1:1:1"), true],
    ["Example.COM", gn.dns("example.com"), false],
    ["0xC0A80101", gn.ip("192.168.1.1"), false],
    ["192.168.001.001", gn.ip("192.168.1.1"), false],
    ["2001:DB8::8A2E:370:7334", gn.ip("2001:db8::8a2e:370:7334"), false],
    ["2001:0db8:0000:0000:0000:0000:0000:0001", gn.ip("2001:db8::1"), false],
    ["2001:db8:0:0:1:0:0:1", gn.ip("2001:db8::1:0:0:1"), false],
    ["2001:db8::1:1:1:1:1", gn.ip("2001:db8:0:1:1:1:1:1"), false],
    ["test-\u6e2c\u8a66.com", gn.dns("xn--test--wg5h0h.com"), false],
    ["xn--nxasmq6b.com", gn.dns("xn--n3h.com"), false],
    ["notinsan.example.com", gn.dns("valid.example.com"), false],
  ] as const
) {
  Deno.test(`subject CN ${JSON.stringify(cn)} ${valid ? "is" : "is not"} a copy of its SAN`, async () => {
    const v = endEntityNameViolation(await leaf([san], `CN=${cn}`));
    if (valid) equal(v, undefined, v?.detail);
    else isViolation(v, "invalid name", RULES.commonName, 0, /character-for-character/);
  });
}

Deno.test("a CN without any subjectAltName, and two CNs, are refused", async () => {
  isViolation(
    endEntityNameViolation(await leaf([], "CN=example.com")),
    "invalid name",
    RULES.commonName,
    0,
    /\(none\)/,
  );
  isViolation(
    endEntityNameViolation(await leaf([gn.dns("a.example")], "CN=a.example+CN=b.example")),
    "invalid name",
    RULES.commonName,
    0,
    /2 CNs/,
  );
  equal(endEntityNameViolation(await leaf([gn.dns("a.example")], "O=No CN")), undefined);
});

Deno.test("a descriptive CN that names no host or address is not held to the SANs", async () => {
  for (const cn of ["alice", "Payments Service", "x509-test-ee"]) {
    const v = endEntityNameViolation(
      await leaf([gn.dns("a.example"), gn.email("a@a.example")], `CN=${cn}`),
    );
    equal(v, undefined, v?.detail);
  }
  // Numbers are IPv4 addresses in inet_aton's forms: held to the SANs.
  for (const cn of ["3232235777", "0xc0a80101"]) {
    const v = endEntityNameViolation(await leaf([gn.ip("192.168.1.1")], `CN=${cn}`));
    isViolation(v, "invalid name", RULES.commonName, 0);
  }
});

Deno.test("issuance adds a host or address CN to the SANs that do not hold it", () => {
  deepEqual(altNamesWithCommonName("a.example", [{ type: "dns", value: "localhost" }]), [
    { type: "dns", value: "a.example" },
    { type: "dns", value: "localhost" },
  ]);
  deepEqual(altNamesWithCommonName("2001:db8::1", []), [{ type: "ip", value: "2001:db8::1" }]);
  deepEqual(altNamesWithCommonName("a.example", [{ type: "dns", value: "a.example" }]), [
    { type: "dns", value: "a.example" },
  ]);
  deepEqual(altNamesWithCommonName("alice", [{ type: "email", value: "alice@a.example" }]), [
    { type: "email", value: "alice@a.example" },
  ]);
  // Added as it is: the rules then refuse what is not a valid name.
  const odd = altNamesWithCommonName("192.168.001.001", []);
  deepEqual(odd, [{ type: "dns", value: "192.168.001.001" }]);
  match(issuanceNameProblem("192.168.001.001", odd)!, /not a host name/);
});

Deno.test("issuance refuses what the verifier refuses, in the operator's words", () => {
  equal(issuanceNameProblem("a.example", [{ type: "dns", value: "a.example" }]), undefined);
  equal(issuanceNameProblem("::1", [{ type: "ip", value: "::1" }]), undefined);
  match(issuanceNameProblem("alice.example", [])!, /must be a copy/);
  equal(
    issuanceNameProblem("Alice Smith", [{ type: "email", value: "alice@example.test" }]),
    undefined,
  );
  match(issuanceNameProblem(undefined, [{ type: "dns", value: "*.com" }])!, /public suffix/);
  match(issuanceNameProblem(undefined, [{ type: "dns", value: "a_b.example" }])!, /host name/);
  match(issuanceNameProblem(undefined, [{ type: "email", value: "a@b@c.example" }])!, /mailbox/);
});

// ---------------------------------------------------------------------------------------------
// Name constraints: the extension itself

Deno.test("name constraints in an end-entity certificate are refused", async () => {
  const ee = (await make({
    subject: "O=Names Test",
    alg: ALG,
    extensions: [
      sanExtension([gn.dns("example.com")]),
      ncExtension({ permitted: [gn.dns("example.com")] }),
    ],
  })).der;
  const ca = (await make({ subject: "CN=Plain CA", alg: ALG, ca: {} })).der;
  isViolation(
    underCa(CertificateView.parse(ee), CertificateView.parse(ca)),
    "name constraints",
    RULES.nameConstraints,
    0,
    /end-entity/,
  );
});

for (
  const [label, extension, why] of [
    [
      "not critical",
      ncExtension({ permitted: [gn.dns("example.com")] }, { critical: false }),
      /not critical/,
    ],
    ["with neither list", ncExtension({}), /neither/],
    ["with an empty permitted list", ncExtension({ permitted: [] }), /empty permitted/],
    ["with both lists empty", ncExtension({ permitted: [], excluded: [] }), /empty permitted/],
    [
      "with a minimum of 1",
      ncExtension({ permitted: [subtree(gn.dns("example.com"), [Uint8Array.of(0x80, 1, 1)])] }, {
        subtrees: false,
      }),
      /minimum or maximum/,
    ],
    [
      "with a maximum",
      ncExtension({ excluded: [subtree(gn.dns("example.com"), [Uint8Array.of(0x81, 1, 2)])] }, {
        subtrees: false,
      }),
      /minimum or maximum/,
    ],
    [
      "with a leading-period dNSName",
      ncExtension({ permitted: [gn.dns(".example.com")] }),
      /not a host name/,
    ],
    [
      "with a wildcard dNSName",
      ncExtension({ permitted: [gn.dns("*.example.com")] }),
      /not a host name/,
    ],
    [
      "with a 4-octet iPAddress",
      ncExtension({ permitted: [gn.octets([127, 0, 0, 1])] }),
      /8 or 32/,
    ],
    [
      "with a non-CIDR mask",
      ncExtension({ excluded: [gn.octets([10, 0, 0, 0, 255, 0, 255, 0])] }),
      /CIDR/,
    ],
    [
      "with a malformed mailbox",
      ncExtension({ permitted: [gn.email("invalid@invalid@example.com")] }),
      /mailbox/,
    ],
    [
      "with a malformed URI host",
      ncExtension({ permitted: [gn.uri("https://example.com/")] }),
      /host/,
    ],
  ] as const
) {
  Deno.test(`name constraints ${label} are refused`, async () => {
    const ca = await constrainingCa(extension);
    const ee = await leaf([gn.dns("foo.example.com")]);
    isViolation(underCa(ee, ca), "name constraints", RULES.nameConstraints, 1, why);
  });
}

// ---------------------------------------------------------------------------------------------
// Name constraints: each form, permitted and excluded

interface FormCase {
  label: string;
  constraint: { permitted?: Uint8Array[]; excluded?: Uint8Array[] };
  names: Uint8Array[];
  subject?: string;
  allowed: boolean;
}

const FORM_CASES: FormCase[] = [
  // dNSName
  {
    label: "dNSName permitted, same name",
    constraint: { permitted: [gn.dns("example.com")] },
    names: [gn.dns("example.com")],
    allowed: true,
  },
  {
    label: "dNSName permitted, labels added",
    constraint: { permitted: [gn.dns("example.com")] },
    names: [gn.dns("foo.bar.EXAMPLE.com")],
    allowed: true,
  },
  {
    label: "dNSName permitted, another name",
    constraint: { permitted: [gn.dns("example.com")] },
    names: [gn.dns("not-example.com")],
    allowed: false,
  },
  {
    label: "dNSName permitted, not on a label boundary",
    constraint: { permitted: [gn.dns("example.com")] },
    names: [gn.dns("fooexample.com")],
    allowed: false,
  },
  {
    label: "dNSName excluded, second SAN",
    constraint: { excluded: [gn.dns("bad.example.com")] },
    names: [gn.dns("example.com"), gn.dns("bad.example.com")],
    allowed: false,
  },
  {
    label: "dNSName excluded and permitted: excluded wins",
    constraint: { permitted: [gn.dns("example.com")], excluded: [gn.dns("example.com")] },
    names: [gn.dns("example.com")],
    allowed: false,
  },
  {
    label: "dNSName empty constraint permits every name",
    constraint: { permitted: [gn.dns("")] },
    names: [gn.dns("anything.example")],
    allowed: true,
  },
  {
    label: "wildcard inside a permitted subtree",
    constraint: { permitted: [gn.dns("example.com")] },
    names: [gn.dns("*.example.com")],
    allowed: true,
  },
  {
    label: "wildcard wider than the permitted subtree (CVE-2025-61727)",
    constraint: { permitted: [gn.dns("foo.example.com")] },
    names: [gn.dns("*.example.com")],
    allowed: false,
  },
  {
    label: "wildcard that can match an excluded name (CVE-2025-61727)",
    constraint: { permitted: [gn.dns("example.com")], excluded: [gn.dns("bar.example.com")] },
    names: [gn.dns("*.example.com")],
    allowed: false,
  },
  {
    label: "wildcard that cannot reach a deeper excluded name",
    constraint: { excluded: [gn.dns("x.bar.example.com")] },
    names: [gn.dns("*.example.com")],
    allowed: true,
  },
  {
    label: "malformed dNSName under a dNSName constraint",
    constraint: { permitted: [gn.dns("example.com")] },
    names: [gn.dns(".example.com")],
    allowed: false,
  },
  {
    label: "other form only constrained",
    constraint: { permitted: [gn.ip("192.0.2.0/24")] },
    names: [gn.dns("example.com")],
    allowed: true,
  },
  {
    label: "excluded other form",
    constraint: { excluded: [gn.ip("192.0.2.0/24")] },
    names: [gn.dns("example.com")],
    allowed: true,
  },
  // iPAddress
  {
    label: "IPv4 permitted, inside",
    constraint: { permitted: [gn.ip("192.0.2.0/24")] },
    names: [gn.ip("192.0.2.1")],
    allowed: true,
  },
  {
    label: "IPv4 permitted, outside",
    constraint: { permitted: [gn.ip("192.0.2.0/24")] },
    names: [gn.ip("192.0.3.1")],
    allowed: false,
  },
  {
    label: "IPv4 excluded",
    constraint: { excluded: [gn.ip("192.0.2.0/24")] },
    names: [gn.ip("192.0.2.1")],
    allowed: false,
  },
  {
    label: "IPv6 permitted, inside",
    constraint: { permitted: [gn.ip("2001:db8::/32")] },
    names: [gn.ip("2001:db8::42")],
    allowed: true,
  },
  {
    label: "IPv6 excluded",
    constraint: { excluded: [gn.ip("::1/128")] },
    names: [gn.ip("::1")],
    allowed: false,
  },
  {
    label: "IPv4 address under IPv6-only permitted subtrees",
    constraint: { permitted: [gn.ip("::/0")] },
    names: [gn.ip("10.0.0.1")],
    allowed: false,
  },
  {
    label: "malformed iPAddress under a constraint",
    constraint: { permitted: [gn.ip("192.0.2.0/24")] },
    names: [gn.octets([192, 0, 2, 0, 255, 255, 255, 0])],
    allowed: false,
  },
  // rfc822Name
  {
    label: "rfc822 mailbox permitted, exact",
    constraint: { permitted: [gn.email("foo@example.com")] },
    names: [gn.email("foo@EXAMPLE.com")],
    allowed: true,
  },
  {
    label: "rfc822 mailbox permitted, local part differs in case",
    constraint: { permitted: [gn.email("foo@example.com")] },
    names: [gn.email("Foo@example.com")],
    allowed: false,
  },
  {
    label: "rfc822 host permitted",
    constraint: { permitted: [gn.email("example.com")] },
    names: [gn.email("foo@example.com")],
    allowed: true,
  },
  {
    label: "rfc822 host does not cover subdomains",
    constraint: { permitted: [gn.email("example.com")] },
    names: [gn.email("foo@mail.example.com")],
    allowed: false,
  },
  {
    label: "rfc822 domain permitted",
    constraint: { permitted: [gn.email(".example.com")] },
    names: [gn.email("foo@mail.example.com")],
    allowed: true,
  },
  {
    label: "rfc822 domain does not cover the host itself",
    constraint: { permitted: [gn.email(".example.com")] },
    names: [gn.email("foo@example.com")],
    allowed: false,
  },
  {
    label: "rfc822 literal * in the constraint's local part",
    constraint: { permitted: [gn.email("*@example.com")] },
    names: [gn.email("foo@example.com")],
    allowed: false,
  },
  {
    label: "rfc822 literal * in the SAN's local part, exact",
    constraint: { permitted: [gn.email("*@example.com")] },
    names: [gn.email("*@example.com")],
    allowed: true,
  },
  {
    label: "rfc822 literal * in the SAN's local part, host form",
    constraint: { permitted: [gn.email("example.com")] },
    names: [gn.email("*@example.com")],
    allowed: true,
  },
  {
    label: "rfc822 excluded host",
    constraint: { excluded: [gn.email("example.com")] },
    names: [gn.email("foo@example.com")],
    allowed: false,
  },
  {
    label: "rfc822 malformed SAN under a constraint",
    constraint: { permitted: [gn.email("example.com")] },
    names: [gn.email("good@example.com"), gn.email("invalid@address@example.com")],
    allowed: false,
  },
  {
    label: "subject emailAddress counts as an rfc822Name",
    constraint: { permitted: [gn.email("example.com")] },
    names: [gn.dns("example.com")],
    subject: "O=Names Test, E=someone@elsewhere.example",
    allowed: false,
  },
  {
    label: "subject emailAddress inside the subtree",
    constraint: { permitted: [gn.email("example.com")] },
    names: [gn.dns("example.com")],
    subject: "O=Names Test, E=someone@example.com",
    allowed: true,
  },
  // URI
  {
    label: "URI host permitted",
    constraint: { permitted: [gn.uri("example.com")] },
    names: [gn.uri("https://user@EXAMPLE.com:8443/x?y#z")],
    allowed: true,
  },
  {
    label: "URI host does not cover subdomains",
    constraint: { permitted: [gn.uri("example.com")] },
    names: [gn.uri("https://www.example.com/")],
    allowed: false,
  },
  {
    label: "URI domain permitted",
    constraint: { permitted: [gn.uri(".example.com")] },
    names: [gn.uri("https://www.example.com/")],
    allowed: true,
  },
  {
    label: "URI domain does not cover the host itself",
    constraint: { permitted: [gn.uri(".example.com")] },
    names: [gn.uri("https://example.com/")],
    allowed: false,
  },
  {
    label: "URI excluded",
    constraint: { excluded: [gn.uri(".example.com")] },
    names: [gn.uri("spiffe://a.example.com/workload")],
    allowed: false,
  },
  {
    label: "URI with an IP host under a URI constraint",
    constraint: { excluded: [gn.uri("example.com")] },
    names: [gn.uri("https://192.0.2.1/")],
    allowed: false,
  },
  {
    label: "URI without an authority under a URI constraint",
    constraint: { permitted: [gn.uri("example.com")] },
    names: [gn.uri("urn:example:thing")],
    allowed: false,
  },
  // directoryName
  {
    label: "directoryName permitted, subject below the prefix",
    constraint: { permitted: [gn.dir("C=KR, O=Example")] },
    names: [gn.dns("example.com")],
    subject: "C=KR, O=Example, CN=example.com",
    allowed: true,
  },
  {
    label: "directoryName permitted, compared without case or extra spaces",
    constraint: { permitted: [gn.dir("C=KR, O=Example  Corp")] },
    names: [gn.dns("example.com")],
    subject: "C=kr, O=EXAMPLE Corp, CN=example.com",
    allowed: true,
  },
  {
    label: "directoryName permitted, subject outside",
    constraint: { permitted: [gn.dir("C=KR, O=Example")] },
    names: [gn.dns("example.com")],
    subject: "C=KR, O=Other, CN=example.com",
    allowed: false,
  },
  {
    label: "directoryName permitted, prefix order matters",
    constraint: { permitted: [gn.dir("C=KR, O=Example")] },
    names: [gn.dns("example.com")],
    subject: "O=Example, C=KR",
    allowed: false,
  },
  {
    label: "directoryName permitted, SAN outside while the subject is inside",
    constraint: { permitted: [gn.dir("CN=foo")] },
    names: [gn.dir("CN=not-foo")],
    subject: "CN=foo",
    allowed: false,
  },
  {
    label: "directoryName permitted, subject outside while the SAN is inside",
    constraint: { permitted: [gn.dir("CN=foo")] },
    names: [gn.dir("CN=foo")],
    subject: "CN=not-foo",
    allowed: false,
  },
  {
    label: "directoryName excluded subject",
    constraint: { excluded: [gn.dir("CN=foo")] },
    names: [gn.dir("CN=not-foo")],
    subject: "CN=foo",
    allowed: false,
  },
  // Forms qsign does not process
  {
    label: "excluded otherName with an otherName SAN",
    constraint: { permitted: [gn.dns("example.com")], excluded: [gn.other()] },
    names: [gn.dns("example.com"), gn.other()],
    allowed: false,
  },
  {
    label: "excluded otherName without an otherName SAN",
    constraint: { permitted: [gn.dns("example.com")], excluded: [gn.other()] },
    names: [gn.dns("example.com")],
    allowed: true,
  },
];

for (const c of FORM_CASES) {
  Deno.test(`name constraints: ${c.label} ${c.allowed ? "passes" : "is refused"}`, async () => {
    const ca = await constrainingCa(ncExtension(c.constraint));
    const v = underCa(await leaf(c.names, c.subject), ca);
    if (c.allowed) equal(v, undefined, v?.detail);
    else isViolation(v, "name constraints", RULES.nameConstraints, 0);
  });
}

// ---------------------------------------------------------------------------------------------
// Which certificates are constrained, and the budget

Deno.test("self-issued intermediates are exempt, the leaf and other intermediates are not", async () => {
  const ca = await constrainingCa(ncExtension({ permitted: [gn.dns("example.com")] }));
  const outside = await leaf([gn.dns("not-example.com")], "CN=Rollover CA");
  const inside = await leaf([gn.dns("www.example.com")]);
  equal(
    pathNameConstraintViolation([
      { cert: inside, selfIssued: false },
      { cert: outside, selfIssued: true },
      { cert: ca, selfIssued: true },
    ]),
    undefined,
  );
  isViolation(
    pathNameConstraintViolation([
      { cert: inside, selfIssued: false },
      { cert: outside, selfIssued: false },
      { cert: ca, selfIssued: true },
    ]),
    "name constraints",
    RULES.nameConstraints,
    1,
  );
  isViolation(
    pathNameConstraintViolation([{ cert: outside, selfIssued: true }, {
      cert: ca,
      selfIssued: true,
    }]),
    "name constraints",
    RULES.nameConstraints,
    0,
  );
});

Deno.test("constraints of every CA apply: a narrower one below a wider one", async () => {
  const wide = await constrainingCa(
    ncExtension({ permitted: [gn.dns("foo.example.com"), gn.dns("bar.example.com")] }),
  );
  const narrow = await constrainingCa(ncExtension({ permitted: [gn.dns("bar.example.com")] }));
  const ee = await leaf([gn.dns("foo.example.com")]);
  isViolation(
    pathNameConstraintViolation([
      { cert: ee, selfIssued: false },
      { cert: narrow, selfIssued: false },
      { cert: wide, selfIssued: true },
    ]),
    "name constraints",
    RULES.nameConstraints,
    0,
    /not permitted/,
  );
});

Deno.test("name-constraint work over the budget is refused as too expensive", async () => {
  const subtrees = Array.from({ length: 40 }, (_, i) => gn.dns(`allowed${i}.example.com`));
  const ca = await constrainingCa(ncExtension({ permitted: subtrees }));
  const sans = Array.from({ length: 30 }, (_, i) => gn.dns(`allowed${i}.example.com`));
  ok(30 * 40 > MAX_COMPARISONS_PER_PAIR);
  isViolation(
    underCa(await leaf(sans), ca),
    "name constraints too expensive",
    RULES.nameConstraints,
    0,
    /too expensive/,
  );
  // Within the budget the same names pass.
  equal(underCa(await leaf(sans.slice(0, 20)), ca), undefined);
  // Names of forms the CA does not constrain cost nothing.
  const ips = Array.from({ length: 60 }, (_, i) => gn.ip(`10.0.0.${i}`));
  equal(underCa(await leaf([gn.dns("allowed1.example.com"), ...ips]), ca), undefined);
});

Deno.test("the budget also bounds the whole path", async () => {
  const subtrees = Array.from({ length: 30 }, (_, i) => gn.dns(`allowed${i}.example.com`));
  const cas = await Promise.all(
    Array.from({ length: 6 }, () => constrainingCa(ncExtension({ permitted: subtrees }))),
  );
  const ee = await leaf(Array.from({ length: 30 }, (_, i) => gn.dns(`allowed${i}.example.com`)));
  // 900 comparisons per pair, under the pair budget; 6 pairs exceed the path budget.
  const v = pathNameConstraintViolation([
    { cert: ee, selfIssued: false },
    ...cas.map((cert) => ({ cert, selfIssued: true })),
  ]);
  isViolation(v, "name constraints too expensive", RULES.nameConstraints, 0, /for the path/);
});

// ---------------------------------------------------------------------------------------------
// RFC 6125 host matching

Deno.test("host matching: exact, wildcard for one label, no partial or public-suffix wildcards", async () => {
  const cert = await leaf([
    gn.dns("Exact.Example.test"),
    gn.dns("*.wild.example.test"),
    gn.dns("xn--bcher-kva.example"),
    gn.dns("f*.partial.example"),
    gn.dns("*.co.uk"),
    gn.ip("10.1.2.3"),
    gn.ip("fd00::1"),
  ]);
  ok(certificateMatchesHost(cert, "exact.example.test"));
  ok(certificateMatchesHost(cert, "EXACT.EXAMPLE.TEST."));
  ok(certificateMatchesHost(cert, "a.wild.example.test"));
  ok(!certificateMatchesHost(cert, "wild.example.test"));
  ok(!certificateMatchesHost(cert, "a.b.wild.example.test"));
  ok(!certificateMatchesHost(cert, "foo.partial.example"));
  ok(!certificateMatchesHost(cert, "example.co.uk"));
  ok(certificateMatchesHost(cert, "XN--BCHER-KVA.example"));
  ok(certificateMatchesHost(cert, "b\u00fccher.example"));
  ok(certificateMatchesHost(cert, "10.1.2.3"));
  ok(certificateMatchesHost(cert, "[fd00:0::1]"));
  ok(certificateMatchesIp(cert, "fd00:0:0::1"));
  ok(!certificateMatchesIp(cert, "10.1.2.4"));
  ok(!certificateMatchesHost(cert, "10.1.2.4"));
  equal(dnsNameMatches("*.example.com", "x.example.com"), true);
  equal(dnsNameMatches("*.com", "example.com"), false);
  equal(dnsNameMatches("*oo.example.com", "foo.example.com"), false);
});
