#!/usr/bin/env bash
# Compares greeter-server with (a) a Python server written like the original tutorial
# (blocking accept, send, close, backlog 5), (b) a minimal C reference server that
# marks the limit of the fast path (nonblocking listener in epoll, accept4 until
# EAGAIN, write, close) and (c) the same C server with greeter's close policy (write,
# shutdown of the write side, one getsockopt(TCP_INFO), close), in one run on this
# machine. The server is pinned to CPU 0 and
# greeter-load to CPU 1. All traffic stays on 127.0.0.1; every run is bounded.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/compare.sh [-n CONNECTIONS] [--repeat R] [--concurrency "1 64 512"]
                          [--servers "greeter c-policy c python"] [--no-pin] [--no-strace]
                          [--no-rss] [--trapped N] [--trap-interval DUR] [--trap-idle S]

The machine is shared and noisy, so every measurement is repeated R times, the
servers interleaved round by round, and the table gives the median of each figure
(the worst max latency, all errors and overflows summed) with the min-max spread of
server CPU per connection.

For each server and each concurrency: connections/s, p99 and max latency, errors,
server CPU microseconds per connection (user+sys from /proc/PID/stat), listen-queue
overflows (TcpExtListenOverflows delta from /proc/net/netstat), greeter-load's share
of user CPU, and syscalls and wake-ups (`epoll_wait` returns, all threads) per
connection (strace -c -f, in a separate run of 10000 connections, since strace slows
the server down).
Then greeter-server's RSS with 10000 held peers (scripts/held-rss.sh).

  -n N             connections per measured run (default 100000; runs at
                   concurrency 1 use N/5). Each run also stops after 60 s.
  --repeat R       rounds of every measurement (default 3)
  --concurrency L  concurrency levels (default "1 64 512")
  --servers L      servers to compare (default "greeter c-policy c python"); also
                   greeter-wN: greeter-server --workers N (greeter-w2,
                   greeter-w64, ...); greeter-metrics: with
                   --metrics on; greeter-proxy: with --proxy-protocol (its load sends
                   a PROXY v1 header first); greeter-proxy-v2: the same with v2
                   headers; c-proxy: the C server with greeter's close policy that
                   takes each v1 header with one recv (and defers accepts, as
                   greeter's PROXY listeners do); greeter-logs: with
                   --log-connections (its stderr a file); greeter-logs-json:
                   the same with --log-format json; greeter-config:
                   --config with three [[listener]] tables, loaded on the first;
                   greeter-deny: --deny-file of 500,000 entries (none loopback);
                   greeter-delay: --greet-delay 100ms (every connection held
                   for the delay: run it at a high concurrency);
                   greeter-trapped: greeter-server with a second, --tarpit
                   listener holding --trapped clients (connected before each
                   run, evenly over one drip interval, and reading what they are
                   dripped) while the load greets on the first; its row
                   greeter-trapped-net: the same less the drips' CPU (their
                   rate idle, --trap-idle s before the run, times the run's length);
                   greeter-tarpit: the same two listeners, nothing trapped. c-policy is the
                   one to hold greeter to: the same syscalls, nothing else
  --before DIR     also a greeter-server built elsewhere (DIR holds the binary, e.g.
                   a worktree's target/release), as servers greeter-before,
                   greeter-logs-before, greeter-proxy-before and greeter-wN-before:
                   before and after a change in one run
  --no-pin         do not pin (to compare --workers 1 and 2 on both cores)
  --json FILE      also write the table's rows to FILE as JSON, one object a line
                   (server, concurrent, connections, errors, cpu_us_per_connection,
                   syscalls_per_connection, ...), for scripts that check them
  --no-strace      skip the syscall counts
  --no-rss         skip the held-peers RSS measurement
  --trapped N      clients greeter-trapped holds (default 15000; the open-file
                   limit must allow N + a few hundred, in the server and in the
                   client process)
  --trap-interval DUR  greeter-trapped's --drip-interval (default 10s)
  --trap-idle S    seconds the drips' idle CPU is counted before each run (default 5)
With greeter-trapped and greeter in the servers, a last line gives the ratio of
their server CPU per connection at each concurrency (the issue's goal: at most 1.05x).
Needs: cc, python3, taskset, strace (Debian: build-essential, util-linux, strace).
USAGE
}

total=100000
repeat=3
levels="1 64 512"
servers="greeter c-policy c python"
with_strace=1
with_rss=1
before_bin=
json_out=
trapped=15000
trap_interval=10s
trap_idle=5
pin_server=(taskset -c 0)
pin_load=(taskset -c 1)
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    -n) total=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --concurrency) levels=$2; shift 2 ;;
    --servers) servers=$2; shift 2 ;;
    --no-strace) with_strace=0; shift ;;
    --no-rss) with_rss=0; shift ;;
    --no-pin) pin_server=(); pin_load=(); shift ;;
    --before) before_bin=$2; shift 2 ;;
    --json) json_out=$(realpath -m "$2"); shift 2 ;;
    --trapped) trapped=$2; shift 2 ;;
    --trap-interval) trap_interval=$2; shift 2 ;;
    --trap-idle) trap_idle=$2; shift 2 ;;
    *) echo "compare.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
