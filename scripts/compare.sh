#!/usr/bin/env bash
# Compares greeter-server with (a) a Python server written like the original tutorial
# (blocking accept, send, close, backlog 5) and (b) a minimal C reference server that
# marks the limit of the fast path (nonblocking listener in epoll, accept4 until
# EAGAIN, write, close), in one run on this machine. The server is pinned to CPU 0 and
# greeter-load to CPU 1. All traffic stays on 127.0.0.1; every run is bounded.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/compare.sh [-n CONNECTIONS] [--concurrency "1 64 512"] [--servers "greeter c python"] [--no-pin]

For each server and each concurrency: connections/s, p99 and max latency, errors,
server CPU microseconds per connection (user+sys from /proc/PID/stat), listen-queue
overflows (TcpExtListenOverflows delta from /proc/net/netstat), greeter-load's share
of user CPU, and syscalls per connection (strace -c -f, in a separate run of 10000
connections, since strace slows the server down).
Then greeter-server's RSS with 10000 held peers (scripts/held-rss.sh).

  -n N             connections per measured run (default 100000; runs at
                   concurrency 1 use N/5). Each run also stops after 60 s.
  --concurrency L  concurrency levels (default "1 64 512")
  --servers L      servers to compare (default "greeter c python"); also
                   greeter-w2: greeter-server --workers 2
  --no-pin         do not pin (to compare --workers 1 and 2 on both cores)
  --no-strace      skip the syscall counts
  --no-rss         skip the held-peers RSS measurement
Needs: cc, python3, taskset, strace (Debian: build-essential, util-linux, strace).
USAGE
}

total=100000
levels="1 64 512"
servers="greeter c python"
with_strace=1
with_rss=1
pin_server=(taskset -c 0)
pin_load=(taskset -c 1)
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    -n) total=$2; shift 2 ;;
    --concurrency) levels=$2; shift 2 ;;
    --servers) servers=$2; shift 2 ;;
    --no-strace) with_strace=0; shift ;;
    --no-rss) with_rss=0; shift ;;
    --no-pin) pin_server=(); pin_load=(); shift ;;
    *) echo "compare.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
for tool in cc python3 taskset; do
  command -v "$tool" >/dev/null || { echo "compare.sh: $tool is missing" >&2; exit 1; }
done
if [ "$with_strace" = 1 ] && ! command -v strace >/dev/null; then
  echo "compare.sh: strace is missing (apt-get install strace, or --no-strace)" >&2; exit 1
fi

cd "$(dirname "$0")/.."
cargo build --release -q --bin greeter-server --bin greeter-load
ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# (a) The original tutorial's server: one blocking accept at a time, backlog 5.
cat >"$work/tutorial_server.py" <<'PY'
import socket
server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 0))
server.listen(5)
print("listening on 127.0.0.1:%d" % server.getsockname()[1], flush=True)
while True:
    client, _ = server.accept()
    client.send(b"Hello there! This is the hosted server")
    client.close()
PY

# (b) The fast path and nothing else: the floor for server CPU per connection.
cat >"$work/reference_server.c" <<'C'
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static const char greeting[] = "Hello there! This is the hosted server";

int main(void) {
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) || listen(listener, 1024) ||
        getsockname(listener, (struct sockaddr *)&addr, &len)) {
        perror("listen");
        return 1;
    }
    printf("listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
    fflush(stdout);
    int poll = epoll_create1(0);
    struct epoll_event event = {.events = EPOLLIN | EPOLLET, .data.fd = listener}, ready[64];
    epoll_ctl(poll, EPOLL_CTL_ADD, listener, &event);
    for (;;) {
        if (epoll_wait(poll, ready, 64, -1) < 0 && errno != EINTR) return 1;
        for (;;) {
            int conn = accept4(listener, NULL, NULL, SOCK_NONBLOCK);
            if (conn < 0) {
                if (errno == EINTR || errno == ECONNABORTED) continue;
                break; /* EAGAIN: backlog drained */
            }
            if (write(conn, greeting, sizeof greeting - 1) < 0) perror("write");
            close(conn);
        }
    }
}
C
cc -O2 -o "$work/reference_server" "$work/reference_server.c"

server_command() {
  case "$1" in
    greeter) echo "./target/release/greeter-server --port 0" ;;
    greeter-w2) echo "./target/release/greeter-server --port 0 --workers 2" ;;
    c) echo "$work/reference_server" ;;
    python) echo "python3 $work/tutorial_server.py" ;;
  esac
}

