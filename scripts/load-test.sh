#!/usr/bin/env bash
# Builds greeter in release mode, starts greeter-server on a free loopback port, drives
# it with greeter-load, stops it with SIGTERM, and prints the load report, the
# listen-queue overflows during the run and the server's totals. Exits non-zero if
# any connection failed or the server did not stop cleanly. All traffic stays on
# 127.0.0.1; every run is bounded by -n or -d.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/load-test.sh [--server-arg ARG]... [GREETER-LOAD ARGS...]

Builds in release mode, starts greeter-server --port 0 on 127.0.0.1, runs
greeter-load against it, then stops the server with SIGTERM. Prints the load
report, the listen-queue overflows during the run (TcpExtListenOverflows,
machine-wide) and the server's totals.

  --server-arg ARG   pass ARG to greeter-server (repeat for several, e.g.
                     --server-arg --message-file --server-arg greeting.txt)
  -h, --help         this help

Every other argument goes to greeter-load (default: -c 64 -n 20000 -d 30s, a few
seconds). Examples:
  scripts/load-test.sh                          # 20,000 connections, 64 at once
  scripts/load-test.sh -c 512 -n 200000         # 200,000 connections, 512 at once
  scripts/load-test.sh -c 256 -n 1000000 -d 10m # a million connections

The greeting the load tool expects follows the server's --message/--message-file
when given through --server-arg. Exit status: 0 when every connection received the
exact greeting and the server exited 0; 1 otherwise.
USAGE
}

server_args=()
load_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --server-arg)
      [ $# -ge 2 ] || { echo "load-test.sh: --server-arg needs a value" >&2; exit 2; }
      server_args+=("$2"); shift 2 ;;
    *) load_args+=("$1"); shift ;;
  esac
done
[ ${#load_args[@]} -gt 0 ] || load_args=(-c 64 -n 20000 -d 30s)

# The load tool must expect what the server sends.
for ((i = 0; i < ${#server_args[@]}; i++)); do
  case "${server_args[$i]}" in
    --message|--message-file) load_args+=("${server_args[$i]}" "${server_args[$((i + 1))]}") ;;
  esac
done

# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
greeter_setup

"$bin/greeter-server" --host 127.0.0.1 --port 0 "${server_args[@]}" \
  >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
port=$(wait_for_port "$work/server.out" "$server_pid")
if [ -z "$port" ]; then
  echo "load-test.sh: greeter-server did not start:" >&2
  cat "$work/server.err" >&2
  exit 1
fi
echo "greeter-server pid $server_pid listening on 127.0.0.1:$port"

load_status=0
overflows_before=$(listen_overflows)
"$bin/greeter-load" --host 127.0.0.1 --port "$port" "${load_args[@]}" || load_status=$?
echo "listen overflows during the run (whole machine): $(( $(listen_overflows) - overflows_before ))"

# The server may have died during the run: that is reported, not a reason to stop
# before the report.
server_status=0
if kill -TERM "$server_pid" 2>/dev/null; then
  wait "$server_pid" || server_status=$?
else
  wait "$server_pid" || server_status=$?
  echo "load-test.sh: greeter-server had already exited (status $server_status)" >&2
  [ "$server_status" -ne 0 ] || server_status=1
fi
server_pid=
echo "server: $(grep -o 'totals .*' "$work/server.err" | tail -1)"
grep -E ' (WARN|ERROR) ' "$work/server.err" >&2 || true

if [ "$load_status" -ne 0 ] || [ "$server_status" -ne 0 ]; then
  echo "load-test.sh: FAILED (greeter-load exit $load_status, greeter-server exit $server_status)" >&2
  exit 1
fi