for tool in cc python3 taskset; do
  command -v "$tool" >/dev/null || { echo "compare.sh: $tool is missing" >&2; exit 1; }
done
if [ "$with_strace" = 1 ] && ! command -v strace >/dev/null; then
  echo "compare.sh: strace is missing (apt-get install strace, or --no-strace)" >&2; exit 1
fi

# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
greeter_setup
holder_pid=
trap 'stop_holder; greeter_cleanup' EXIT

# The reference servers, in scripts/reference/: the original tutorial's Python server
# (one blocking accept at a time, backlog 5), and a C epoll server that does the fast
# path and nothing else (c; with -DCLOSE_POLICY=1, greeter's close policy: c-policy).
reference="$root/scripts/reference"
cc -O2 -o "$work/reference_server" "$reference/epoll_server.c"
cc -O2 -DCLOSE_POLICY=1 -o "$work/policy_server" "$reference/epoll_server.c"
cc -O2 -DCLOSE_POLICY=1 -DPROXY_HEADER=1 -o "$work/proxy_server" "$reference/epoll_server.c"

# greeter-config serves three [[listener]] tables; the load goes to the first, which
# sends the default greeting (the fast path as configured in production).
cat >"$work/listeners.toml" <<'TOML'
[[listener]]
port = 0

[[listener]]
port = 0
message = "SSH-2.0-OpenSSH_9.6\r\n"

[[listener]]
port = 0
message = "220 mail.example.org ESMTP\r\n"
TOML

# greeter-trapped and greeter-tarpit: the load's listener first, then a tarpit one.
cat >"$work/tarpit.toml" <<TOML
max-trapped = $((trapped + 100))

[[listener]]
port = 0

[[listener]]
port = 0
tarpit = true
drip-interval = "$trap_interval"
TOML
case "$trap_interval" in
  *ms) trap_spread=$(python3 -c "print(${trap_interval%ms} / 1000)") ;;
  *s) trap_spread=${trap_interval%s} ;;
  *) echo "compare.sh: --trap-interval $trap_interval: give it as 10s or 500ms" >&2; exit 2 ;;
esac

# greeter-deny: a 500,000-entry deny list that never matches loopback.
case " $servers " in *" greeter-deny "*) python3 "$root/scripts/deny-list.py" 500000 "$work/deny.list" ;; esac

server_command() {
  case "$1" in
    greeter) echo "$bin/greeter-server --port 0" ;;
    greeter-w[0-9]*-before) local n=${1#greeter-w}; echo "$before_bin/greeter-server --port 0 --workers ${n%-before}" ;;
    greeter-w[0-9]*) echo "$bin/greeter-server --port 0 --workers ${1#greeter-w}" ;;
    greeter-metrics) echo "$bin/greeter-server --port 0 --metrics 127.0.0.1:0" ;;
    greeter-proxy|greeter-proxy-v2) echo "$bin/greeter-server --port 0 --proxy-protocol" ;;
    greeter-logs) echo "$bin/greeter-server --port 0 --log-connections" ;;
    greeter-logs-json) echo "$bin/greeter-server --port 0 --log-connections --log-format json" ;;
    greeter-config) echo "$bin/greeter-server --config $work/listeners.toml" ;;
    greeter-deny) echo "$bin/greeter-server --port 0 --deny-file $work/deny.list" ;;
    greeter-delay) echo "$bin/greeter-server --port 0 --greet-delay 100ms" ;;
    greeter-trapped|greeter-tarpit) echo "$bin/greeter-server --config $work/tarpit.toml" ;;
    greeter-before) echo "$before_bin/greeter-server --port 0" ;;
    greeter-proxy-before) echo "$before_bin/greeter-server --port 0 --proxy-protocol" ;;
    greeter-logs-before) echo "$before_bin/greeter-server --port 0 --log-connections" ;;
    c) echo "$work/reference_server" ;;
    c-policy) echo "$work/policy_server" ;;
    c-proxy) echo "$work/proxy_server" ;;
    python) echo "python3 $reference/tutorial_server.py" ;;
  esac
}

