/** Bytes as hexadecimal text and back: fingerprints, serial numbers, constants, test vectors. */

export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The bytes that `hex` spells, whitespace ignored; a TypeError for anything that is not hex. */
export function fromHex(hex: string): Uint8Array {
  const digits = hex.replace(/\s+/g, "");
  if (digits.length % 2 || !/^[0-9a-f]*$/i.test(digits)) {
    throw new TypeError(`not hexadecimal: ${digits.slice(0, 16)}…`);
  }
  const bytes = new Uint8Array(digits.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(digits.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}
