#!/usr/bin/env bash
# greeter's tarpit against endlessh 1.1 (Debian's), one after the other with the same
# clients at the same settings, in a network namespace of the script's own. See --help.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/tarpit-compare.sh [-n CLIENTS] [--interval DUR] [--seconds S] [--repeat R]
                                 [--line-length L] [--endlessh PATH] [--before DIR]
                                 [--strace-seconds S] [--no-pin] [--json FILE]

Takes endlessh's binary from Debian's package without installing it (apt-get download
endlessh, then dpkg-deb -x into a temporary folder; apt-get update first if it is not
found), builds greeter-server (release), and runs endlessh and greeter-server --tarpit
--workers 1 in a network namespace of the script's own (unshare -n, lo up: endlessh
binds every address), each with CLIENTS clients that never send and read what they
are dripped as it comes (so that no send ever blocks). The same settings for both:
endlessh -d INTERVAL -l L -m CLIENTS+100, greeter --drip-interval INTERVAL
--drip-line-length L --max-trapped CLIENTS+100. Rounds are interleaved, the order
alternating. Prints, medians of the rounds: the server's RSS per client (RSS with the
clients minus RSS before them, / CLIENTS), its CPU (user+sys, and each) per
client-hour and per line the clients received, then the ratios greeter/endlessh and
the issue's goals (RSS below endlessh's; CPU per client-hour and per line at most
1.05x). endlessh's lines are 3 to L bytes long (random), greeter's L: compare per line.

  -n N               clients (default 10000; the open-file limit must allow N + 200)
  --interval DUR     drip interval, e.g. 10s (default, endlessh's) or 1s, 100ms
  --seconds S        the measured window of each run (default 60)
  --repeat R         rounds (default 3)
  --line-length L    (default 32, both servers' default)
  --endlessh PATH    this endlessh binary instead of Debian's package
  --before DIR       also DIR/greeter-server (another build), as greeter-before
  --strace-seconds S then one more run each under strace -c -f (attached for S
                     seconds, after the clients are held): system calls per line
  --no-pin           do not pin (server on CPU 0, clients on CPU 1 by default)
  --json FILE        the runs' rows as JSON lines

Needs root (unshare -n), apt-get and dpkg-deb (or --endlessh), python3, taskset, ip;
perf (Debian: linux-perf), when present, gives the CPU total to the microsecond (else
the clock ticks). Exits 77, saying why in one line, where it cannot run (not root,
no network namespace, endlessh not downloadable).
USAGE
}

clients=10000
passed=()
endlessh=
before_bin=
json_out=
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    -n) clients=$2; passed+=(-n "$2"); shift 2 ;;
    --interval|--seconds|--repeat|--line-length|--strace-seconds) passed+=("$1" "$2"); shift 2 ;;
    --no-pin) passed+=(--no-pin); shift ;;
    --endlessh) endlessh=$(realpath -m "$2"); shift 2 ;;
    --before) before_bin=$(realpath -m "$2"); shift 2 ;;
    --json) json_out=$(realpath -m "$2"); shift 2 ;;
    *) echo "tarpit-compare.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
skip() { echo "tarpit-compare.sh: skipped: $*" >&2; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root for a network namespace of its own (unshare -n)"
for tool in python3 taskset ip unshare; do
  command -v "$tool" >/dev/null || { echo "tarpit-compare.sh: $tool is missing" >&2; exit 1; }
done
unshare -n true 2>/dev/null || skip "unshare -n fails here (no network namespaces in this container?)"

# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
before_and_after tarpit-compare.sh
greeter_setup
[ "$(ulimit -n)" -ge $((clients + 200)) ] ||
  { echo "tarpit-compare.sh: -n $clients needs $((clients + 200)) open files; the limit is $(ulimit -n)" >&2; exit 2; }

if [ -z "$endlessh" ]; then
  command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null ||
    skip "needs apt-get and dpkg-deb to take endlessh from Debian (or --endlessh PATH)"
  # apt-get download writes into the current directory: a subshell there.
  if ! (cd "$work" && apt-get download -qq endlessh >/dev/null 2>&1); then
    apt-get update -qq >/dev/null 2>&1 || true
    (cd "$work" && apt-get download -qq endlessh >/dev/null 2>&1) ||
      skip "apt-get download endlessh failed (offline, or no Debian archive in sources.list; or pass --endlessh PATH)"
  fi
  dpkg-deb -x "$work"/endlessh_*.deb "$work/endlessh"
  endlessh="$work/endlessh/usr/bin/endlessh"
  echo "endlessh: $(basename "$work"/endlessh_*.deb) (Debian's package, unpacked, not installed)"
fi
[ -x "$endlessh" ] || { echo "tarpit-compare.sh: no endlessh binary at $endlessh" >&2; exit 2; }

before_args=()
[ -z "$before_bin" ] || before_args=(--before "$(server_binary before)")
# The clients (python) and the servers run in a network namespace of their own: its
# loopback is up and nothing else is there.
# shellcheck disable=SC2016
unshare -n -- bash -c 'ip link set lo up && exec "$@"' tarpit-compare \
  python3 "$root/scripts/tarpit-compare.py" --endlessh "$endlessh" --greeter "$(server_binary after)" \
  ${before_args[@]+"${before_args[@]}"} --work "$work" ${json_out:+--json "$json_out"} \
  ${passed[@]+"${passed[@]}"}