# load_flags NAME: what greeter-load needs for that server.
load_flags() {
  case "$1" in
    greeter-proxy|greeter-proxy-before|c-proxy) echo "--send-proxy v1" ;;
    greeter-proxy-v2) echo "--send-proxy v2" ;;
  esac
}

# start_server NAME [PREFIX...]: starts it on CPU 0; sets server_pid, port, measured_pid.
start_server() {
  local name=$1; shift
  : >"$work/server.out"
  # shellcheck disable=SC2046
  "${pin_server[@]}" "$@" $(server_command "$name") >"$work/server.out" 2>"$work/server.err" &
  server_pid=$!
  port=$(wait_for_port "$work/server.out" "$server_pid")
  [ -n "$port" ] || { echo "compare.sh: $name did not start" >&2; cat "$work/server.err" >&2; exit 1; }
  # Under strace the server is strace's child.
  measured_pid=$(pgrep -P "$server_pid" -n 2>/dev/null || true)
  [ -n "$measured_pid" ] && [ "$#" -gt 0 ] || measured_pid=$server_pid
  [ "$name" != greeter-trapped ] || trap_clients
}

# trap_clients: $trapped clients on greeter-trapped's tarpit listener (its second
# "listening on" line), held by scripts/trapped_clients.py on the load's CPU; returns
# once the server holds them all (that many more open files).
trap_clients() {
  local tarpit_port files_before
  for _ in $(seq 100); do
    [ "$(grep -c '^listening on ' "$work/server.out")" -ge 2 ] && break
    sleep 0.05
  done
  tarpit_port=$(sed -n '2s/^listening on .*:\([0-9]*\)$/\1/p' "$work/server.out")
  [ -n "$tarpit_port" ] || { echo "compare.sh: greeter-trapped has no tarpit listener" >&2; exit 1; }
  files_before=$(ls "/proc/$measured_pid/fd" | wc -l)
  "${pin_load[@]}" python3 "$root/scripts/trapped_clients.py" "$tarpit_port" "$trapped" "$trap_spread" \
    >"$work/holder.out" &
  holder_pid=$!
  for _ in $(seq 1200); do
    grep -q '^connected ' "$work/holder.out" && [ $(( $(ls "/proc/$measured_pid/fd" | wc -l) - files_before )) -ge "$trapped" ] &&
      return 0
    kill -0 "$holder_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "compare.sh: greeter-trapped did not trap $trapped clients" >&2
  exit 1
}

stop_holder() {
  if [ -n "${holder_pid:-}" ]; then
    kill -TERM "$holder_pid" 2>/dev/null || true
    wait "$holder_pid" 2>/dev/null || true
    holder_pid=
  fi
}

