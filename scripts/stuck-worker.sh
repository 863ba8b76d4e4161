#!/usr/bin/env bash
# A stuck worker: while greeter-load connects, one worker thread of greeter-server is
# stopped alone (as a debugger stops it: PTRACE_SEIZE + PTRACE_INTERRUPT, found by its
# name in /proc/PID/task, "greeter-wN", or in thread-id order for builds that named
# them "greeter-worker-N", which the kernel cuts to 15 bytes), the rest of the process
# running, and
# let go (PTRACE_DETACH) after the stall. How long did connections wait? With another
# worker that has room, about COVER_REST (25 ms) at most; with one worker, the stall.
# All traffic stays on 127.0.0.1; every run is bounded.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/stuck-worker.sh [--workers "1 2 4"] [--stop "none 0 1"] [--stall S]
                               [-c C] [--probes P] [--repeat R] [--before DIR]
                               [--json FILE]

For each worker count and each worker to stop (those that exist): greeter-server
--workers W on 127.0.0.1, greeter-load -c C running (connect to EOF, every byte
checked), and P probe clients (python3, one connection at a time each) that time
every connection from connect to the greeting; half a second in, worker N's
thread is stopped for the stall, then let go; the load runs a second more.
Reported: greeter-load's connections and its longest connect-to-EOF, the probes'
connections, their longest connect-to-greeting and how many waited more than 50 ms,
and the CPU seconds the other workers spent during the stall. Several rounds: the
worst longest wait, the counts summed.

  --workers L   worker counts (default "1 2 4")
  --stop L      which workers to stop, by index, and "none" for a run that stops
                nothing: the machine's own latency, to read the others against
                (default "none 0 1")
  --stall S     how long the worker stays stopped, in seconds (default 2)
  -c C          greeter-load's connections in flight (default 16)
  --probes P    probe clients (default 4)
  --repeat R    rounds (default 1)
  --before DIR  also a greeter-server built elsewhere (DIR holds the binary), as
                build "before"
  --json FILE   also write the table's rows to FILE as JSON, one object a line
  -h, --help    this help
Needs: python3, and the right to ptrace the server (root, or ptrace_scope 0).
USAGE
}

worker_counts="1 2 4"
stopped_workers="none 0 1"
stall=2
concurrency=16
probes=4
repeat=1
before_bin=
json_out=
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --workers) worker_counts=$2; shift 2 ;;
    --stop) stopped_workers=$2; shift 2 ;;
    --stall) stall=$2; shift 2 ;;
    -c) concurrency=$2; shift 2 ;;
    --probes) probes=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --before) before_bin=$(realpath "$2"); shift 2 ;;
    --json) json_out=$(realpath -m "$2"); shift 2 ;;
    *) echo "stuck-worker.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
command -v python3 >/dev/null || { echo "stuck-worker.sh: python3 is missing" >&2; exit 1; }
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
before_and_after stuck-worker.sh
greeter_setup
run_seconds=$(python3 -c "print($stall + 1.5)")

# The probe clients: P threads, each connecting one at a time until the time is up;
# prints the connections, the longest connect-to-greeting (to EOF: the greeting is
# followed by the close) and how many took over 50 ms.
cat >"$work/probe.py" <<'PY'
import json, socket, sys, threading, time
port, clients, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
end = time.monotonic() + seconds
waits, failed = [], [0]
lock = threading.Lock()

def client():
    while time.monotonic() < end:
        started = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as peer:
                got = b""
                while chunk := peer.recv(4096):
                    got += chunk
            ok = bool(got)
        except OSError:
            ok = False
        with lock:
            if ok:
                waits.append(time.monotonic() - started)
            else:
                failed[0] += 1

threads = [threading.Thread(target=client) for _ in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"connections": len(waits), "failed": failed[0],
                  "max_ms": 1000 * max(waits, default=0),
                  "over_50ms": sum(w > 0.05 for w in waits)}))
PY

# The stopper: stops worker N's thread of PID for S seconds (N = -1: none); prints the
# CPU seconds each worker thread spent meanwhile.
cat >"$work/stop.py" <<'PY'
import ctypes, json, os, sys, time
pid, index, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT, WALL = 17, 0x4206, 0x4207, 0x40000000
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long
hz = os.sysconf("SC_CLK_TCK")

