/**
 * Raw GeneralNames, subjectAltName and NameConstraints extensions for the name-rule tests,
 * written byte by byte so that malformed names (an 8-octet iPAddress, a non-ASCII dNSName, a
 * subtree with a maximum) can be built as well as valid ones.
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { encodeTlv } from "../../src/crypto/der.ts";
import { NAME_CONSTRAINTS_OID } from "../../src/pki/names.ts";

const utf8 = (text: string) => new TextEncoder().encode(text);

/** GeneralName encoders: IA5 forms take the text's UTF-8 bytes as they are. */
export const gn = {
  dns: (text: string) => encodeTlv(0x82, utf8(text)),
  email: (text: string) => encodeTlv(0x81, utf8(text)),
  uri: (text: string) => encodeTlv(0x86, utf8(text)),
  /** An address (`192.0.2.1`) or, for constraints, a CIDR subnet (`192.0.2.0/24`). */
  ip: (text: string) => new Uint8Array(new x509.GeneralName("ip", text).rawData),
  octets: (octets: number[]) => encodeTlv(0x87, Uint8Array.from(octets)),
  dir: (dn: string) => encodeTlv(0xa4, new Uint8Array(new x509.Name(dn).toArrayBuffer())),
  /** An otherName of a private type with a NULL value. */
  other: () =>
    encodeTlv(
      0xa0,
      Uint8Array.of(0x06, 0x08, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0xb3, 0x3a),
      encodeTlv(0xa0, Uint8Array.of(0x05, 0x00)),
    ),
};

/** A subjectAltName extension holding `names` (GeneralName DER). */
export function sanExtension(names: Uint8Array[], critical = false): x509.Extension {
  return new x509.Extension(
    "2.5.29.17",
    critical,
    encodeTlv(0x30, ...names) as Uint8Array<ArrayBuffer>,
  );
}

/** A GeneralSubtree of `base`, optionally with explicit minimum / maximum fields. */
export function subtree(base: Uint8Array, extra: Uint8Array[] = []): Uint8Array {
  return encodeTlv(0x30, base, ...extra);
}

/** A NameConstraints extension; a list given (even empty) is written, an absent one is not. */
export function ncExtension(
  lists: { permitted?: Uint8Array[]; excluded?: Uint8Array[] },
  options: { critical?: boolean; subtrees?: boolean } = {},
): x509.Extension {
  // Entries are bases unless `subtrees: false` says they are whole GeneralSubtrees already.
  const wrap = (items: Uint8Array[]) =>
    options.subtrees === false ? items : items.map((base) => subtree(base));
  const parts: Uint8Array[] = [];
  if (lists.permitted) parts.push(encodeTlv(0xa0, ...wrap(lists.permitted)));
  if (lists.excluded) parts.push(encodeTlv(0xa1, ...wrap(lists.excluded)));
  return new x509.Extension(
    NAME_CONSTRAINTS_OID,
    options.critical ?? true,
    encodeTlv(0x30, ...parts) as Uint8Array<ArrayBuffer>,
  );
}
