#!/usr/bin/env bash
# Generates the development PKI into certs/ when it is missing, then runs the Q-TLS daemon on it,
# listening on 127.0.0.1:8443 only (the development keys are public): give --listen ADDR:PORT,
# --port N or QSIGN_LISTEN to listen elsewhere. Other options go to qsign serve.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
[ -f certs/root-ca.crt ] || scripts/qsign pki init --dir certs
listen=(--listen 127.0.0.1:8443)
for arg in "$@"; do
  case "$arg" in --listen | --listen=* | --port | --port=*) listen=() ;; esac
done
[ -n "${QSIGN_LISTEN:-}" ] && listen=()
exec scripts/qsign serve "${listen[@]}" \
  --cert certs/server.crt --key certs/server.key --ca certs/root-ca.crt "$@"
