#!/usr/bin/env bash
# Generates the development PKI into certs/ when it is missing, then runs the Q-TLS daemon on it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
[ -f certs/root-ca.crt ] || scripts/qsign pki init --dir certs
exec scripts/qsign serve \
  --cert certs/server.crt --key certs/server.key --ca certs/root-ca.crt "$@"
