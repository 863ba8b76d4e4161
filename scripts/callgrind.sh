#!/usr/bin/env bash
# Counts the instructions greeter-server executes (user space, all threads) for N
# connections, under valgrind's callgrind: a figure that, unlike CPU time, does not
# move with the machine's load, so a change to the fast path can be held to it.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/callgrind.sh [-n CONNECTIONS] [-c CONCURRENT] [--server-bin DIR] [-- SERVER FLAGS...]

Starts target/release/greeter-server (or DIR/greeter-server) under
`valgrind --tool=callgrind` on a free loopback port, runs greeter-load for N
connections (default 10000) C at a time (default 1), stops the server with SIGTERM
and prints one line: `instructions=I connections=N per_connection=I/N`. The count
includes start-up and shutdown, the same for every build, so compare two builds at
the same N. One connection at a time makes each connection one loop round, so the
count repeats to within a fraction of a per cent; with more at once it moves by a
few per cent with how the connections happen to batch. With `-- --config FILE`, no
--port is added and the load goes to the first listener.

Needs: valgrind (Debian: valgrind).
USAGE
}

total=10000
concurrent=1
server_bin=
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    -n) total=$2; shift 2 ;;
    -c) concurrent=$2; shift 2 ;;
    --server-bin) server_bin=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "callgrind.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is missing (apt-get install valgrind)" >&2; exit 1; }

# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
greeter_setup
server="${server_bin:-$bin}/greeter-server"

# --port 0, unless a --config names the ports (its [[listener]] tables; the load goes
# to the first listener printed).
port_flag=(--port 0)
for arg in "$@"; do [ "$arg" = --config ] && port_flag=(); done
valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
  "$server" ${port_flag[@]+"${port_flag[@]}"} "$@" >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
port=$(wait_for_port "$work/server.out" "$server_pid")
[ -n "$port" ] || { echo "callgrind.sh: the server did not start under valgrind:" >&2; cat "$work/server.err" >&2; exit 1; }
"$bin/greeter-load" --port "$port" -c "$concurrent" -n "$total" --json >"$work/load.json"
kill -TERM "$server_pid"
wait "$server_pid" || true
server_pid=
python3 - "$work/load.json" "$work/callgrind.out" "$total" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
completed, errors = report["completed"], report["errors_total"]
if completed != int(sys.argv[3]) or errors:
    sys.exit(f"callgrind.sh: the load run had {errors} errors, {completed} completed")
instructions = next(int(line.split()[1]) for line in open(sys.argv[2]) if line.startswith("summary:"))
print(f"instructions={instructions} connections={completed} per_connection={instructions // completed}")
PY
