#!/usr/bin/env bash
# Runs every test (unit, integration, OpenSSL 3.5 interop, SoftHSM2) after installing what they
# need, then the crypto tests again on OpenSSL 3.5's libcrypto (Debian 13's, fetched by
# tests/crypto/openssl35.sh: its ML-KEM, ML-DSA and P-384 code paths), and ends with the line
# "N passed, N failed" over both. With FILE... (test files or directories) it runs just those,
# once: bash scripts/test.sh tests/pki/keys_test.ts tests/hsm/
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh || exit 1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# The permissions of the test task in deno.json, for the files given instead of tests/.
read -ra test_command <<<"$(sed -nE 's/^ *"test": "deno test (.*) tests\/",?$/\1/p' deno.json)"
passed=0
failed=0
status=0
# Runs deno test on "$@" (with the environment given before it) and adds its counts. A run still
# going after LIMIT seconds is ended with every process it started (timeout signals its process
# group) and counts as failed, so that a hung test cannot hold CI past its own limit.
run() {
  local limit=$1
  shift
  NO_COLOR=1 timeout --kill-after=30 "$limit" env "$@" 2>&1 | tee "$log"
  local run_status=${PIPESTATUS[0]}
  local summary p f
  summary=$(grep -E '^(ok|FAILED) \| [0-9]+ passed' "$log" | tail -n 1)
  p=$(sed -nE 's/.*\| ([0-9]+) passed.*/\1/p' <<<"$summary")
  f=$(sed -nE 's/.*\| ([0-9]+) failed.*/\1/p' <<<"$summary")
  p=${p:-0}
  f=${f:-0}
  if [ "$run_status" -eq 124 ] || [ "$run_status" -eq 137 ]; then
    echo "the test run had not ended after $limit s and was stopped" >&2
  fi
  if [ "$run_status" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  passed=$((passed + p))
  failed=$((failed + f))
  if [ "$run_status" -ne 0 ]; then status=$run_status; fi
}
deno=.tools/node_modules/.bin/deno
if (($#)); then
  run 2100 "$deno" test "${test_command[@]}" "$@"
else
  run 2100 "$deno" task --quiet test
  if openssl35=$(bash tests/crypto/openssl35.sh); then
    echo "== tests/crypto/ again on $openssl35"
    run 600 QSIGN_LIBCRYPTO="$openssl35" "$deno" test "${test_command[@]}" tests/crypto/
  else
    echo "tests/crypto/openssl35.sh could not fetch OpenSSL 3.5's libcrypto" >&2
    failed=$((failed + 1))
    status=1
  fi
fi
echo "$passed passed, $failed failed"
exit "$status"
