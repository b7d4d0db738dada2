/**
 * Name checks of path validation: RFC 6125 host matching against subjectAltName, and RFC 5280
 * name constraints (dNSName, iPAddress, rfc822Name, URI, directoryName).
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import {
  bufferSource,
  children,
  concatBytes,
  encodeTlv,
  readTlv,
  type Tlv,
  tlvBytes,
  tlvContent,
} from "./der.ts";
import { normalizeIp } from "./certificate.ts";

export const NAME_CONSTRAINTS_OID = "2.5.29.30";

/**
 * RFC 6125 matching of one dNSName `pattern` against `host`: case-insensitive, trailing dots
 * ignored, and a wildcard only as the whole leftmost label, standing for exactly one label.
 */
export function dnsNameMatches(pattern: string, host: string): boolean {
  const p = canonicalDns(pattern);
  const h = canonicalDns(host);
  if (!p.startsWith("*.")) return !p.includes("*") && p === h;
  const base = p.slice(2);
  // "*.com"-style patterns and further wildcards are refused outright.
  if (base.includes("*") || !base.includes(".")) return false;
  const dot = h.indexOf(".");
  return dot > 0 && h.slice(dot + 1) === base;
}

function canonicalDns(name: string): string {
  return name.toLowerCase().replace(/\.$/, "");
}

/** The dNSName and iPAddress entries of a certificate's subjectAltName. */
export function subjectAltNames(cert: x509.X509Certificate): { dns: string[]; ip: string[] } {
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const names = san?.names.items ?? [];
  return {
    dns: names.filter((n) => n.type === "dns").map((n) => n.value),
    ip: names.filter((n) => n.type === "ip").map((n) => normalizeIp(n.value) ?? n.value),
  };
}

/** True when the certificate is valid for `host` (a DNS name, or an IP literal). */
export function certificateMatchesHost(cert: x509.X509Certificate, host: string): boolean {
  const ip = normalizeIp(host);
  if (ip) return certificateMatchesIp(cert, ip);
  return subjectAltNames(cert).dns.some((pattern) => dnsNameMatches(pattern, host));
}

/** True when one of the certificate's IP subjectAltNames is `address`. */
export function certificateMatchesIp(cert: x509.X509Certificate, address: string): boolean {
  const wanted = normalizeIp(address);
  return wanted !== undefined && subjectAltNames(cert).ip.includes(wanted);
}

/** One parsed GeneralSubtree base. */
type Subtree =
  | { kind: "dns" | "email" | "uri"; value: string }
  | { kind: "ip"; address: Uint8Array; mask: Uint8Array }
  | { kind: "dn"; rdns: string[] };

/** The permitted and excluded subtrees of a NameConstraints extension. */
export interface NameConstraints {
  permitted: Subtree[];
  excluded: Subtree[];
}

/** Parses the NameConstraints extension of a CA certificate, if it has one. */
export function nameConstraintsOf(cert: x509.X509Certificate): NameConstraints | undefined {
  const ext = cert.getExtension(NAME_CONSTRAINTS_OID);
  if (!ext) return undefined;
  const der = new Uint8Array(ext.value);
  const result: NameConstraints = { permitted: [], excluded: [] };
  for (const part of children(der, readTlv(der))) {
    const list = part.tag === 0xa0 ? result.permitted : part.tag === 0xa1 ? result.excluded : null;
    if (!list) continue;
    for (const subtree of children(der, part)) {
      const [base] = children(der, subtree);
      if (base) {
        const parsed = parseSubtreeBase(der, base);
        if (parsed) list.push(parsed);
      }
    }
  }
  return result;
}

