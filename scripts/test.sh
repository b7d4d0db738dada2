#!/usr/bin/env bash
# Runs every test (unit, integration, OpenSSL 3.5 interop, SoftHSM2) after installing what they
# need, and ends with the line "N passed, N failed". With FILE... (test files or directories)
# it runs just those: bash scripts/test.sh tests/pki/keys_test.ts tests/hsm/
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh || exit 1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if (($#)); then
  # The permissions of the test task in deno.json, on the files given instead of tests/.
  read -ra test_command <<<"$(sed -nE 's/^ *"test": "deno test (.*) tests\/",?$/\1/p' deno.json)"
  NO_COLOR=1 .tools/node_modules/.bin/deno test "${test_command[@]}" "$@" 2>&1 | tee "$log"
else
  NO_COLOR=1 .tools/node_modules/.bin/deno task --quiet test 2>&1 | tee "$log"
fi
status=${PIPESTATUS[0]}
summary=$(grep -E '^(ok|FAILED) \| [0-9]+ passed' "$log" | tail -n 1)
passed=$(sed -E 's/.*\| ([0-9]+) passed.*/\1/' <<<"$summary")
failed=$(sed -nE 's/.*\| ([0-9]+) failed.*/\1/p' <<<"$summary")
passed=${passed:-0}
failed=${failed:-0}
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "$passed passed, $failed failed"
exit "$status"
