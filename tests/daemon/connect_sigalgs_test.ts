/**
 * `qsign connect --sigalgs`: the signature schemes the client accepts decide which of the
 * server's chains signs the handshake.
 */
import { equal, match } from "node:assert/strict";
import { runQsign, tempDir } from "../support/env.ts";
import { clientArgs, Daemon, makePki, serveArgs } from "./support.ts";

Deno.test("qsign connect --sigalgs picks the server's ECDSA-P384 chain over its ML-DSA-65 one", async () => {
  await using dir = await tempDir();
  const mldsa = await makePki(`${dir.path}/mldsa65`);
  const ecdsa = await makePki(`${dir.path}/ecdsa-p384`, "ecdsa-p384");
  await using daemon = await Daemon.start(
    serveArgs(mldsa, ["--cert", ecdsa.serverCert, "--key", ecdsa.serverKey]),
  );
  const connect = (...extra: string[]) =>
    runQsign([
      "connect",
      `127.0.0.1:${daemon.port()}`,
      ...clientArgs(mldsa),
      ...["--ca", ecdsa.root],
      ...["--send", "sigalgs", ...extra],
    ]);

  const preferred = await connect();
  equal(preferred.code, 0, preferred.stderr);
  match(preferred.stdout, /server signature mldsa65,/);

  const chosen = await connect("--sigalgs", "ecdsa_secp384r1_sha384");
  equal(chosen.code, 0, chosen.stderr);
  match(chosen.stdout, /server signature ecdsa_secp384r1_sha384,/);
  match(chosen.stdout, /← QSIGN 서버 응답 \[세션 #2\]: 메시지 수신 완료 \(7 바이트\)/);

  const classical = await connect("--sigalgs", "ecdsa_secp384r1_sha384", "--require-pq-auth");
  equal(classical.code, 2);
  match(
    classical.stderr,
    /connect: --sigalgs: signature scheme ecdsa_secp384r1_sha384 is classical/,
  );
  await daemon.waitFor((e) => e.event === "closed" && e.session === 2);
});
