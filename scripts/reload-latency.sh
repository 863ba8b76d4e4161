#!/usr/bin/env bash
# Measures what a reload of a large deny list costs the greetings: greeter-load runs
# against a server whose --config names a deny file of N entries, in three phases of
# equal length: before any reload, while SIGHUP is sent every RELOAD_EVERY (each
# reload reads and builds the whole list again, on the reload thread), and after.
# Prints each phase's connections/s, p99 and max connect-to-EOF latency, and how many
# reloads the server logged. Loopback only; every run is bounded.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/reload-latency.sh [-n ENTRIES] [-c CONNECTIONS] [-d PHASE] [--every DUR]

Prints one line per phase:
  phase=before|during|after connections=N conn_per_s=R p99_us=P max_us=M errors=E
then reloads=N (the reloads the server completed during the middle phase).
Defaults: 500000 entries, -c 64, phases of 4s, a SIGHUP every 0.5s.
USAGE
}

entries=500000
connections=64
phase=4
every=0.5
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    -n) entries=$2; shift 2 ;;
    -c) connections=$2; shift 2 ;;
    -d) phase=${2%s}; shift 2 ;;
    --every) every=${2%s}; shift 2 ;;
    *) echo "reload-latency.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
greeter_setup
list="$work/deny.list"
python3 "$root/scripts/deny-list.py" "$entries" "$list"
config="$work/greeter.toml"
printf 'port = 0\ndeny-file = "%s"\n' "$list" >"$config"

"$bin/greeter-server" --config "$config" >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
port=$(wait_for_port "$work/server.out" "$server_pid")
[ -n "$port" ] || { echo "reload-latency.sh: the server did not start:" >&2; cat "$work/server.err" >&2; exit 1; }

# run_phase NAME: one greeter-load run of the phase's length; prints its line.
run_phase() {
  "$bin/greeter-load" --port "$port" -c "$connections" -d "${phase}s" --json >"$work/$1.json"
  python3 - "$1" "$work/$1.json" <<'PY'
import json, sys
name, report = sys.argv[1], json.load(open(sys.argv[2]))
# null when no connection completed: no latency, printed as none.
latency = report["latency_us"] or {"p99": "none", "max": "none"}
print("phase=%s connections=%d conn_per_s=%.0f p99_us=%s max_us=%s errors=%d" % (
    name, report["completed"], report["connections_per_s"], latency["p99"], latency["max"], report["errors_total"]))
PY
}

run_phase before
reloads_before=$(grep -c 'reload: configuration reloaded' "$work/server.err" || true)
# SIGHUPs all along the middle phase, stopped with it.
(
  end=$(( $(date +%s%N) + ${phase%.*} * 1000000000 ))
  while [ "$(date +%s%N)" -lt "$end" ]; do
    kill -HUP "$server_pid" 2>/dev/null || break
    sleep "$every"
  done
) &
signals=$!
run_phase during
wait "$signals" || true
reloads=$(( $(grep -c 'reload: configuration reloaded' "$work/server.err" || true) - reloads_before ))
run_phase after
echo "reloads=$reloads"
