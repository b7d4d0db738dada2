#!/usr/bin/env bash
# Installs qsign as a systemd service: the binary to /usr/local/bin/qsign, the units to
# /etc/systemd/system, a sample configuration to /etc/qsign/qsign.toml (kept when present), the
# system user qtls, and the README as the units' documentation.
#
#   bash scripts/install.sh [--root DIR] [--binary FILE] [--no-user] [--no-systemctl]
#
# --binary FILE   install FILE instead of compiling one with `deno task compile` (needs Deno's
#                 compile runtime: downloaded, or DENORT_BIN pointing at a local denort)
# --root DIR      install under DIR instead of / (packaging, tests); implies --no-user and
#                 --no-systemctl
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

root=""
binary=""
create_user=1
run_systemctl=1
while (($#)); do
  case "$1" in
    --root) root="${2:?--root needs a directory}"; create_user=0; run_systemctl=0; shift 2 ;;
    --binary) binary="${2:?--binary needs a file}"; shift 2 ;;
    --no-user) create_user=0; shift ;;
    --no-systemctl) run_systemctl=0; shift ;;
    -h | --help) sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ -z "$binary" ]; then
  deno="$repo/.tools/node_modules/.bin/deno"
  [ -x "$deno" ] || deno="$(command -v deno)" || { echo "install.sh: no deno; run scripts/setup.sh" >&2; exit 1; }
  (cd "$repo" && "$deno" task compile) || {
    echo "install.sh: deno compile failed (it downloads Deno's runtime; set DENORT_BIN to a local denort, or pass --binary FILE)" >&2
    exit 1
  }
  binary="$repo/dist/qsign"
fi
[ -x "$binary" ] || { echo "install.sh: $binary is not an executable file" >&2; exit 1; }

install -d -m 0755 "$root/usr/local/bin" "$root/etc/systemd/system" "$root/usr/local/share/doc/qsign"
install -m 0755 "$binary" "$root/usr/local/bin/qsign"
install -m 0644 "$repo"/systemd/qsign-qtls.service "$repo"/systemd/qtls-cert-renewal.service \
  "$repo"/systemd/qtls-cert-renewal.timer "$root/etc/systemd/system/"
install -m 0644 "$repo/README.md" "$root/usr/local/share/doc/qsign/README.md"

if ((create_user)) && ! id qtls >/dev/null 2>&1; then
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin qtls
fi
owner=()
((create_user)) && owner=(-o root -g qtls)
# The daemon reads /etc/qsign; the renewal service (user qtls) writes /etc/qsign/certs.
install -d -m 0750 "${owner[@]}" "$root/etc/qsign"
install -d -m 0770 "${owner[@]}" "$root/etc/qsign/certs"
if [ ! -e "$root/etc/qsign/qsign.toml" ]; then
  install -m 0640 "${owner[@]}" "$repo/deploy/qsign.toml" "$root/etc/qsign/qsign.toml"
fi

if ((run_systemctl)) && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  echo "install.sh: installed; edit /etc/qsign/qsign.toml, then:" >&2
  echo "  systemctl enable --now qsign-qtls.service qtls-cert-renewal.timer" >&2
else
  echo "install.sh: installed under ${root:-/}" >&2
fi
