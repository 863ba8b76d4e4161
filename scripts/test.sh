#!/usr/bin/env bash
# Runs the whole test suite: `cargo test`, then each script in scripts/ run small on
# loopback, checked against its own output. On a fresh machine it first installs the
# system tools the tests drive (Debian packages, as root): haproxy for the scale-out
# test, systemd for systemd-socket-activate, procps for kill, strace for compare.sh.
# Arguments go to `cargo test`; with arguments, the scripts are not run.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v kill >/dev/null 2>&1 || missing+=(procps)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
{ command -v systemd-socket-activate && command -v systemd-analyze; } >/dev/null 2>&1 || missing+=(systemd)
command -v strace >/dev/null 2>&1 || missing+=(strace)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: missing ${missing[*]}: install them (apt-get install ${missing[*]}) or run as root" >&2
    exit 1
  fi
  echo "test.sh: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cargo test "$@"
[ $# -eq 0 ] || exit 0

# The scripts, run small. Each must exit 0 and print what its docs promise.
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# expect SCRIPT PATTERN...: every extended regex PATTERN matches a line of the output.
expect() {
  local script=$1; shift
  for pattern in "$@"; do
    grep -Eq "$pattern" "$out" || {
      echo "test.sh: $script printed no line matching '$pattern'; its output:" >&2
      cat "$out" >&2
      exit 1
    }
  done
  echo "test.sh: $script ok"
}

scripts/load-test.sh -c 32 -n 5000 -d 60s >"$out"
expect load-test.sh '^completed +5000$' '^errors +0 ' \
  '^listen overflows during the run \(whole machine\): [0-9]+$' \
  '^server: totals .* accepted=5000 greeted=5000 closed_early=0 '

scripts/held-rss.sh 1000 -- --send-buffer 64KiB >"$out"
expect held-rss.sh '^rss_before_kib=[0-9]+ rss_held_kib=[0-9]+ held=1000 bytes_per_held_connection=[0-9]+$' \
  '^tcp_mem_before_kib=[0-9]+ tcp_mem_held_kib=[0-9]+$'

scripts/compare.sh -n 2000 --repeat 1 --concurrency "1 16" --no-rss >"$out"
expect compare.sh \
  '^\| greeter \| 1 \| 400 \| [0-9]+ .* \| 0 \| [0-9.]+ \([0-9.-]+\) \| [0-9]+ \| [0-9.]+ \| [0-9.]+ \|$' \
  '^\| greeter \| 16 \| 2000 \| ' '^\| c \| 16 \| 2000 \| ' '^\| c-policy \| 16 \| 2000 \| ' \
  '^\| python \| 16 \| [0-9]+ \| '
