#!/usr/bin/env bash
# Installs qsign as a systemd service: the binary to /usr/local/bin/qsign, the units to
# /etc/systemd/system, a sample configuration to /etc/qsign/qsign.toml (kept when present), the
# system users qtls (the daemon) and qtls-ca (the renewal, the only reader of the CA keys), and
# the production layout of /etc/qsign (docs/production.md):
#
#   /etc/qsign          root:qtls     0750  qsign.toml (0640); qtls-ca is in group qtls
#   /etc/qsign/certs    qtls-ca:qtls  2750  served certificates, keys (0640), trust, CRLs
#   /etc/qsign/ca       qtls-ca       0700  intermediate CAs (pki init --dir), keys 0600
#
# Run it again after `qsign pki init` or copying files in: it re-applies owners and modes.
#
#   bash scripts/install.sh [--root DIR] [--binary FILE] [--users] [--no-user] [--no-systemctl]
#
# --binary FILE   install FILE instead of compiling one with `deno task compile` (needs Deno's
#                 compile runtime: downloaded, or DENORT_BIN pointing at a local denort)
# --root DIR      install under DIR instead of / (packaging, tests); implies --no-user and
#                 --no-systemctl
# --users         with --root: still create the users and apply owners (tests of the layout)
# --no-user       create no users and change no owners
# --no-systemctl  do not run systemctl daemon-reload
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

root=""
binary=""
users_flag=0
create_user=1
run_systemctl=1
while (($#)); do
  case "$1" in
    --root) root="${2:?--root needs a directory}"; create_user=0; run_systemctl=0; shift 2 ;;
    --binary) binary="${2:?--binary needs a file}"; shift 2 ;;
    --no-user) create_user=0; shift ;;
    --users) users_flag=1; shift ;;
    --no-systemctl) run_systemctl=0; shift ;;
    -h | --help)
      # The comment block at the top, and nothing else.
      sed -n '2,/^[^#]/{/^#/!q;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
      exit 0
      ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

((users_flag)) && create_user=1

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
if compgen -G "$repo/docs/*.md" >/dev/null; then
  install -m 0644 "$repo"/docs/*.md "$root/usr/local/share/doc/qsign/"
fi

if ((create_user)); then
  for user in qtls qtls-ca; do
    id "$user" >/dev/null 2>&1 ||
      useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$user"
  done
  # qtls-ca also reads what the daemon reads (qsign.toml, certs/); never the other way round.
  usermod --append --groups qtls qtls-ca
fi
etc="$root/etc/qsign"
install -d -m 0750 "$etc"
install -d -m 2750 "$etc/certs"
install -d -m 0700 "$etc/ca"
if [ ! -e "$etc/qsign.toml" ]; then
  install -m 0640 "$repo/deploy/qsign.toml" "$etc/qsign.toml"
fi
if ((create_user)); then
  # The daemon (qtls) reads its configuration and certs/; the renewal (qtls-ca) writes certs/
  # (setgid: what it writes belongs to group qtls) and alone reads and writes ca/.
  chown root:qtls "$etc" "$etc/qsign.toml"
  chmod 0750 "$etc"
  chmod 0640 "$etc/qsign.toml"
  chown -R qtls-ca:qtls "$etc/certs"
  find "$etc/certs" -type d -exec chmod 2750 {} +
  find "$etc/certs" -type f -exec chmod 0640 {} +
  chown -R qtls-ca:qtls-ca "$etc/ca"
  chmod -R go-rwx "$etc/ca"
  chmod 0700 "$etc/ca"
  if [ -e "$etc/ca-passphrase" ]; then chown root:root "$etc/ca-passphrase"; chmod 0600 "$etc/ca-passphrase"; fi
fi
if [ -e "$etc/ca/root-ca.key" ]; then
  echo "install.sh: warning: $etc/ca/root-ca.key is the Root CA's key on a network host;" \
    "keep it offline (qsign pki init --root-dir, docs/production.md)" >&2
fi

if ((run_systemctl)) && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  echo "install.sh: installed; edit /etc/qsign/qsign.toml, then:" >&2
  echo "  systemctl enable --now qsign-qtls.service qtls-cert-renewal.timer" >&2
else
  echo "install.sh: installed under ${root:-/}" >&2
fi
