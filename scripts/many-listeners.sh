#!/usr/bin/env bash
# One busy listener among many idle ones: greeter-server with configs of 1, 16, 200
# and 1,000 [[listener]] tables (port 0, 127.0.0.1), greeter-load against the first,
# for --workers 1 and 2. An idle listener must cost nothing: the rate and the server
# CPU a connection with many listeners are compared with the one-listener run of the
# same build and worker count. All traffic stays on 127.0.0.1; every run is bounded.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/many-listeners.sh [--listeners "1 16 200 1000"] [--workers "1 2"]
                                 [-c C] [-d DUR] [--repeat R] [--idle SECONDS]
                                 [--before DIR] [--no-pin] [--json FILE]

For each worker count and each number of [[listener]] tables: greeter-server
--config (N tables, port = 0, host 127.0.0.1) --workers W, greeter-load against the
first listener; connections/s, server CPU microseconds a connection (user+sys of
/proc/PID/stat over the load), p99, errors, and then, with the load gone, the
server's CPU and context switches (all threads, /proc/PID/task/*/status) over an
idle window. Ratios are to the run with the fewest listeners (1 by default) of the
same build and worker count. Rounds are interleaved (every configuration once a
round); the table gives medians (errors summed, the min-max of CPU a connection).
A last line per build and worker count says whether the most listeners kept
>= 0.95x the rate and <= 1.05x the CPU a connection.

  --listeners L  numbers of [[listener]] tables (default "1 16 200 1000")
  --workers L    worker counts (default "1 2")
  -c C           greeter-load's connections in flight (default 512)
  -d DUR         greeter-load's duration per run (default 4s)
  --repeat R     rounds (default 3)
  --idle S       idle window after each run, whole seconds (default 1; 0: none)
  --before DIR   also a greeter-server built elsewhere (DIR holds the binary, e.g. a
                 worktree's target/release), as build "before", in the same rounds
  --no-pin       do not pin (the server on CPU 0 and greeter-load on CPU 1 by default)
  --json FILE    also write the table's rows to FILE as JSON, one object a line
  -h, --help     this help
Needs: python3, taskset (util-linux).
USAGE
}

listener_counts="1 16 200 1000"
worker_counts="1 2"
concurrency=512
duration=4s
repeat=3
idle=1
before_bin=
json_out=
pin_server=(taskset -c 0)
pin_load=(taskset -c 1)
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --listeners) listener_counts=$2; shift 2 ;;
    --workers) worker_counts=$2; shift 2 ;;
    -c) concurrency=$2; shift 2 ;;
    -d) duration=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --idle) idle=$2; shift 2 ;;
    --before) before_bin=$(realpath "$2"); shift 2 ;;
    --no-pin) pin_server=(); pin_load=(); shift ;;
    --json) json_out=$(realpath -m "$2"); shift 2 ;;
    *) echo "many-listeners.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
for tool in python3 taskset; do
  command -v "$tool" >/dev/null || { echo "many-listeners.sh: $tool is missing" >&2; exit 1; }
done
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
before_and_after many-listeners.sh
greeter_setup

for n in $listener_counts; do
  for _ in $(seq "$n"); do printf '[[listener]]\nhost = "127.0.0.1"\nport = 0\n\n'; done >"$work/listeners-$n.toml"
done

