#!/usr/bin/env bash
# Work that lives in the connections: greeter-server with two listeners, a large
# greeting to many fast readers on the first and the default greeting to a few
# clients whose latency is measured on the second. Does the work spread over the
# workers (each worker thread's CPU seconds), and what do the small clients wait?
# All traffic stays on 127.0.0.1; every run is bounded.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/spread.sh [--workers "1 2 4"] [-d DUR] [--size BYTES] [--readers R]
                         [--clients C] [--repeat N] [--before DIR] [--json FILE]

For each worker count: greeter-server --config (two [[listener]] tables on
127.0.0.1: a greeting of --size bytes, and the default greeting) --workers W;
greeter-load -c R reads the large greeting (every byte checked) while greeter-load
-c C takes the default one, both for DUR. Reported: each worker thread's CPU
seconds over the run (/proc/PID/task/TID/stat of the greeter-worker threads),
the small clients' connections/s, p99 and longest connect-to-EOF, the large
greetings completed, and errors. Rounds are interleaved; the table gives medians
(errors summed, the worst longest wait). Unpinned: the point is both cores.

  --workers L   worker counts (default "1 2 4")
  -d DUR        duration of each run (default 6s)
  --size BYTES  the large greeting (default 16777216, 16 MiB)
  --readers R   fast readers of the large greeting (default 48)
  --clients C   clients of the default greeting, whose latency is measured (default 8)
  --repeat N    rounds (default 1)
  --before DIR  also a greeter-server built elsewhere (DIR holds the binary), as
                build "before"
  --json FILE   also write the table's rows to FILE as JSON, one object a line
  -h, --help    this help
Needs: python3.
USAGE
}

worker_counts="1 2 4"
duration=6s
size=16777216
readers=48
clients=8
repeat=1
before_bin=
json_out=
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --workers) worker_counts=$2; shift 2 ;;
    -d) duration=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --readers) readers=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --before) before_bin=$(realpath "$2"); shift 2 ;;
    --json) json_out=$(realpath -m "$2"); shift 2 ;;
    *) echo "spread.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
command -v python3 >/dev/null || { echo "spread.sh: python3 is missing" >&2; exit 1; }
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
before_and_after spread.sh
greeter_setup

python3 -c "import sys; sys.stdout.buffer.write((b'0123456789abcdef' * ($size // 16 + 1))[:$size])" >"$work/large"
cat >"$work/spread.toml" <<TOML
[[listener]]
host = "127.0.0.1"
port = 0
message-file = "$work/large"

[[listener]]
host = "127.0.0.1"
port = 0
TOML

# worker_cpu PID: "INDEX TICKS" per worker thread ("greeter-wN"; builds before
# 2026-12-07 named them "greeter-worker-N", which the kernel cuts to 15 bytes, so the
# index is taken from the order of the thread ids: the workers are started in order).
worker_cpu() {
  local task index=0
  for task in $(ls /proc/"$1"/task | sort -n); do
    case "$(cat "/proc/$1/task/$task/comm" 2>/dev/null)" in
      greeter-w*) ;;
      *) continue ;;
    esac
    # utime and stime: fields 14 and 15, counted after the ")" that ends the name.
    echo "$index $(sed 's/.*) //' "/proc/$1/task/$task/stat" | awk '{print $12 + $13}')"
    index=$((index + 1))
  done
}
ticks_per_second=$(getconf CLK_TCK)
results="$work/results.jsonl"
: >"$results"

