/** PEM in and out, on @peculiar/x509's PemConverter, and reading certificate files. */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { InputError } from "../errors.ts";
import { bufferSource } from "./der.ts";

/**
 * Every PEM block in `text`, in order, as DER. With `label` (e.g. `CERTIFICATE`), blocks with
 * another label are skipped. Text around the blocks (comments, OpenSSL "Bag Attributes") is ignored.
 */
export function pemDecodeAll(text: string, label?: string): Uint8Array[] {
  if (!text.includes("-----BEGIN ")) return [];
  return x509.PemConverter.decodeWithHeaders(text)
    .filter((block) => label === undefined || block.type === label)
    .map((block) => new Uint8Array(block.rawData));
}

/** One PEM block with a trailing newline. */
export function pemEncode(label: string, der: Uint8Array): string {
  return `${x509.PemConverter.encode(bufferSource(der), label).trimEnd()}\n`;
}

/** Several DER objects as consecutive PEM blocks with one label. */
export function pemEncodeAll(label: string, ders: readonly Uint8Array[]): string {
  return ders.map((der) => pemEncode(label, der)).join("");
}

/** Reads a file as text, naming it in the error when it cannot be read. */
export async function readInputFile(path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    const problem = e instanceof Deno.errors.NotFound ? "no such file" : `cannot read (${e})`;
    throw new InputError(path, problem, { cause: e });
  }
}

/**
 * The PEM blocks with `label` in a file, or the file itself when it is a single DER object.
 * Throws `InputError` naming the file when it is unreadable or holds no such object.
 */
export async function readDerObjects(path: string, label: string): Promise<Uint8Array[]> {
  const bytes = await readInputFile(path);
  // DER starts with a SEQUENCE tag; PEM is text.
  if (bytes[0] === 0x30) return [bytes];
  let blocks: Uint8Array[];
  try {
    blocks = pemDecodeAll(new TextDecoder().decode(bytes), label);
  } catch (e) {
    throw new InputError(path, `not valid PEM (${(e as Error).message})`, { cause: e });
  }
  if (blocks.length === 0) throw new InputError(path, `no ${label} found`);
  return blocks;
}

/**
 * The certificates in a PEM (or single DER) file, as DER in file order. Each is parsed once so
 * a damaged certificate is reported here, naming the file, rather than deep inside a handshake.
 */
export async function readCertificatesFile(path: string): Promise<Uint8Array[]> {
  const ders = await readDerObjects(path, "CERTIFICATE");
  ders.forEach((der, i) => {
    try {
      new x509.X509Certificate(bufferSource(der));
    } catch (e) {
      throw new InputError(
        path,
        `certificate #${i + 1} cannot be parsed (${(e as Error).message})`,
        {
          cause: e,
        },
      );
    }
  });
  return ders;
}
