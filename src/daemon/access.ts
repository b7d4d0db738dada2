/**
 * The access policy applied to a client whose chain has verified (ghostunnel's `--allow-*`):
 * subject CN, subject OU, DNS and URI subjectAltNames; any match admits, and a policy with no
 * entries admits every verified client.
 */
import { SubjectAlternativeNameExtension, type X509Certificate } from "@peculiar/x509";
import type { AccessPolicySettings } from "../config/types.ts";

/** What the policy looked at in a certificate. */
export interface ClientIdentity {
  cn: string[];
  ou: string[];
  dns: string[];
  uri: string[];
}

/** The names of `leaf` the policy can match on. */
export function identityOf(leaf: X509Certificate): ClientIdentity {
  const san = leaf.getExtension(SubjectAlternativeNameExtension);
  const names = san?.names.items ?? [];
  return {
    cn: leaf.subjectName.getField("CN"),
    ou: leaf.subjectName.getField("OU"),
    dns: names.filter((n) => n.type === "dns").map((n) => n.value),
    uri: names.filter((n) => n.type === "url").map((n) => n.value),
  };
}

/**
 * Builds the engine's `accessPolicy`: returns true to admit, or the reason for refusing (which
 * the engine logs with the access_denied alert).
 */
export function accessPolicy(
  allow: AccessPolicySettings,
): ((leaf: X509Certificate) => true | string) | undefined {
  const kinds = ["cn", "ou", "dns", "uri"] as const;
  if (kinds.every((k) => allow[k].length === 0)) return undefined;
  const allowed = Object.fromEntries(kinds.map((k) => [k, new Set(allow[k])])) as Record<
    (typeof kinds)[number],
    Set<string>
  >;
  return (leaf) => {
    const identity = identityOf(leaf);
    if (kinds.some((k) => identity[k].some((name) => allowed[k].has(name)))) return true;
    return `client ${leaf.subject} matches no --allow-cn/--allow-ou/--allow-dns/--allow-uri`;
  };
}