# measure BUILD WORKERS: one run; appends a JSON row to $results.
measure() {
  local build=$1 workers=$2
  # Emptied here, not only by the redirection: that happens in the child, which may
  # run after the wait below has read the last server's lines.
  : >"$work/server.out"
  "$(server_binary "$build")" --config "$work/spread.toml" --workers "$workers" \
    >"$work/server.out" 2>"$work/server.err" &
  server_pid=$!
  for _ in $(seq 200); do
    [ "$(grep -c '^listening on ' "$work/server.out" 2>/dev/null)" -ge 2 ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  # The tables' order is the "listening on" lines' order.
  local large_port small_port
  large_port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$work/server.out" | sed -n 1p)
  small_port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$work/server.out" | sed -n 2p)
  if [ -z "$small_port" ]; then
    echo "spread.sh: greeter-server did not start:" >&2
    cat "$work/server.err" >&2
    exit 1
  fi
  worker_cpu "$server_pid" >"$work/cpu.before"
  "$bin/greeter-load" --host 127.0.0.1 --port "$large_port" -c "$readers" -d "$duration" \
    --message-file "$work/large" --timeout 60s --json >"$work/large.json" 2>/dev/null &
  local large_pid=$!
  "$bin/greeter-load" --host 127.0.0.1 --port "$small_port" -c "$clients" -d "$duration" \
    --json >"$work/small.json" 2>/dev/null || true
  wait "$large_pid" || true
  worker_cpu "$server_pid" >"$work/cpu.after"
  kill -TERM "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
  python3 - "$build" "$workers" "$work/large.json" "$work/small.json" "$work/cpu.before" \
    "$work/cpu.after" "$ticks_per_second" >>"$results" <<'PY'
import json, sys
build, workers = sys.argv[1], int(sys.argv[2])
large, small = (json.load(open(p)) for p in sys.argv[3:5])
ticks = lambda path: dict(tuple(map(int, line.split())) for line in open(path) if line.strip())
before, after, hz = ticks(sys.argv[5]), ticks(sys.argv[6]), int(sys.argv[7])
print(json.dumps({"build": build, "workers": workers,
                  "worker_cpu_s": [(after[i] - before.get(i, 0)) / hz for i in sorted(after)],
                  "small_per_s": small["connections_per_s"],
                  "small_p99_ms": small["latency_us"]["p99"] / 1000,
                  "small_max_ms": small["latency_us"]["max"] / 1000,
                  "large_completed": large["completed"],
                  "errors": small["errors_total"] + large["errors_total"]}))
PY
}

for round in $(seq "$repeat"); do
  for workers in $worker_counts; do
    for build in $builds; do
      measure "$build" "$workers"
      echo "done: round $round, $build, --workers $workers" >&2
    done
  done
done

echo
echo "$readers readers of a $size-byte greeting and $clients clients of the default one, $duration;" \
  "medians of $repeat round(s) (errors summed, the worst longest wait)."
echo
python3 - "$results" "$builds" "$worker_counts" ${json_out:+"$json_out"} <<'PY'
import json, statistics, sys
results, builds, workers = sys.argv[1:4]
json_path = sys.argv[4] if len(sys.argv) > 4 else None
rows = [json.loads(line) for line in open(results) if line.strip()]
summaries = []
for build in builds.split():
    for w in map(int, workers.split()):
        runs = [r for r in rows if (r["build"], r["workers"]) == (build, w)]
        med = lambda k: statistics.median(r[k] for r in runs)
        summaries.append({"build": build, "workers": w, "rounds": len(runs),
                          "worker_cpu_s": [statistics.median(r["worker_cpu_s"][i] for r in runs)
                                           for i in range(w)],
                          "small_per_s": med("small_per_s"), "small_p99_ms": med("small_p99_ms"),
                          "small_max_ms": max(r["small_max_ms"] for r in runs),
                          "large_completed": med("large_completed"),
                          "errors": sum(r["errors"] for r in runs)})
if json_path:
    with open(json_path, "w") as out:
        for s in summaries:
            out.write(json.dumps(s) + "\n")
print("| build | workers | worker CPU s (by worker) | small conn/s | small p99 ms | small max ms "
      "| large greetings | errors |")
print("|---|---|---|---|---|---|---|---|")
for s in summaries:
    cpu = ", ".join(f"{i}: {v:.1f}" for i, v in enumerate(s["worker_cpu_s"]))
    print(f"| {s['build']} | {s['workers']} | {cpu} | {s['small_per_s']:.0f} | {s['small_p99_ms']:.2f} "
          f"| {s['small_max_ms']:.2f} | {s['large_completed']:.0f} | {s['errors']} |")
PY
