#!/usr/bin/env bash
# Measures --max-rate-per-ip's table under a million distinct clients: a PROXY header
# can name any address, so greeter-load --send-proxy --distinct-sources makes each
# connection a new source. One server, two listeners behind the same kind of header:
# the first without a rate (it warms up everything but the table), the second with
# one. RSS after the warm-up, then sampled through one run of every source: the table
# must stay within its bound, and nothing may grow once it is full. Loopback only; every
# run is bounded.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/rate-table.sh [-n SOURCES] [--table-size N]

Prints one line: sources=N table_size=N rss_kib=KIB (warmed up: KIB, a third in: KIB,
most: KIB) table_kib=KIB bytes_per_entry=B bound=B; exits 1 if the table outgrows the
bound (100 bytes an entry) or RSS grows by more than 1 MiB after a third of the
sources (the table full).
Default: 1000000 sources, a table of 100000.
USAGE
}

sources=1000000
table_size=100000
bound_per_entry=100
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    -n) sources=$2; shift 2 ;;
    --table-size) table_size=$2; shift 2 ;;
    *) echo "rate-table.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$sources" -lt $((3 * table_size)) ]; then
  echo "rate-table.sh: -n must be at least three times --table-size, to fill it and churn it" >&2
  exit 2
fi

# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
greeter_setup
cat >"$work/greeter.toml" <<TOML
proxy-protocol = true
[[listener]]
port = 0
[[listener]]
port = 0
max-rate-per-ip = "1000/s"
rate-table-size = $table_size
TOML
"$bin/greeter-server" --config "$work/greeter.toml" >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
plain_port=$(wait_for_port "$work/server.out" "$server_pid")
[ -n "$plain_port" ] || { echo "rate-table.sh: the server did not start:" >&2; cat "$work/server.err" >&2; exit 1; }
rate_port=$(sed -n '2s/^listening on .*:\([0-9]*\)$/\1/p' "$work/server.out")

rss() { awk '/^VmRSS/ {print $2}' "/proc/$server_pid/status"; }
# load PORT N: N connections, each from a new source; greeter-load exits 1 on any
# error (a refused or short greeting).
load() {
  "$bin/greeter-load" --port "$1" -c 64 -n "$2" -d 600s --send-proxy --distinct-sources >"$work/load.out" || {
    echo "rate-table.sh: the load on port $1 failed:" >&2; cat "$work/load.out" >&2; exit 1; }
}

load "$plain_port" 20000
warm=$(rss)
# One run of every source, RSS sampled as it goes: by the time a third of the sources
# have come, the table has been full (and churning) for a while.
( while kill -0 "$server_pid" 2>/dev/null; do rss; sleep 0.2; done ) >"$work/rss" &
sampler=$!
load "$rate_port" "$sources"
end=$(rss)
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
samples=$(wc -l <"$work/rss")
full=$(sed -n "$((samples / 3 + 1))p" "$work/rss")
most=$(sort -n "$work/rss" | tail -1)
table_kib=$((most - warm))
echo "sources=$sources table_size=$table_size rss_kib=$end (warmed up: $warm, a third in: $full, most: $most) table_kib=$table_kib bytes_per_entry=$((table_kib * 1024 / table_size)) bound=$bound_per_entry"
if [ $((table_kib * 1024)) -gt $((bound_per_entry * table_size)) ]; then
  echo "rate-table.sh: the table took ${table_kib} KiB, over $bound_per_entry bytes an entry" >&2
  exit 1
fi
if [ $((most - full)) -gt 1024 ]; then
  echo "rate-table.sh: RSS grew by $((most - full)) KiB after the table was full" >&2
  exit 1
fi
