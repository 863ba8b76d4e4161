#!/usr/bin/env bash
# Measures what a flood of silent clients does to a legitimate client's wait when a
# listener has a --greet-delay (issue 29, item 8). One server, two listeners behind
# the same worker: A (PROXY protocol, --greet-delay) takes the flood, greeter-load
# --send-proxy --distinct-sources, every connection a new source (10.0.0.0 and up)
# that waits out its delay and reconnects; B (plain, no delay) serves a client of its
# own. The legitimate clients, from 127.0.0.1, one connection at a time during the
# flood: on A, a source that waited out one delay before the flood (so passed, if the
# server keeps passes), and on B. Loopback only; every run is bounded.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/greet-delay-flood.sh [--flood N] [--max-connections N] [--delay DUR]
                                    [--duration SECONDS] [--server PATH] [-- SERVER FLAGS...]

Prints four lines:
  legit_delayed_listener completed=N errors=N p50_ms=MS p99_ms=MS max_ms=MS
  legit_plain_listener completed=N errors=N p50_ms=MS p99_ms=MS max_ms=MS
  flood completed=N errors=N
  server: totals ...            (the server's totals line at exit)
The legitimate clients' latency is connect to EOF (greeted and closed); the flood's
errors are its connections closed without the greeting (delay-full).
Default: --flood 1000 --max-connections 200 --delay 2s --duration 12 (a flood that
filled --max-connections before --max-delayed); SERVER FLAGS are added to
greeter-server's (e.g. --max-delayed 50).
--server PATH measures another build of greeter-server (e.g. one from before
--max-delayed, whose delayed connections count against --max-connections).
USAGE
}

flood=1000
max_connections=200
delay=2s
duration=12
server=
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --flood) flood=$2; shift 2 ;;
    --max-connections) max_connections=$2; shift 2 ;;
    --delay) delay=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --server) server=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "greet-delay-flood.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$duration" -lt 4 ]; then
  echo "greet-delay-flood.sh: --duration must be at least 4 seconds" >&2
  exit 2
fi

# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
greeter_setup
server=${server:-$bin/greeter-server}
cat >"$work/greeter.toml" <<TOML
max-connections = $max_connections
[[listener]]
port = 0
proxy-protocol = true
greet-delay = "$delay"
[[listener]]
port = 0
TOML
"$server" --config "$work/greeter.toml" "$@" >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
delayed_port=$(wait_for_port "$work/server.out" "$server_pid")
[ -n "$delayed_port" ] || { echo "greet-delay-flood.sh: the server did not start:" >&2; cat "$work/server.err" >&2; exit 1; }
plain_port=$(sed -n '2s/^listening on .*:\([0-9]*\)$/\1/p' "$work/server.out")

# load NAME PORT ARGS...: a greeter-load run into $work/NAME.json (it exits 1 when a
# connection failed, which the flood's turned-away ones do).
load() {
  local name=$1 port=$2; shift 2
  "$bin/greeter-load" --port "$port" --timeout 120s --json "$@" >"$work/$name.json" 2>"$work/$name.err" || true
  [ -s "$work/$name.json" ] || { echo "greet-delay-flood.sh: greeter-load ($name) failed:" >&2; cat "$work/$name.err" >&2; exit 1; }
}
# summary NAME: one line of its figures.
summary() {
  python3 - "$1" "$work/$1.json" <<'PY'
import json, sys
name, report = sys.argv[1], json.load(open(sys.argv[2]))
latency = report["latency_us"]
figures = f"completed={report['completed']} errors={report['errors_total']}"
if not name.startswith("flood"):
    figures += " " + " ".join(f"{key}_ms={latency[key] / 1000:.1f}" for key in ("p50", "p99", "max"))
print(name, figures)
PY
}

# The legitimate source waits out one delay before the flood: a server that keeps
# passes greets it at once from now on.
load warmup "$delayed_port" --send-proxy -c 1 -n 1
load flood "$delayed_port" --send-proxy --distinct-sources -c "$flood" -d "${duration}s" &
flood_pid=$!
# Measured once the flood has filled what it can (a second in), until it ends.
sleep 1
measured=$((duration - 2))
load legit_delayed_listener "$delayed_port" --send-proxy -c 1 -d "${measured}s" &
delayed_pid=$!
load legit_plain_listener "$plain_port" -c 1 -d "${measured}s"
wait "$delayed_pid"
wait "$flood_pid"
summary legit_delayed_listener
summary legit_plain_listener
summary flood
kill -TERM "$server_pid"
wait "$server_pid" || true
server_pid=
echo "server: $(grep -o 'totals .*' "$work/server.err" | tail -1)"
