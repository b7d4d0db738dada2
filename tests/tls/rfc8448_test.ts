/**
 * The codec and the key schedule against the example traces of RFC 8448 (§3 simple 1-RTT
 * handshake, §4 resumed handshake's PSK binder), TLS_AES_128_GCM_SHA256.
 */
import { deepEqual, equal } from "node:assert/strict";
import { suiteById } from "../../src/tls/cipher_suites.ts";
import { fromHex, toHex } from "../../src/hex.ts";
import { ExtensionType } from "../../src/tls/codec/constants.ts";
import {
  decodeClientKeyShares,
  decodeClientVersions,
  decodeServerKeyShare,
  decodeServerName,
  findExtension,
} from "../../src/tls/codec/extensions.ts";
import {
  decodeClientHello,
  decodeServerHello,
  encodeClientHello,
  encodeServerHello,
} from "../../src/tls/codec/messages.ts";
import {
  finishedMac,
  KeySchedule,
  resumptionPsk,
  trafficKeys,
} from "../../src/tls/key_schedule.ts";
import { Transcript } from "../../src/tls/transcript.ts";

const CH = fromHex(
  "010000c00303cb34ecb1e78163ba1c38c6dacb196a6dffa21a8d9912ec18a2ef6283024dece7000006130113031302010000910000000b0009000006736572766572ff01000100000a00140012001d0017001800190100010101020103010400230000003300260024001d002099381de560e4bd43d23d8e435a7dbafeb3c06e51c13cae4d5413691e529aaf2c002b0003020304000d0020001e040305030603020308040805080604010501060102010402050206020202002d00020101001c00024001",
);
const SH = fromHex(
  "020000560303a6af06a4121860dc5e6e60249cd34c95930c8ac5cb1434dac155772ed3e2692800130100002e00330024001d0020c9828876112095fe66762bdbf7c672e156d6cc253b833df1dd69b1b04e751f0f002b00020304",
);
const EE = fromHex(
  "080000240022000a00140012001d00170018001901000101010201030104001c0002400100000000",
);
const CERT = fromHex(
  "0b0001b9000001b50001b0308201ac30820115a003020102020102300d06092a864886f70d01010b0500300e310c300a06035504031303727361301e170d3136303733303031323335395a170d3236303733303031323335395a300e310c300a0603550403130372736130819f300d06092a864886f70d010101050003818d0030818902818100b4bb498f8279303d980836399b36c6988c0c68de55e1bdb826d3901a2461eafd2de49a91d015abbc9a95137ace6c1af19eaa6af98c7ced43120998e187a80ee0ccb0524b1b018c3e0b63264d449a6d38e22a5fda430846748030530ef0461c8ca9d9efbfae8ea6d1d03e2bd193eff0ab9a8002c47428a6d35a8d88d79f7f1e3f0203010001a31a301830090603551d1304023000300b0603551d0f0404030205a0300d06092a864886f70d01010b05000381810085aad2a0e5b9276b908c65f73a7267170618a54c5f8a7b337d2df7a594365417f2eae8f8a58c8f8172f9319cf36b7fd6c55b80f21a03015156726096fd335e5e67f2dbf102702e608ccae6bec1fc63a42a99be5c3eb7107c3c54e9b9eb2bd5203b1c3b84e0a8b2f759409ba3eac9d91d402dcc0cc8f8961229ac9187b42b4de10000",
);
const CV = fromHex(
  "0f000084080400805a747c5d88fa9bd2e55ab085a61015b7211f824cd484145ab3ff52f1fda8477b0b7abc90db78e2d33a5c141a078653fa6bef780c5ea248eeaaa785c4f394cab6d30bbe8d4859ee511f602957b15411ac027671459e46445c9ea58c181e818e95b8c3fb0bf3278409d3be152a3da5043e063dda65cdf5aea20d53dfacd42f74f3",
);
const SERVER_FINISHED = fromHex(
  "140000209b9b141d906337fbd2cbdce71df4deda4ab42c309572cb7fffee5454b78f0718",
);
const CLIENT_FINISHED = fromHex(
  "14000020a8ec436d677634ae525ac1fcebe11a039ec17694fac6e98527b642f2edd5ce61",
);
const ECDHE = fromHex("8bd4054fb55b9d63fdfbacf9f04b9f0d35e6d63f537563efd46272900f89492d");
/** §4: the resumed ClientHello up to (not including) its binders list. */
const RESUMED_CH_PREFIX = fromHex(
  "010001fc03031bc3ceb6bbe39cff938355b5a50adb6db21b7a6af649d7b4bc419d7876487d95000006130113031302010001cd0000000b0009000006736572766572ff01000100000a00140012001d00170018001901000101010201030104003300260024001d0020e4ffb68ac05f8d96c99da26698346c6be16482badddafe051a66b4f18d668f0b002a0000002b0003020304000d0020001e040305030603020308040805080604010501060102010402050206020202002d00020101001c0002400100150057000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000002900dd00b800b22c035d829359ee5ff7af4ec900000000262a6494dc486d2c8a34cb33fa90bf1b0070ad3c498883c9367c09a2be785abc55cd226097a3a982117283f82a03a143efd3ff5dd36d64e861be7fd61d2827db279cce145077d454a3664d4e6da4d29ee03725a6a4dafcd0fc67d2aea70529513e3da2677fa5906c5b3f7d8f92f228bda40dda721470f9fbf297b5aea617646fac5c03272e970727c621a79141ef5f7de6505e5bfbc388e93343694093934ae4d357fad6aacb",
);

