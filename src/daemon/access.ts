/**
 * The access policy applied to a client whose chain has verified (ghostunnel's `--allow-*`):
 * subject CN, subject OU, DNS and URI subjectAltNames; any match admits, and a policy with no
 * entries admits every verified client. The engine runs it on the full handshake and again on
 * every resumption, on the identity the ticket carries.
 *
 * A subject with several CNs never matches `--allow-cn`: which of them names the client is a
 * matter of convention (the last, most specific one for Go, the first for others), and a CA
 * that lets a requester add CNs would otherwise let it pick an allowed one.
 */
import type { AccessPolicySettings } from "../config/types.ts";
import type { PeerIdentity } from "../tls/config.ts";

const KINDS = ["cn", "ou", "dns", "uri"] as const;

/** The policy in words, stable across nodes: part of the service's ticket binding. */
export function describeAccessPolicy(allow: AccessPolicySettings): string {
  return JSON.stringify(Object.fromEntries(KINDS.map((k) => [k, [...new Set(allow[k])].sort()])));
}

/**
 * Builds the engine's `accessPolicy`: returns true to admit, or the reason for refusing (which
 * the engine logs with the access_denied alert).
 */
export function accessPolicy(
  allow: AccessPolicySettings,
): ((peer: PeerIdentity) => true | string) | undefined {
  if (KINDS.every((k) => allow[k].length === 0)) return undefined;
  const allowed = Object.fromEntries(KINDS.map((k) => [k, new Set(allow[k])])) as Record<
    (typeof KINDS)[number],
    Set<string>
  >;
  return (peer) => {
    const ambiguousCn = peer.cn.length > 1;
    const matches = (k: (typeof KINDS)[number]) =>
      !(k === "cn" && ambiguousCn) && peer[k].some((name) => allowed[k].has(name));
    if (KINDS.some(matches)) return true;
    const why = ambiguousCn && allowed.cn.size
      ? ` (its subject holds ${peer.cn.length} CNs: --allow-cn matches a single CN only)`
      : "";
    return `client ${peer.subject} matches no --allow-cn/--allow-ou/--allow-dns/--allow-uri${why}`;
  };
}
