/**
 * `proxy_from`: the load balancer ranges whose connections start with a PROXY protocol header.
 * CIDR parsing and matching come from ipaddr.js (the library behind Express's proxy-addr), so
 * IPv4, IPv6 and IPv4-mapped IPv6 addresses compare as they should.
 */
import ipaddr from "ipaddr.js";
import type { ProxySource } from "./types.ts";

/**
 * The ranges of `texts` when `enabled` (accept_proxy_protocol), else none. Calls `fail` (which
 * throws the config error) for a malformed range, for ranges without the setting that uses
 * them, or for the setting without ranges.
 */
export function proxySources(
  enabled: boolean,
  texts: string[],
  fail: (key: string, problem: string) => never,
): ProxySource[] {
  if (!enabled) {
    if (texts.length) fail("proxy_from", "only used with accept_proxy_protocol = true");
    return [];
  }
  if (!texts.length) {
    fail("proxy_from", "accept_proxy_protocol needs the load balancers' addresses (CIDR)");
  }
  return texts.map((text) => {
    let range: [ipaddr.IPv4 | ipaddr.IPv6, number];
    try {
      range = ipaddr.parseCIDR(text.includes("/") ? text : hostRange(text));
    } catch {
      return fail("proxy_from", `"${text}" is not an address range such as 10.0.0.0/24`);
    }
    return {
      text,
      contains(address: string): boolean {
        if (!ipaddr.isValid(address)) return false;
        const ip = ipaddr.process(address);
        return ip.kind() === range[0].kind() && ip.match(range);
      },
    };
  });
}

/** A single address as the range holding only it. */
function hostRange(address: string): string {
  return `${address}/${ipaddr.IPv6.isValid(address) && !ipaddr.IPv4.isValid(address) ? 128 : 32}`;
}