# All threads of the process.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
context_switches() {
  cat /proc/"$1"/task/*/status 2>/dev/null |
    awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ { n += $2 } END { print n + 0 }'
}
ticks_per_second=$(getconf CLK_TCK)
results="$work/results.tsv"
: >"$results"

# measure BUILD WORKERS LISTENERS: one run; appends a row to $results.
measure() {
  local build=$1 workers=$2 listeners=$3
  # Emptied here, not only by the redirection: that happens in the child, which may
  # run after the wait below has read the last server's lines.
  : >"$work/server.out"
  "${pin_server[@]}" "$(server_binary "$build")" --config "$work/listeners-$listeners.toml" \
    --workers "$workers" >"$work/server.out" 2>"$work/server.err" &
  server_pid=$!
  # Every listener bound before the load starts.
  for _ in $(seq 400); do
    [ "$(grep -c '^listening on ' "$work/server.out" 2>/dev/null)" -ge "$listeners" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  port=$(wait_for_port "$work/server.out" "$server_pid")
  if [ -z "$port" ] || [ "$(grep -c '^listening on ' "$work/server.out")" -lt "$listeners" ]; then
    echo "many-listeners.sh: greeter-server ($build, $listeners listeners) did not start:" >&2
    cat "$work/server.err" >&2
    exit 1
  fi
  local ticks_before ticks_after idle_ticks_before idle_ticks_after switches_before switches_after
  ticks_before=$(cpu_ticks "$server_pid")
  "${pin_load[@]}" "$bin/greeter-load" --host 127.0.0.1 --port "$port" -c "$concurrency" \
    -d "$duration" --json >"$work/load.json" 2>/dev/null || true
  ticks_after=$(cpu_ticks "$server_pid")
  idle_ticks_before=0 idle_ticks_after=0 switches_before=0 switches_after=0
  if [ "$idle" -gt 0 ]; then
    # The last closes and lingers settle first.
    sleep 0.5
    idle_ticks_before=$(cpu_ticks "$server_pid")
    switches_before=$(context_switches "$server_pid")
    sleep "$idle"
    idle_ticks_after=$(cpu_ticks "$server_pid")
    switches_after=$(context_switches "$server_pid")
  fi
  kill -TERM "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
  python3 - "$work/load.json" "$build" "$workers" "$listeners" "$ticks_before" "$ticks_after" \
    "$ticks_per_second" "$idle" "$idle_ticks_before" "$idle_ticks_after" "$switches_before" \
    "$switches_after" >>"$results" <<'PY'
import json, sys
path, build, workers, listeners = sys.argv[1:5]
before, after, hz, idle, idle_before, idle_after, sw_before, sw_after = map(int, sys.argv[5:13])
try:
    report = json.load(open(path))
except ValueError:
    report = {"completed": 0, "connections_per_s": 0, "errors_total": 1, "latency_us": {"p99": 0}}
completed = report["completed"]
cpu_us = (after - before) * 1e6 / hz / max(completed, 1)
idle_pct = 100 * (idle_after - idle_before) / hz / idle if idle else 0
switches = (sw_after - sw_before) / idle if idle else 0
print("\t".join(str(v) for v in [build, workers, listeners, completed, report["connections_per_s"],
      report["latency_us"]["p99"] / 1000, report["errors_total"], cpu_us, idle_pct, switches]))
PY
}

for round in $(seq "$repeat"); do
  for workers in $worker_counts; do
    for listeners in $listener_counts; do
      for build in $builds; do
        measure "$build" "$workers" "$listeners"
        echo "done: round $round, $build, --workers $workers, $listeners listeners" >&2
      done
    done
  done
done

echo
echo "greeter-load -c $concurrency -d $duration against the first listener; medians of $repeat interleaved rounds" \
  "(errors summed); server $([ ${#pin_server[@]} -gt 0 ] && echo "on CPU 0, load on CPU 1" || echo "and load unpinned")."
echo
python3 - "$results" "$builds" "$worker_counts" "$listener_counts" "$idle" ${json_out:+"$json_out"} <<'PY'
import json, statistics, sys
results, builds, workers, listeners, idle = sys.argv[1:6]
json_path = sys.argv[6] if len(sys.argv) > 6 else None
rows = [line.rstrip("\n").split("\t") for line in open(results) if line.strip()]
summaries = []
for build in builds.split():
    for w in workers.split():
        base = None
        for n in listeners.split():
            runs = [r for r in rows if r[0] == build and r[1] == w and r[2] == n]
            col = lambda i: [float(r[i]) for r in runs]
            cpu = col(7)
            s = {"build": build, "workers": int(w), "listeners": int(n), "rounds": len(runs),
                 "connections": int(statistics.median(col(3))),
                 "connections_per_s": statistics.median(col(4)),
                 "p99_ms": statistics.median(col(5)), "errors": int(sum(col(6))),
                 "cpu_us_per_connection": statistics.median(cpu),
                 "cpu_us_min": min(cpu), "cpu_us_max": max(cpu),
                 "idle_cpu_percent": statistics.median(col(8)),
                 "idle_context_switches_per_s": statistics.median(col(9))}
            base = base or s
            s["rate_ratio"] = s["connections_per_s"] / max(base["connections_per_s"], 1e-9)
            s["cpu_ratio"] = s["cpu_us_per_connection"] / max(base["cpu_us_per_connection"], 1e-9)
            summaries.append(s)
if json_path:
    with open(json_path, "w") as out:
        for s in summaries:
            out.write(json.dumps(s) + "\n")
fewest = listeners.split()[0]
print(f"| build | workers | listeners | conn/s | rate vs {fewest} | server CPU µs/conn (min-max) "
      f"| CPU vs {fewest} | p99 ms | errors | idle CPU % | idle context switches/s |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for s in summaries:
    print(f"| {s['build']} | {s['workers']} | {s['listeners']} | {s['connections_per_s']:.0f} "
          f"| {s['rate_ratio']:.2f}x | {s['cpu_us_per_connection']:.1f} "
          f"({s['cpu_us_min']:.1f}-{s['cpu_us_max']:.1f}) | {s['cpu_ratio']:.2f}x "
          f"| {s['p99_ms']:.2f} | {s['errors']} | {s['idle_cpu_percent']:.1f} "
          f"| {s['idle_context_switches_per_s']:.1f} |")
print()
most = listeners.split()[-1]
for s in summaries:
    if str(s["listeners"]) != most or most == fewest:
        continue
    met = s["rate_ratio"] >= 0.95 and s["cpu_ratio"] <= 1.05
    print(f"goal ({s['build']}, --workers {s['workers']}, {most} listeners against {fewest}): "
          f"rate {s['rate_ratio']:.2f}x (>= 0.95), CPU a connection {s['cpu_ratio']:.2f}x (<= 1.05): "
          f"{'met' if met else 'MISSED'}")
PY