const suite = suiteById(0x1301)!;

Deno.test("RFC 8448 ClientHello and ServerHello decode and re-encode byte for byte", () => {
  const ch = decodeClientHello(CH.subarray(4));
  deepEqual(ch.cipherSuites, [0x1301, 0x1303, 0x1302]);
  equal(decodeServerName(findExtension(ch.extensions, ExtensionType.server_name)!), "server");
  deepEqual(decodeClientVersions(findExtension(ch.extensions, ExtensionType.supported_versions)!), [
    0x0304,
  ]);
  const [share] = decodeClientKeyShares(findExtension(ch.extensions, ExtensionType.key_share)!);
  equal(share.group, 0x001d);
  equal(
    toHex(share.keyExchange),
    "99381de560e4bd43d23d8e435a7dbafeb3c06e51c13cae4d5413691e529aaf2c",
  );
  deepEqual(encodeClientHello(ch), CH);

  const sh = decodeServerHello(SH.subarray(4));
  equal(sh.isRetryRequest, false);
  equal(sh.cipherSuite, 0x1301);
  equal(decodeServerKeyShare(findExtension(sh.extensions, ExtensionType.key_share)!).group, 0x1d);
  deepEqual(encodeServerHello(sh), SH);
});

Deno.test("RFC 8448 simple 1-RTT key schedule", async () => {
  const transcript = new Transcript();
  transcript.add(CH, SH);
  const schedule = await KeySchedule.start(suite);
  await schedule.enterHandshake(ECDHE);
  const hs = await schedule.trafficSecrets("hs", await transcript.hash(suite));
  equal(toHex(hs.client), "b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21");
  equal(toHex(hs.server), "b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38");
  const serverKeys = await trafficKeys(suite, hs.server);
  equal(toHex(serverKeys.key), "3fce516009c21727d0f2e4e86ee403bc");
  equal(toHex(serverKeys.iv), "5d313eb2671276ee13000b30");

  transcript.add(EE, CERT, CV);
  deepEqual(
    await finishedMac(suite, hs.server, await transcript.hash(suite)),
    SERVER_FINISHED.subarray(4),
  );
  transcript.add(SERVER_FINISHED);

  await schedule.enterMaster();
  const ap = await schedule.trafficSecrets("ap", await transcript.hash(suite));
  equal(toHex(ap.client), "9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5");
  equal(toHex(ap.server), "a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643");
  const appKeys = await trafficKeys(suite, ap.server);
  equal(toHex(appKeys.key), "9f02283b6c9c07efc26bb9f2ac92e356");
  equal(toHex(appKeys.iv), "cf782b88dd83549aadf1e984");

  deepEqual(
    await finishedMac(suite, hs.client, await transcript.hash(suite)),
    CLIENT_FINISHED.subarray(4),
  );
  transcript.add(CLIENT_FINISHED);
  const rms = await schedule.resumptionMasterSecret(await transcript.hash(suite));
  equal(toHex(rms), "7df235f2031d2a051287d02b0241b0bfdaf86cc856231f2d5aba46c434ec196c");
  const psk = await resumptionPsk(suite, rms, new Uint8Array([0, 0]));
  equal(toHex(psk), "4ecd0eb6ec3b4d87f5d6028f922ca4c5851a277fd41311c9e62d2c9492e1c4f3");
});

Deno.test("RFC 8448 resumption PSK binder", async () => {
  const psk = fromHex("4ecd0eb6ec3b4d87f5d6028f922ca4c5851a277fd41311c9e62d2c9492e1c4f3");
  const binderKey = await (await KeySchedule.start(suite, psk)).binderKey();
  equal(toHex(binderKey), "69fe131a3bbad5d63c64eebcc30e395b9d8107726a13d074e389dbc8a4e47256");
  const binder = await finishedMac(
    suite,
    binderKey,
    await new Transcript().hash(suite, RESUMED_CH_PREFIX),
  );
  equal(toHex(binder), "3add4fb2d8fdf822a0ca3cf7678ef5e88dae990141c5924d57bb6fa31b9e5f9d");
});
