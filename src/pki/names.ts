/**
 * The name rules of path validation:
 * - the syntax of an end-entity certificate's subjectAltName entries (host names, wildcards,
 *   mailboxes, IP addresses), wildcards on a public suffix, and the subject CN as a copy of one
 *   of them (RFC 5280 §4.2.1.6, CA/B Forum BR 3.2.2.6 and 7.1.4.3);
 * - RFC 5280 §4.2.1.10 name constraints of every form qsign processes (dNSName, iPAddress,
 *   rfc822Name, URI, directoryName), permitted and excluded, with a bounded amount of work;
 * - RFC 6125 matching of a reference host or IP address against the subjectAltName.
 *
 * Names are read from the certificate's DER (CertificateView's subject and subjectAltName, the
 * NameConstraints extension value) as they are encoded, not from JSON forms that would turn
 * iPAddress octets into CIDR text and non-string attribute values into empty strings: a malformed
 * name must be seen as it is to be refused.
 *
 * The checks return `NameViolation`s (the rule, what is wrong, which certificate of the path),
 * which the verifier turns into its errors.
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { getPublicSuffix } from "tldts";
import { children, concatBytes, DerError, encodeTlv, readTlv, type Tlv } from "../crypto/der.ts";
import { normalizeIp } from "./certificate.ts";
import {
  type CertificateView,
  type GeneralName,
  type GeneralNameForm as Form,
  type ParsedName,
  parseGeneralName,
} from "./certificate_view.ts";

export const NAME_CONSTRAINTS_OID = "2.5.29.30";

export const RULES = {
  subjectAltName: "RFC 5280 §4.2.1.6",
  nameConstraints: "RFC 5280 §4.2.1.10",
  wildcardPublicSuffix: "CA/B Forum BR 3.2.2.6",
  commonName: "CA/B Forum BR 7.1.4.3",
} as const;

/** What the verifier reports for a failed name rule (members of its ChainFailureReason). */
export type NameFailureReason =
  | "invalid name"
  | "name constraints"
  | "name constraints too expensive";

/** One broken name rule. */
export interface NameViolation {
  reason: NameFailureReason;
  /** The RFC or CA/B Forum section. */
  rule: string;
  detail: string;
  /** Position in the path (0 = the leaf) of the certificate the failure is about. */
  index: number;
}

/** A certificate of a path as the name checks need it. */
export interface PathCertificate {
  readonly cert: CertificateView;
  /** Subject and issuer are the same name (RFC 5280 §6.1: exempt from name constraints). */
  readonly selfIssued: boolean;
}

/** Most name-to-subtree comparisons for one constraining CA and one certificate below it. */
export const MAX_COMPARISONS_PER_PAIR = 1024;
/** Most name-to-subtree comparisons over a whole path. */
export const MAX_COMPARISONS_PER_PATH = 4096;

// ---------------------------------------------------------------------------------------------
// General names

/** A GeneralName for messages, in OpenSSL's `TYPE:value` style. */
function describe(name: GeneralName): string {
  switch (name.form) {
    case "dNSName":
      return `DNS:${JSON.stringify(name.text)}`;
    case "rfc822Name":
      return `email:${JSON.stringify(name.text)}`;
    case "uniformResourceIdentifier":
      return `URI:${JSON.stringify(name.text)}`;
    case "iPAddress":
      return `IP:${ipText(name.octets) ?? `(${name.octets.length} octets)`}`;
    case "directoryName":
      return `DirName:${JSON.stringify(name.text)}`;
    default:
      return name.form;
  }
}

// ---------------------------------------------------------------------------------------------
// Distinguished names

const OID_COMMON_NAME = "2.5.4.3";
const OID_EMAIL_ADDRESS = "1.2.840.113549.1.9.1";

// ---------------------------------------------------------------------------------------------
// The names of one certificate

interface CertificateNames {
  /** The subject DN, normalized RDNs (empty for an empty subject). */
  subject: ParsedName;
  /** The subjectAltName entries; undefined without the extension. */
  altNames?: GeneralName[];
}

