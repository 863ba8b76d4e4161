#!/usr/bin/env bash
# Runs the whole test suite. On a fresh machine it first installs the system tools the
# tests drive (Debian packages, as root): haproxy for the scale-out test, systemd for
# systemd-socket-activate, procps for kill. Arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v kill >/dev/null 2>&1 || missing+=(procps)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
{ command -v systemd-socket-activate && command -v systemd-analyze; } >/dev/null 2>&1 || missing+=(systemd)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: missing ${missing[*]}: install them (apt-get install ${missing[*]}) or run as root" >&2
    exit 1
  fi
  echo "test.sh: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

exec cargo test "$@"