function parseSubtreeBase(der: Uint8Array, base: Tlv): Subtree | undefined {
  const content = tlvContent(der, base);
  const text = () => new TextDecoder().decode(content).toLowerCase();
  switch (base.tag) {
    case 0x81:
      return { kind: "email", value: text() };
    case 0x82:
      return { kind: "dns", value: text() };
    case 0x86:
      return { kind: "uri", value: text() };
    case 0x87: {
      const half = content.length / 2;
      return { kind: "ip", address: content.slice(0, half), mask: content.slice(half) };
    }
    case 0xa4: {
      const [name] = children(der, base);
      return name ? { kind: "dn", rdns: rdnStrings(tlvBytes(der, name)) } : undefined;
    }
    default:
      // otherName, x400Address, ediPartyName, registeredID: qsign has no names of these types.
      return undefined;
  }
}

function rdnStrings(nameDer: Uint8Array): string[] {
  return new x509.Name(bufferSource(nameDer)).toJSON().map((rdn) => JSON.stringify(rdn));
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

/**
 * The first name of `cert` that the constraints forbid, or undefined when all pass. Checks the
 * subject DN and the subjectAltName entries of the constrained types.
 */
export function nameConstraintViolation(
  cert: x509.X509Certificate,
  constraints: NameConstraints,
): string | undefined {
  const names: { kind: Subtree["kind"]; text: string; match: (s: Subtree) => boolean }[] = [];
  const subjectRdns = rdnStrings(new Uint8Array(cert.subjectName.toArrayBuffer()));
  if (subjectRdns.length) {
    names.push({
      kind: "dn",
      text: cert.subject,
      match: (s) => s.kind === "dn" && s.rdns.every((rdn, i) => subjectRdns[i] === rdn),
    });
  }
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  for (const name of san?.names.items ?? []) {
    if (name.type === "dns") {
      names.push({
        kind: "dns",
        text: `DNS:${name.value}`,
        match: (s) => s.kind === "dns" && dnsWithin(name.value.toLowerCase(), s.value),
      });
    } else if (name.type === "email") {
      names.push({
        kind: "email",
        text: `EMAIL:${name.value}`,
        match: (s) => s.kind === "email" && emailWithin(name.value.toLowerCase(), s.value),
      });
    } else if (name.type === "url") {
      const host = URL.canParse(name.value) ? new URL(name.value).hostname.toLowerCase() : "";
      names.push({
        kind: "uri",
        text: `URI:${name.value}`,
        match: (s) => s.kind === "uri" && hostWithin(host, s.value),
      });
    } else if (name.type === "ip") {
      const bytes = ipBytes(name.value);
      names.push({
        kind: "ip",
        text: `IP:${name.value}`,
        match: (s) => s.kind === "ip" && !!bytes && ipWithin(bytes, s.address, s.mask),
      });
    }
  }
  for (const name of names) {
    if (constraints.excluded.some(name.match)) return `${name.text} is excluded`;
    const permittedOfKind = constraints.permitted.filter((s) => s.kind === name.kind);
    if (permittedOfKind.length && !permittedOfKind.some(name.match)) {
      return `${name.text} is not permitted`;
    }
  }
  return undefined;
}

/** dNSName constraint: the name itself or any name with labels added on the left. */
function dnsWithin(name: string, constraint: string): boolean {
  const c = constraint.replace(/^\./, "");
  if (c === "") return true;
  return name === c || name.endsWith(`.${c}`);
}

/** URI host constraint: a leading period means subdomains only, otherwise that host exactly. */
function hostWithin(host: string, constraint: string): boolean {
  return constraint.startsWith(".") ? host.endsWith(constraint) : host === constraint;
}

/** rfc822Name constraint: a mailbox, a host, or (with a leading period) a domain's hosts. */
function emailWithin(address: string, constraint: string): boolean {
  if (constraint.includes("@")) return address === constraint;
  const host = address.slice(address.lastIndexOf("@") + 1);
  return hostWithin(host, constraint);
}

function ipWithin(address: Uint8Array, network: Uint8Array, mask: Uint8Array): boolean {
  return address.length === network.length &&
    address.every((b, i) => (b & mask[i]) === (network[i] & mask[i]));
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
