#!/usr/bin/env bash
# Fetches Debian 13's OpenSSL 3.5 libcrypto (package libssl3t64) into ~/.cache/qsign-openssl35/ and
# prints its path, to run the crypto tests against a libcrypto with ML-KEM and ML-DSA:
#   QSIGN_LIBCRYPTO=$(bash tests/crypto/openssl35.sh) deno test … tests/crypto
# On a Debian 12 host (glibc 2.36) the library needs one symbol of glibc 2.38,
# __isoc23_strtol: it is renamed to strtol (the same function for decimal input) and the
# GLIBC_2.38 requirement marked weak, in the copy only. On Debian 13 itself use the system's.
set -euo pipefail
dir="${XDG_CACHE_HOME:-$HOME/.cache}/qsign-openssl35"
lib="$dir/libcrypto.so.3"
if [ -f "$lib" ]; then echo "$lib"; exit 0; fi
mkdir -p "$dir"
list=$(mktemp)
trap 'rm -f "$list"' EXIT
echo 'deb [arch=amd64] http://deb.debian.org/debian trixie main' >"$list"
apt_opts=(-o "Dir::Etc::sourcelist=$list" -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0)
apt-get update "${apt_opts[@]}" >/dev/null
(cd "$dir" && apt-get download "${apt_opts[@]}" libssl3t64 >/dev/null 2>&1)
# Back to the host's own package lists.
apt-get update >/dev/null
dpkg-deb -x "$dir"/libssl3t64_*.deb "$dir/root"
cp "$dir/root/usr/lib/x86_64-linux-gnu/libcrypto.so.3" "$lib"
python3 - "$lib" <<'PY'
import struct, sys
path = sys.argv[1]
data = bytearray(open(path, "rb").read())
shoff, = struct.unpack_from("<Q", data, 0x28)
shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
def section(kind):
    return next(s for s in sections if s[1] == kind)
def cstring(at):
    return bytes(data[at:data.index(b"\0", at)])
dynsym, versym, verneed = section(11), section(0x6FFFFFFF), section(0x6FFFFFFE)
strtab = sections[dynsym[6]][4]
for i in range(dynsym[5] // 24):
    name, = struct.unpack_from("<I", data, dynsym[4] + 24 * i)
    if cstring(strtab + name) == b"__isoc23_strtol":
        data[strtab + name:strtab + name + 7] = b"strtol\0"
        struct.pack_into("<H", data, versym[4] + 2 * i, 1)  # unversioned
at = verneed[4]
while True:
    _, count, _, aux, following = struct.unpack_from("<HHIII", data, at)
    entry = at + aux
    for _ in range(count):
        _, flags, _, name, step = struct.unpack_from("<IHHII", data, entry)
        if cstring(strtab + name) == b"GLIBC_2.38":
            struct.pack_into("<H", data, entry + 4, flags | 2)  # VER_FLG_WEAK
        entry += step
    if not following:
        break
    at += following
open(path, "wb").write(data)
PY
echo "$lib"
