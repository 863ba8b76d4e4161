#!/usr/bin/env bash
# Measures a large --deny-file: how long greeter-server takes to load it (from start
# to its "listening on" line, beside a start without it) and what it costs in memory
# (RSS with it minus RSS without, per entry). The entries are random IPv4 /32s and
# /24s (one in ten), and IPv6 /48s (one in ten), never loopback. Loopback only; every
# run is bounded.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/access-list.sh [-n ENTRIES]

Prints one line: entries=N load_ms=MS (without the list: MS) rss_kib=KIB (without:
KIB) bytes_per_entry=B. Default 500000 entries.
USAGE
}

entries=500000
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    -n) entries=$2; shift 2 ;;
    *) echo "access-list.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
greeter_setup
list="$work/deny.list"
python3 "$root/scripts/deny-list.py" "$entries" "$list"

# start_and_measure FLAGS...: prints "LOAD_MS RSS_KIB" of a server started with FLAGS.
start_and_measure() {
  local started ended rss
  started=$(date +%s%N)
  "$bin/greeter-server" --port 0 "$@" >"$work/server.out" 2>"$work/server.err" &
  server_pid=$!
  port=$(wait_for_port "$work/server.out" "$server_pid")
  ended=$(date +%s%N)
  [ -n "$port" ] || { echo "access-list.sh: the server did not start:" >&2; cat "$work/server.err" >&2; exit 1; }
  # The greeting path works with the list in place.
  "$bin/greeter-load" --port "$port" -c 4 -n 100 >/dev/null
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$server_pid/status")
  kill -TERM "$server_pid"
  wait "$server_pid" || true
  server_pid=
  echo "$(( (ended - started) / 1000000 )) $rss"
}

read -r plain_ms plain_rss < <(start_and_measure)
read -r list_ms list_rss < <(start_and_measure --deny-file "$list")
echo "entries=$entries load_ms=$list_ms (without the list: $plain_ms) rss_kib=$list_rss (without: $plain_rss) bytes_per_entry=$(( (list_rss - plain_rss) * 1024 / entries ))"