const namesCache = new WeakMap<CertificateView, CertificateNames | Error>();

/** The subject and subjectAltName of `cert`, or the DerError that stops reading them. */
function namesOf(cert: CertificateView): CertificateNames | Error {
  let names = namesCache.get(cert);
  if (!names) {
    try {
      names = { subject: cert.subjectName, altNames: cert.subjectAltName };
    } catch (e) {
      names = e instanceof Error ? e : new Error(String(e));
    }
    namesCache.set(cert, names);
  }
  return names;
}

/** The names name constraints apply to: subject DN, subject emailAddress, subjectAltName. */
function constrainedNames(names: CertificateNames): GeneralName[] {
  const out: GeneralName[] = [];
  if (names.subject.rdns.length) {
    out.push({ form: "directoryName", rdns: names.subject.rdns, text: names.subject.text });
  }
  // RFC 5280 §4.2.1.10: emailAddress attributes of the subject are constrained as rfc822Names.
  for (const { oid, value } of names.subject.attributes) {
    if (oid === OID_EMAIL_ADDRESS) out.push({ form: "rfc822Name", text: value ?? "" });
  }
  out.push(...names.altNames ?? []);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Syntax of presented names

/** An LDH host name: ASCII labels of letters, digits and inner hyphens, not all-numeric last. */
export function isHostName(name: string): boolean {
  if (name.length === 0 || name.length > 253) return false;
  const labels = name.split(".");
  return labels.every((l) => /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i.test(l)) &&
    !/^[0-9]+$/.test(labels[labels.length - 1]);
}

/** Why a presented dNSName is not a host name or a wildcard of the allowed form, if it is not. */
export function dnsNameProblem(name: string): { rule: string; problem: string } | undefined {
  const syntax = (problem: string) => ({ rule: RULES.subjectAltName, problem });
  if (name.startsWith("*.")) {
    const base = name.slice(2);
    if (!isHostName(base)) return syntax("the part after the wildcard is not a host name");
    if (isPublicSuffix(base)) {
      return {
        rule: RULES.wildcardPublicSuffix,
        problem: `the wildcard covers the public suffix "${base}"`,
      };
    }
    return base.includes(".") ? undefined : syntax("a wildcard needs at least two labels after it");
  }
  if (name.includes("*")) return syntax("a wildcard may only be the whole leftmost label");
  if (!isHostName(name)) {
    return syntax(
      /[\u0080-\uffff]/.test(name)
        ? "not ASCII (an internationalized name must be its A-label)"
        : "not a host name (letters, digits and inner hyphens in non-empty labels)",
    );
  }
  return undefined;
}

/** True when `domain` is a suffix of the Public Suffix List (ICANN or private section). */
function isPublicSuffix(domain: string): boolean {
  const lower = domain.toLowerCase();
  return getPublicSuffix(lower, { allowPrivateDomains: true }) === lower;
}

const ATEXT = "[a-z0-9!#$%&'*+/=?^_`{|}~-]";
const DOT_ATOM = new RegExp(`^${ATEXT}+(\\.${ATEXT}+)*$`, "i");
const QUOTED_STRING = /^"([\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"$/;

/** An RFC 5322 addr-spec with a host-name domain: `local@host`; `*` is an ordinary atext. */
function parseMailbox(text: string): { local: string; host: string } | undefined {
  const at = text.lastIndexOf("@");
  if (at <= 0) return undefined;
  const local = text.slice(0, at);
  const host = text.slice(at + 1);
  if (!(DOT_ATOM.test(local) || QUOTED_STRING.test(local)) || !isHostName(host)) return undefined;
  return { local, host };
}

/** The problem with one subjectAltName entry of an end-entity certificate, if any. */
function altNameProblem(name: GeneralName): { rule: string; problem: string } | undefined {
  const syntax = (problem: string) => ({ rule: RULES.subjectAltName, problem });
  switch (name.form) {
    case "dNSName":
      return dnsNameProblem(name.text);
    case "rfc822Name":
      return parseMailbox(name.text) ? undefined : syntax("not a mailbox (local@host)");
    case "iPAddress":
      return name.octets.length === 4 || name.octets.length === 16
        ? undefined
        : syntax(`an address is 4 or 16 octets, not ${name.octets.length}`);
    case "uniformResourceIdentifier":
      return /^[a-z][a-z0-9+.-]*:[\x21-\x7e]+$/i.test(name.text)
        ? undefined
        : syntax("not an absolute URI");
    default:
      return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// End-entity names

/**
 * Whether a CN value names a host or an address, the values BR 7.1.4.3 speaks of: dotted or
 * colon-separated text, or a number (an IPv4 address in inet_aton's integer or hex forms). A
 * descriptive CN (`alice`, `Payments Service`) identifies no host and is left alone: qsign
 * matches hosts against subjectAltNames only. A CN that is not a string is checked (and fails).
 */
function namesAHost(cn: string | undefined): boolean {
  return cn === undefined || /[.:]/.test(cn) || /^(0x[0-9a-f]*|[0-9]+)$/i.test(cn);
}

/**
 * The first broken name rule of an end-entity certificate: a malformed subjectAltName entry, a
 * wildcard on a public suffix, more than one CN, or a CN naming a host or address that is not a
 * character-for-character copy of a dNSName or of an iPAddress in its canonical text (RFC 3986
 * dotted decimal, RFC 5952).
 */
export function endEntityNameViolation(
  cert: CertificateView,
  index = 0,
): NameViolation | undefined {
  const violation = (rule: string, detail: string): NameViolation => ({
    reason: "invalid name",
    rule,
    detail: `${cert.subject || "(empty subject)"}: ${detail}`,
    index,
  });
  const names = namesOf(cert);
  if (names instanceof Error) {
    return violation(RULES.subjectAltName, `its names cannot be read (${names.message})`);
  }
  for (const name of names.altNames ?? []) {
    const problem = altNameProblem(name);
    if (problem) return violation(problem.rule, `${describe(name)} is invalid: ${problem.problem}`);
  }
  const cns = names.subject.attributes.filter((a) => a.oid === OID_COMMON_NAME);
  if (cns.length > 1) return violation(RULES.commonName, `the subject has ${cns.length} CNs`);
  if (cns.length === 1 && namesAHost(cns[0].value)) {
    const cn = cns[0].value;
    const copies = (names.altNames ?? []).flatMap((n) =>
      n.form === "dNSName" ? [n.text] : n.form === "iPAddress" ? [ipText(n.octets) ?? ""] : []
    );
    if (cn === undefined || !copies.includes(cn)) {
      return violation(
        RULES.commonName,
        `subject CN ${
          JSON.stringify(cn ?? "(not a string)")
        } is not a character-for-character copy of a DNS or IP subjectAltName` +
          (copies.length ? ` (${copies.map((c) => JSON.stringify(c)).join(", ")})` : " (none)"),
      );
    }
  }
  return undefined;
}

/** The texts a CN may copy: the dNSName values and the iPAddresses in canonical text. */
function commonNameCopies(altNames: readonly x509.JsonGeneralName[]): string[] {
  return altNames.flatMap((n) =>
    n.type === "dns" ? [n.value] : n.type === "ip" ? [canonicalIpText(n.value) ?? ""] : []
  );
}

/**
 * The subjectAltNames to issue a certificate for `cn` with: `altNames`, preceded by the CN
 * itself (an iPAddress when it is an address in canonical text, else a dNSName) when it names a
 * host or address that none of them copies, so the CN is always one of the SANs.
 */
export function altNamesWithCommonName(
  cn: string | undefined,
  altNames: readonly x509.JsonGeneralName[],
): x509.JsonGeneralName[] {
  if (cn === undefined || !namesAHost(cn) || commonNameCopies(altNames).includes(cn)) {
    return [...altNames];
  }
  return [{ type: canonicalIpText(cn) === cn ? "ip" : "dns", value: cn }, ...altNames];
}

/**
 * The same rules for a certificate about to be issued: the problem with `cn` and `altNames`,
 * in words for the operator, or undefined.
 */
export function issuanceNameProblem(
  cn: string | undefined,
  altNames: readonly x509.JsonGeneralName[],
): string | undefined {
  for (const name of altNames) {
    const problem = name.type === "dns"
      ? dnsNameProblem(name.value)
      : name.type === "email" && !parseMailbox(name.value)
      ? { rule: RULES.subjectAltName, problem: "not a mailbox (local@host)" }
      : undefined;
    if (problem) {
      return `${name.type.toUpperCase()}:${name.value}: ${problem.problem} (${problem.rule})`;
    }
  }
  if (cn === undefined || !namesAHost(cn)) return undefined;
  const copies = commonNameCopies(altNames);
  return copies.includes(cn) ? undefined : `subject CN "${cn}" must be a copy of one of the ` +
    `DNS or IP subjectAltNames (${copies.join(", ") || "none"}) (${RULES.commonName})`;
}

// ---------------------------------------------------------------------------------------------
// Name constraints

interface Subtree {
  base: GeneralName;
  /** The base's form-specific reading, validated. */
  constraint: Constraint;
}

type Constraint =
  | { form: "dNSName"; labels: string[] }
  | {
    form: "rfc822Name";
    mailbox?: { local: string; host: string };
    host?: string;
    domain?: string;
  }
  | { form: "uniformResourceIdentifier"; host?: string; domain?: string }
  | { form: "iPAddress"; network: Uint8Array; mask: Uint8Array }
  | { form: "directoryName"; rdns: string[] }
  | { form: "unsupported"; name: Form };

/** The permitted and excluded subtrees of a NameConstraints extension. */
export interface NameConstraints {
  permitted: Subtree[];
  excluded: Subtree[];
}

const constraintsCache = new WeakMap<CertificateView, NameConstraints | string | null>();

/**
 * Parses and checks the NameConstraints extension of `cert`: undefined without one, a problem
 * text when it is malformed (not critical, no subtrees, an empty list, minimum or maximum other
 * than the default, a base that is not a valid name of its form).
 */
export function nameConstraintsOf(
  cert: CertificateView,
): NameConstraints | string | undefined {
  let cached = constraintsCache.get(cert);
  if (cached === undefined) {
    const extension = cert.extension(NAME_CONSTRAINTS_OID);
    if (!extension) cached = null;
    else if (!extension.critical) cached = "the name constraints extension is not critical";
    else {
      try {
        cached = parseNameConstraints(extension.value);
      } catch (e) {
        cached = `the name constraints extension is malformed (${(e as Error).message})`;
      }
    }
    constraintsCache.set(cert, cached);
  }
  return cached ?? undefined;
}

function parseNameConstraints(der: Uint8Array): NameConstraints {
  const outer = readTlv(der);
  if (outer.tag !== 0x30 || outer.end !== der.length) throw new DerError("not one SEQUENCE");
  const result: NameConstraints = { permitted: [], excluded: [] };
  const parts = children(der, outer);
  let last = -1;
  for (const part of parts) {
    const which = part.tag === 0xa0 ? 0 : part.tag === 0xa1 ? 1 : -1;
    if (which <= last) throw new DerError(`unexpected field with tag 0x${part.tag.toString(16)}`);
    last = which;
    const list = which === 0 ? result.permitted : result.excluded;
    const subtrees = children(der, part);
    if (!subtrees.length) {
      throw new DerError(`empty ${which === 0 ? "permitted" : "excluded"} subtrees`);
    }
    for (const subtree of subtrees) list.push(parseSubtree(der, subtree));
  }
  if (!parts.length) throw new DerError("neither permitted nor excluded subtrees");
  return result;
}

function parseSubtree(der: Uint8Array, subtree: Tlv): Subtree {
  if (subtree.tag !== 0x30) throw new DerError("GeneralSubtree is not a SEQUENCE");
  const [baseTlv, ...rest] = children(der, subtree);
  if (!baseTlv) throw new DerError("GeneralSubtree without a base");
  // minimum DEFAULT 0 is omitted in DER and maximum is absent: RFC 5280 allows nothing else.
  if (rest.length) throw new DerError("GeneralSubtree with a minimum or maximum");
  const base = parseGeneralName(der, baseTlv);
  return { base, constraint: parseConstraint(base) };
}

function parseConstraint(base: GeneralName): Constraint {
  const invalid = (why: string) =>
    new DerError(`${describe(base)} is not a valid constraint: ${why}`);
  switch (base.form) {
    case "dNSName": {
      // RFC 5280: "host.example.com"; the empty name stands for every name (as NSS, Go and
      // webpki read it). A leading period or a wildcard is no dNSName.
      if (base.text === "") return { form: base.form, labels: [] };
      if (!isHostName(base.text)) throw invalid("not a host name");
      return { form: base.form, labels: reverseLabels(base.text) };
    }
    case "rfc822Name": {
      if (base.text.includes("@")) {
        const mailbox = parseMailbox(base.text);
        if (!mailbox) throw invalid("not a mailbox");
        return { form: base.form, mailbox };
      }
      return { form: base.form, ...hostOrDomain(base.text, invalid) };
    }
    case "uniformResourceIdentifier":
      return { form: base.form, ...hostOrDomain(base.text, invalid) };
    case "iPAddress": {
      const length = base.octets.length;
      if (length !== 8 && length !== 32) throw invalid("not an address and mask (8 or 32 octets)");
      const network = base.octets.subarray(0, length / 2);
      const mask = base.octets.subarray(length / 2);
      if (!isContiguousMask(mask)) throw invalid("the mask is not a CIDR prefix");
      return { form: base.form, network, mask };
    }
    case "directoryName":
      return { form: base.form, rdns: base.rdns };
    default:
      return { form: "unsupported", name: base.form };
  }
}

/** rfc822Name and URI constraints: a host, or with a leading period the hosts below a domain. */
function hostOrDomain(
  text: string,
  invalid: (why: string) => Error,
): { host: string } | { domain: string } {
  const domain = text.startsWith(".");
  const name = domain ? text.slice(1) : text;
  if (!isHostName(name)) throw invalid("not a host or .domain");
  return domain ? { domain: name.toLowerCase() } : { host: name.toLowerCase() };
}

function isContiguousMask(mask: Uint8Array): boolean {
  let ended = false;
  for (const byte of mask) {
    for (let bit = 7; bit >= 0; bit--) {
      const one = (byte >> bit) & 1;
      if (one && ended) return false;
      if (!one) ended = true;
    }
  }
  return true;
}

/** Labels, lowercase, rightmost first. */
function reverseLabels(name: string): string[] {
  return name.toLowerCase().split(".").reverse();
}

/** True when `labels` (rightmost first) equal `base` or extend it on the left. */
function withinLabels(labels: string[], base: string[]): boolean {
  return labels.length >= base.length && base.every((label, i) => labels[i] === label);
}

/** How a name relates to one subtree: inside it, outside it, or not decidable. */
type Placement = "inside" | "outside" | { problem: string };

/**
 * Where `name` lies with respect to `subtree` for a permitted (`mustFit`) or excluded list: a
 * wildcard is inside a permitted subtree only when every name it matches is, and inside an
 * excluded subtree when any name it matches is (CVE-2025-61727).
 */
function placement(name: GeneralName, constraint: Constraint, mustFit: boolean): Placement {
  switch (constraint.form) {
    case "dNSName": {
      if (name.form !== "dNSName") return "outside";
      const problem = dnsNameProblem(name.text);
      if (problem) return { problem: problem.problem };
      if (!name.text.startsWith("*.")) {
        return withinLabels(reverseLabels(name.text), constraint.labels) ? "inside" : "outside";
      }
      // `*.base` stands for every one-label extension of base.
      const base = reverseLabels(name.text.slice(2));
      if (withinLabels(base, constraint.labels)) return "inside";
      const some = constraint.labels.length === base.length + 1 &&
        withinLabels(constraint.labels, base);
      return !mustFit && some ? "inside" : "outside";
    }
    case "rfc822Name": {
      if (name.form !== "rfc822Name") return "outside";
      const mailbox = parseMailbox(name.text);
      if (!mailbox) return { problem: "not a mailbox" };
      if (constraint.mailbox) {
        // The local part is case-sensitive (RFC 5321 §2.4), the host is not.
        return mailbox.local === constraint.mailbox.local &&
            mailbox.host.toLowerCase() === constraint.mailbox.host.toLowerCase()
          ? "inside"
          : "outside";
      }
      return hostPlacement(mailbox.host.toLowerCase(), constraint);
    }
    case "uniformResourceIdentifier": {
      if (name.form !== "uniformResourceIdentifier") return "outside";
      const host = uriHost(name.text);
      if (typeof host !== "string") return host;
      return hostPlacement(host, constraint);
    }
    case "iPAddress": {
      if (name.form !== "iPAddress") return "outside";
      if (name.octets.length !== 4 && name.octets.length !== 16) {
        return { problem: "an address is 4 or 16 octets" };
      }
      if (name.octets.length !== constraint.network.length) return "outside";
      return name.octets.every((b, i) =>
          (b & constraint.mask[i]) === (constraint.network[i] & constraint.mask[i])
        )
        ? "inside"
        : "outside";
    }
    case "directoryName":
      if (name.form !== "directoryName") return "outside";
      return withinLabels(name.rdns, constraint.rdns) ? "inside" : "outside";
    case "unsupported":
      return name.form === constraint.name
        ? { problem: `qsign does not process ${constraint.name} constraints` }
        : "outside";
  }
}

function hostPlacement(
  host: string,
  constraint: { host?: string; domain?: string },
): Placement {
  if (constraint.host !== undefined) return host === constraint.host ? "inside" : "outside";
  return host.endsWith(`.${constraint.domain}`) ? "inside" : "outside";
}

/** The host of an absolute URI with an authority, lowercase, or why there is none to check. */
function uriHost(uri: string): string | { problem: string } {
  const match = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i.exec(uri);
  if (!match) return { problem: "the URI has no authority to constrain" };
  const authority = match[1].slice(match[1].lastIndexOf("@") + 1);
  if (authority.startsWith("[")) return { problem: "the URI's host is an IP address" };
  const host = authority.replace(/:[0-9]*$/, "");
  if (normalizeIp(host)) return { problem: "the URI's host is an IP address" };
  if (!isHostName(host)) return { problem: "the URI's host is not a host name" };
  return host.toLowerCase();
}

function formOfConstraint(constraint: Constraint): Form {
  return constraint.form === "unsupported" ? constraint.name : constraint.form;
}

/**
 * Applies the name constraints of every CA in `path` (leaf first, trust anchor last) to the
 * certificates below it: all of them but self-issued intermediates (RFC 5280 §6.1.3 (b)). Also
 * refuses a NameConstraints extension in the leaf, a malformed or non-critical one anywhere,
 * and a path whose checks would take more than the comparison budget.
 */
export function pathNameConstraintViolation(
  path: readonly PathCertificate[],
): NameViolation | undefined {
  const violation = (
    index: number,
    detail: string,
    reason: NameFailureReason = "name constraints",
  ): NameViolation => ({ reason, rule: RULES.nameConstraints, detail, index });
  const subjectOf = (i: number) => path[i].cert.subject || "(empty subject)";

  if (path.length > 1 && path[0].cert.extension(NAME_CONSTRAINTS_OID)) {
    return violation(0, `${subjectOf(0)} is an end-entity certificate with name constraints`);
  }
  let spent = 0;
  for (let i = 1; i < path.length; i++) {
    const constraints = nameConstraintsOf(path[i].cert);
    if (constraints === undefined) continue;
    if (typeof constraints === "string") return violation(i, `${subjectOf(i)}: ${constraints}`);
    const subtreesOfForm = new Map<Form, number>();
    for (const s of [...constraints.permitted, ...constraints.excluded]) {
      const form = formOfConstraint(s.constraint);
      subtreesOfForm.set(form, (subtreesOfForm.get(form) ?? 0) + 1);
    }
    for (let j = 0; j < i; j++) {
      if (j > 0 && path[j].selfIssued) continue;
      const names = namesOf(path[j].cert);
      if (names instanceof Error) {
        return violation(j, `${subjectOf(j)}: its names cannot be read (${names.message})`);
      }
      const constrained = constrainedNames(names);
      const cost = constrained.reduce((n, name) => n + (subtreesOfForm.get(name.form) ?? 0), 0);
      spent += cost;
      if (cost > MAX_COMPARISONS_PER_PAIR || spent > MAX_COMPARISONS_PER_PATH) {
        return violation(
          j,
          `checking the ${constrained.length} names of ${subjectOf(j)} against the ` +
            `${constraints.permitted.length + constraints.excluded.length} subtrees of ` +
            `${subjectOf(i)} takes ${cost} comparisons (${spent} for the path; at most ` +
            `${MAX_COMPARISONS_PER_PAIR} per certificate pair and ${MAX_COMPARISONS_PER_PATH} ` +
            `per path): refused as too expensive`,
          "name constraints too expensive",
        );
      }
      const problem = constraintProblem(constrained, constraints);
      if (problem) return violation(j, `${subjectOf(j)}: ${problem} by ${subjectOf(i)}`);
    }
  }
  return undefined;
}

/** The first name of `names` that `constraints` forbid, in words. */
function constraintProblem(
  names: readonly GeneralName[],
  constraints: NameConstraints,
): string | undefined {
  for (const name of names) {
    for (const subtree of constraints.excluded) {
      const at = placement(name, subtree.constraint, false);
      if (typeof at === "object") return `${describe(name)} cannot be checked (${at.problem})`;
      if (at === "inside") return `${describe(name)} is excluded (${describe(subtree.base)})`;
    }
    const permitted = constraints.permitted.filter((s) =>
      formOfConstraint(s.constraint) === name.form
    );
    if (!permitted.length) continue;
    let inside = false;
    for (const subtree of permitted) {
      const at = placement(name, subtree.constraint, true);
      if (typeof at === "object") return `${describe(name)} cannot be checked (${at.problem})`;
      if (at === "inside") inside = true;
    }
    if (!inside) {
      return `${describe(name)} is not permitted (${
        permitted.map((s) => describe(s.base)).join(", ")
      })`;
    }
  }
  return undefined;
}

/**
 * Encodes a NameConstraints extension value (for tests and tooling). IP subtrees are written in
 * CIDR form, e.g. `10.0.0.0/8`.
 */
export function encodeNameConstraints(
  permitted: x509.JsonGeneralName[],
  excluded: x509.JsonGeneralName[] = [],
): Uint8Array {
  const subtree = (n: x509.JsonGeneralName) =>
    encodeTlv(
      0x30,
      n.type === "ip"
        ? encodeTlv(0x87, ipSubnetBytes(n.value))
        : new Uint8Array(new x509.GeneralName(n.type, n.value).rawData),
    );
  const subtrees = (tag: number, names: x509.JsonGeneralName[]) =>
    names.length ? encodeTlv(tag, concatBytes(...names.map(subtree))) : new Uint8Array(0);
  return encodeTlv(0x30, concatBytes(subtrees(0xa0, permitted), subtrees(0xa1, excluded)));
}

// ---------------------------------------------------------------------------------------------
// IP addresses

/** The canonical text of 4 or 16 octets: dotted decimal, or RFC 5952 §4. */
function ipText(octets: Uint8Array): string | undefined {
  if (octets.length === 4) return Array.from(octets).join(".");
  if (octets.length !== 16) return undefined;
  const groups = Array.from({ length: 8 }, (_, i) => (octets[2 * i] << 8) | octets[2 * i + 1]);
  // The first longest run of two or more zero groups becomes "::".
  let best = { start: -1, length: 1 };
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > best.length) best = { start: i, length: j - i };
    i = j;
  }
  const text = (from: number, to: number) =>
    groups.slice(from, to).map((g) => g.toString(16)).join(":");
  return best.start < 0
    ? text(0, 8)
    : `${text(0, best.start)}::${text(best.start + best.length, 8)}`;
}

/** The canonical text of an IP address typed as text, or undefined when it is none. */
function canonicalIpText(text: string): string | undefined {
  const bytes = ipBytes(text);
  return bytes && ipText(bytes);
}

function ipBytes(text: string): Uint8Array | undefined {
  const ip = normalizeIp(text);
  if (!ip) return undefined;
  if (!ip.includes(":")) return new Uint8Array(ip.split(".").map(Number));
  const [head, tail] = ip.includes("::") ? ip.split("::") : [ip, undefined];
  const groups = (s: string | undefined) => (s ? s.split(":") : []);
  const h = groups(head);
  const t = groups(tail);
  const all = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    const v = parseInt(g, 16);
    out[2 * i] = v >> 8;
    out[2 * i + 1] = v & 0xff;
  });
  return out;
}