stop_server() {
  stop_holder
  kill -TERM "$measured_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}

# All threads of the process (utime and stime of /proc/PID/stat include them).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

ticks_per_second=$(getconf CLK_TCK)
results="$work/results.tsv"
syscalls="$work/syscalls.tsv"
: >"$results"
: >"$syscalls"

# measure NAME C N: one bounded load run; appends a row to $results.
measure() {
  local name=$1 c=$2 n=$3
  start_server "$name"
  local overflows_before ticks_before ticks_after overflows idle_before idle_after started ended
  if [ "$name" = greeter-trapped ]; then
    # The drips' own CPU, idle: subtracted for greeter-trapped-net.
    idle_before=$(cpu_ticks "$measured_pid")
    sleep "$trap_idle"
    idle_after=$(cpu_ticks "$measured_pid")
  fi
  overflows_before=$(listen_overflows)
  ticks_before=$(cpu_ticks "$measured_pid")
  started=$(date +%s.%N)
  TIMEFORMAT='%3U %3S'
  # shellcheck disable=SC2046
  { time "${pin_load[@]}" "$bin/greeter-load" --port "$port" -c "$c" -n "$n" -d 60s $(load_flags "$name") \
      --json >"$work/load.json" 2>/dev/null || true; } 2>"$work/load.time"
  ticks_after=$(cpu_ticks "$measured_pid")
  ended=$(date +%s.%N)
  overflows=$(( $(listen_overflows) - overflows_before ))
  stop_server
  python3 "$root/scripts/report.py" run "$work/load.json" "$work/load.time" "$name" "$c" \
    "$ticks_before" "$ticks_after" "$ticks_per_second" "$overflows" >>"$results"
  if [ "$name" = greeter-trapped ]; then
    python3 "$root/scripts/report.py" run "$work/load.json" "$work/load.time" greeter-trapped-net "$c" \
      "$(python3 -c "print($ticks_before + ($idle_after - $idle_before) / $trap_idle * ($ended - $started))")" \
      "$ticks_after" "$ticks_per_second" "$overflows" >>"$results"
  fi
}

# count_syscalls NAME C N: strace -c -f over a run; appends NAME, C, calls/connection.
count_syscalls() {
  local name=$1 c=$2 n=$3 tracer=
  if [ "$name" = greeter-trapped ]; then
    # Attached once the clients are trapped: their accepts are not the greetings'.
    start_server "$name"
    strace -c -f -o "$work/strace.txt" -p "$measured_pid" 2>/dev/null &
    tracer=$!
    sleep 0.3
  else
    start_server "$name" strace -c -f -o "$work/strace.txt"
  fi
  # shellcheck disable=SC2046
  "${pin_load[@]}" "$bin/greeter-load" --port "$port" -c "$c" -n "$n" -d 60s $(load_flags "$name") \
    --json >"$work/strace-load.json" 2>/dev/null || true
  if [ -n "$tracer" ]; then
    kill -INT "$tracer"
    wait "$tracer" || true
  fi
  stop_server
  python3 "$root/scripts/report.py" syscalls "$work/strace-load.json" "$work/strace.txt" \
    "$name" "$c" >>"$syscalls"
}

for round in $(seq "$repeat"); do
  for name in $servers; do
    for c in $levels; do
      n=$total
      [ "$c" -eq 1 ] && n=$((total / 5))
      measure "$name" "$c" "$n"
      echo "done: round $round, $name at $c concurrent" >&2
    done
  done
done
if [ "$with_strace" = 1 ]; then
  for name in $servers; do
    for c in $levels; do
      # 10000 connections: enough that start-up syscalls vanish in the average.
      n=$total
      [ "$c" -eq 1 ] && n=$((total / 5))
      count_syscalls "$name" "$c" $(( n < 10000 ? n : 10000 ))
      echo "done: syscalls of $name at $c concurrent" >&2
    done
  done
fi

echo
echo "Medians of $repeat rounds (max ms: the worst; errors and overflows: summed over the rounds)."
echo
rows_json=${json_out:-$work/rows.json}
table_servers=$servers
[[ " $servers " != *" greeter-trapped "* ]] || table_servers=$(echo " $servers " | sed 's/ greeter-trapped / greeter-trapped greeter-trapped-net /')
python3 "$root/scripts/report.py" table "$results" "$syscalls" "$table_servers" "$levels" "$rows_json"
if [[ " $servers " == *" greeter-trapped "* && " $servers " == *" greeter "* ]]; then
  echo
  echo "greeter-trapped-net: greeter-trapped's CPU less its drips' (their idle rate, $trap_idle s before each run, times the run's length)."
  python3 "$root/scripts/report.py" ratio "$rows_json" greeter-trapped greeter \
    "beside $trapped trapped clients (drips every $trap_interval)"
  python3 "$root/scripts/report.py" ratio "$rows_json" greeter-trapped-net greeter \
    "beside $trapped trapped clients, their drips' CPU taken off"
fi

if [ "$with_rss" = 1 ]; then
  echo
  echo "greeter-server with 10000 held peers (scripts/held-rss.sh 10000):"
  "$root/scripts/held-rss.sh" 10000
fi