# start_server NAME [PREFIX...]: starts it on CPU 0; sets server_pid, port, measured_pid.
start_server() {
  local name=$1; shift
  : >"$work/server.out"
  # shellcheck disable=SC2046
  "${pin_server[@]}" "$@" $(server_command "$name") >"$work/server.out" 2>"$work/server.err" &
  server_pid=$!
  for _ in $(seq 200); do
    grep -q '^listening on ' "$work/server.out" 2>/dev/null && break
    sleep 0.05
  done
  port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$work/server.out")
  [ -n "$port" ] || { echo "compare.sh: $name did not start" >&2; cat "$work/server.err" >&2; exit 1; }
  # Under strace the server is strace's child.
  measured_pid=$(pgrep -P "$server_pid" -n 2>/dev/null || true)
  [ -n "$measured_pid" ] && [ "$#" -gt 0 ] || measured_pid=$server_pid
}

stop_server() {
  kill -TERM "$measured_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}

# All threads of the process (utime and stime of /proc/PID/stat include them).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
listen_overflows() {
  awk '/^TcpExt:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "ListenOverflows") col = i; h = 1 } else print $col }' /proc/net/netstat
}
json_field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval('d' + sys.argv[2]))" "$1" "$2"; }

ticks_per_second=$(getconf CLK_TCK)
results="$work/results.tsv"
printf 'server\tconcurrency\tconnections\tconn_per_s\tp99_ms\tmax_ms\terrors\tserver_cpu_us_per_conn\tlisten_overflows\tload_user_cpu_pct\tsyscalls_per_conn\n' >"$results"

for name in $servers; do
  for c in $levels; do
    n=$total
    [ "$c" -eq 1 ] && n=$((total / 5))
    start_server "$name"
    overflows_before=$(listen_overflows)
    ticks_before=$(cpu_ticks "$measured_pid")
    TIMEFORMAT='%3U %3S'
    { time "${pin_load[@]}" ./target/release/greeter-load --port "$port" -c "$c" -n "$n" -d 60s \
        --json >"$work/load.json" 2>/dev/null || true; } 2>"$work/load.time"
    ticks_after=$(cpu_ticks "$measured_pid")
    overflows=$(( $(listen_overflows) - overflows_before ))
    stop_server
    completed=$(json_field "$work/load.json" "['completed']")
    errors=$(json_field "$work/load.json" "['errors_total']")
    rate=$(json_field "$work/load.json" "['connections_per_s']")
    p99=$(json_field "$work/load.json" "['latency_us']['p99']")
    max=$(json_field "$work/load.json" "['latency_us']['max']")
    read -r load_user load_sys <"$work/load.time"
    cpu_us=$(python3 -c "print(f'{($ticks_after - $ticks_before) * 1e6 / $ticks_per_second / max($completed, 1):.2f}')")
    load_user_pct=$(python3 -c "print(f'{100 * $load_user / max($load_user + $load_sys, 1e-9):.1f}')")

    syscalls=-
    if [ "$with_strace" = 1 ]; then
      # 10000 connections: enough that start-up syscalls vanish in the average.
      strace_n=$(( n < 10000 ? n : 10000 ))
      start_server "$name" strace -c -f -o "$work/strace.txt"
      "${pin_load[@]}" ./target/release/greeter-load --port "$port" -c "$c" -n "$strace_n" -d 60s \
        --json >"$work/strace-load.json" 2>/dev/null || true
      stop_server
      traced=$(json_field "$work/strace-load.json" "['completed']")
      calls=$(awk '$NF == "total" {print $(NF-2)}' "$work/strace.txt")
      syscalls=$(python3 -c "print(f'{$calls / max($traced, 1):.2f}')")
    fi
    printf '%s\t%s\t%s\t%.0f\t%.2f\t%.2f\t%s\t%s\t%s\t%s\t%s\n' "$name" "$c" "$completed" "$rate" \
      "$(python3 -c "print($p99 / 1000)")" "$(python3 -c "print($max / 1000)")" "$errors" \
      "$cpu_us" "$overflows" "$load_user_pct" "$syscalls" >>"$results"
    echo "done: $name at $c concurrent" >&2
  done
done

echo
echo "| server | concurrent | connections | conn/s | p99 ms | max ms | errors | server CPU µs/conn | listen overflows | load user CPU % | syscalls/conn |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
tail -n +2 "$results" | while IFS=$'\t' read -r s c n r p m e u o l y; do
  echo "| $s | $c | $n | $r | $p | $m | $e | $u | $o | $l | $y |"
done

if [ "$with_rss" = 1 ]; then
  echo
  echo "greeter-server with 10000 held peers (scripts/held-rss.sh 10000):"
  scripts/held-rss.sh 10000
fi