function ipSubnetBytes(cidr: string): Uint8Array {
  const [address, prefixText] = cidr.split("/");
  const bytes = ipBytes(address);
  if (!bytes) throw new RangeError(`not an IP subnet: ${cidr}`);
  const prefix = prefixText === undefined ? bytes.length * 8 : Number(prefixText);
  const mask = bytes.map((_, i) => {
    const bits = Math.max(0, Math.min(8, prefix - 8 * i));
    return (0xff << (8 - bits)) & 0xff;
  });
  return concatBytes(bytes, mask);
}

// ---------------------------------------------------------------------------------------------
// RFC 6125 host matching

/**
 * RFC 6125 matching of one presented dNSName `pattern` against the reference `host`:
 * case-insensitive (A-labels included), one trailing dot of the host ignored, and a wildcard
 * only as the whole leftmost label of a valid wildcard name (not on a public suffix), standing
 * for exactly one label. A pattern that is not a valid presented name matches nothing.
 */
export function dnsNameMatches(pattern: string, host: string): boolean {
  if (dnsNameProblem(pattern)) return false;
  const h = host.toLowerCase().replace(/\.$/, "");
  if (!isHostName(h)) return false;
  const p = pattern.toLowerCase();
  if (!p.startsWith("*.")) return p === h;
  const dot = h.indexOf(".");
  return dot > 0 && h.slice(dot + 1) === p.slice(2);
}