def workers():
    # "greeter-wN"; older builds' "greeter-worker-N" is cut to 15 bytes by the kernel.
    # The workers are started in order, so their thread ids are in the order of their
    # index either way.
    tids = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
        except OSError:
            continue
        if name.startswith("greeter-w"):
            tids.append(int(tid))
    return dict(enumerate(sorted(tids)))

def cpu(tid):
    # utime and stime: fields 14 and 15, counted after the ")" that ends the name.
    fields = open(f"/proc/{pid}/task/{tid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / hz

def call(request, tid):
    if libc.ptrace(request, tid, None, None) != 0:
        sys.exit(f"stop.py: ptrace {request:#x} on thread {tid}: {os.strerror(ctypes.get_errno())}")

threads = workers()
if index >= 0 and index not in threads:
    sys.exit(f"stop.py: process {pid} has no worker {index} (it has {len(threads)})")
before = {i: cpu(t) for i, t in threads.items()}
if index >= 0:
    tid = threads[index]
    call(PTRACE_SEIZE, tid)
    call(PTRACE_INTERRUPT, tid)
    _, status = os.waitpid(tid, WALL)
    if not os.WIFSTOPPED(status):
        sys.exit(f"stop.py: thread {tid} did not stop ({status:#x})")
time.sleep(seconds)
after = {i: cpu(t) for i, t in threads.items()}
if index >= 0:
    call(PTRACE_DETACH, tid)
print(json.dumps({"cpu_s": {str(i): round(after[i] - before[i], 2) for i in sorted(threads)}}))
PY

results="$work/results.jsonl"
: >"$results"

# start_server BUILD WORKERS: sets server_pid and port, or says why not and returns 1.
start_server() {
  # Emptied here, not only by the redirection: that happens in the child, which may
  # run after wait_for_port has read the last server's line.
  : >"$work/server.out"
  "$(server_binary "$1")" --host 127.0.0.1 --port 0 --workers "$2" \
    >"$work/server.out" 2>"$work/server.err" &
  server_pid=$!
  port=$(wait_for_port "$work/server.out" "$server_pid")
  [ -z "$port" ] || return 0
  # Its state (Z: it ended, and kill -0 still finds it until it is waited for).
  local state status=0
  state=$(awk '{print $3}' "/proc/$server_pid/stat" 2>/dev/null || echo gone)
  kill -TERM "$server_pid" 2>/dev/null || true
  wait "$server_pid" || status=$?
  echo "stuck-worker.sh: greeter-server ($1, --workers $2) did not start (state $state," \
    "exit status $status once stopped):" >&2
  cat "$work/server.out" "$work/server.err" >&2
  server_pid=
  return 1
}

# measure BUILD WORKERS STOPPED: one run; appends a JSON row to $results.
measure() {
  local build=$1 workers=$2 stopped=$3
  start_server "$build" "$workers" || exit 1
  "$bin/greeter-load" --host 127.0.0.1 --port "$port" -c "$concurrency" -d "${run_seconds}s" \
    --timeout 30s --json >"$work/load.json" 2>/dev/null &
  local load_pid=$!
  python3 "$work/probe.py" "$port" "$probes" "$run_seconds" >"$work/probe.json" &
  local probe_pid=$!
  sleep 0.5
  python3 "$work/stop.py" "$server_pid" "$([ "$stopped" = none ] && echo -1 || echo "$stopped")" \
    "$stall" >"$work/stop.json"
  wait "$load_pid" || true
  wait "$probe_pid"
  kill -TERM "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
  python3 - "$build" "$workers" "$stopped" "$work/load.json" "$work/probe.json" "$work/stop.json" >>"$results" <<'PY'
import json, sys
build, workers, stopped = sys.argv[1], int(sys.argv[2]), sys.argv[3]
load, probe, stop = (json.load(open(p)) for p in sys.argv[4:7])
row = {"build": build, "workers": workers, "stopped": stopped,
                  "load_connections": load["completed"], "load_errors": load["errors_total"],
                  "load_max_ms": load["latency_us"]["max"] / 1000,
                  "probe_connections": probe["connections"], "probe_failed": probe["failed"],
                  "probe_max_ms": probe["max_ms"], "probe_over_50ms": probe["over_50ms"],
                  "others_cpu_s": sum(v for k, v in stop["cpu_s"].items() if k != stopped)}
print(json.dumps(row))
# The run's figures on stderr, beside the progress line.
print(f"  load: {row['load_connections']} connections, longest {row['load_max_ms']:.1f} ms; probes: "
      f"{row['probe_connections']}, longest {row['probe_max_ms']:.1f} ms, {row['probe_over_50ms']} over 50 ms",
      file=sys.stderr)
PY
}

for round in $(seq "$repeat"); do
  for workers in $worker_counts; do
    for stopped in $stopped_workers; do
      [ "$stopped" = none ] || [ "$stopped" -lt "$workers" ] || continue
      for build in $builds; do
        measure "$build" "$workers" "$stopped"
        echo "done: round $round, $build, --workers $workers, worker $stopped stopped" >&2
      done
    done
  done
done

echo
echo "greeter-load -c $concurrency and $probes probes for ${run_seconds} s; one worker stopped for $stall s" \
  "from 0.5 s in; $repeat round(s): the worst longest wait, counts summed."
echo
python3 - "$results" "$builds" "$worker_counts" "$stopped_workers" ${json_out:+"$json_out"} <<'PY'
import json, sys
results, builds, workers, stopped_workers = sys.argv[1:5]
json_path = sys.argv[5] if len(sys.argv) > 5 else None
rows = [json.loads(line) for line in open(results) if line.strip()]
summaries = []
for build in builds.split():
    for w in map(int, workers.split()):
        for s in stopped_workers.split():
            runs = [r for r in rows if (r["build"], r["workers"], r["stopped"]) == (build, w, s)]
            if not runs:
                continue
            total = lambda k: sum(r[k] for r in runs)
            worst = lambda k: max(r[k] for r in runs)
            summaries.append({"build": build, "workers": w, "stopped": s, "rounds": len(runs),
                              **{k: total(k) for k in ("load_connections", "load_errors",
                                                       "probe_connections", "probe_failed",
                                                       "probe_over_50ms")},
                              "load_max_ms": worst("load_max_ms"), "probe_max_ms": worst("probe_max_ms"),
                              "others_cpu_s": max(r["others_cpu_s"] for r in runs)})
if json_path:
    with open(json_path, "w") as out:
        for s in summaries:
            out.write(json.dumps(s) + "\n")
print("| build | workers | stopped | load connections | load errors | load longest ms | probe connections "
      "| probe longest ms | probes over 50 ms | other workers' CPU s in the stall |")
print("|---|---|---|---|---|---|---|---|---|---|")
for s in summaries:
    print(f"| {s['build']} | {s['workers']} | {s['stopped']} | {s['load_connections']} | {s['load_errors']} "
          f"| {s['load_max_ms']:.1f} | {s['probe_connections']} | {s['probe_max_ms']:.1f} "
          f"| {s['probe_over_50ms']} | {s['others_cpu_s']:.2f} |")
print()
for s in summaries:
    longest = max(s["load_max_ms"], s["probe_max_ms"])
    stopped = "nothing" if s["stopped"] == "none" else f"worker {s['stopped']}"
    where = f"({s['build']}, --workers {s['workers']}, {stopped} stopped)"
    if s["stopped"] == "none":
        print(f"control {where}: longest wait {longest:.0f} ms, {s['probe_over_50ms']} probe connections "
              f"over 50 ms (this machine's own latency: nothing stopped)")
    elif s["workers"] == 1:
        print(f"contrast {where}: longest wait {longest:.0f} ms (no other worker: the stall is expected)")
    else:
        met = longest <= 50 and s["probe_over_50ms"] == 0 and s["load_errors"] == 0
        print(f"goal {where}: longest wait {longest:.0f} ms, {s['probe_over_50ms']} probe connections "
              f"over 50 ms (target: none over about 50 ms): {'met' if met else 'MISSED'}")
PY