/** The dNSName and iPAddress entries of a certificate's subjectAltName (IPs as canonical text). */
export function subjectAltNames(cert: CertificateView): { dns: string[]; ip: string[] } {
  const names = namesOf(cert);
  const altNames = names instanceof Error ? [] : names.altNames ?? [];
  return {
    dns: altNames.flatMap((n) => n.form === "dNSName" ? [n.text] : []),
    ip: altNames.flatMap((n) => {
      const text = n.form === "iPAddress" ? ipText(n.octets) : undefined;
      return text ? [text] : [];
    }),
  };
}

/** True when the certificate is valid for `host` (a DNS name, or an IP literal). */
export function certificateMatchesHost(cert: CertificateView, host: string): boolean {
  if (normalizeIp(host)) return certificateMatchesIp(cert, host);
  const reference = asciiHost(host);
  return reference !== undefined &&
    subjectAltNames(cert).dns.some((pattern) => dnsNameMatches(pattern, reference));
}

/** True when one of the certificate's IP subjectAltNames is `address`. */
export function certificateMatchesIp(cert: CertificateView, address: string): boolean {
  const wanted = canonicalIpText(address);
  return wanted !== undefined && subjectAltNames(cert).ip.includes(wanted);
}

/** A reference host in A-label form (a U-label name is converted, as a client would). */
function asciiHost(host: string): string | undefined {
  if (!/[\u0080-\uffff]/.test(host)) return host;
  try {
    return new URL(`http://${host}/`).hostname;
  } catch {
    return undefined;
  }
}
