"""The measuring half of scripts/tarpit-compare.sh (which downloads endlessh, builds
greeter and runs this in a network namespace of its own): endlessh and greeter-server
--tarpit one after the other, with the same N clients at the same settings, rounds
interleaved (the order alternating each round), and a table of medians.

Each run: the server starts (on CPU 0 unless --no-pin; the clients on CPU 1), its RSS
is read, N clients connect evenly over one drip interval (so that the drips then come
evenly), all are seen held (N more open files in the server), then for SECONDS the
clients read what comes (so that no send ever blocks) while the server's CPU is
counted: utime and stime from /proc/PID/stat (ticks: the user/system split) and, when
perf is installed, `perf stat -e task-clock` attached for the window (the total, to the
microsecond). RSS is read again at the end of the window. Lines are the LFs the
clients received, bytes what they received: the same count for both servers.

usage: python3 scripts/tarpit-compare.py --endlessh PATH --greeter PATH
           [--before PATH] [-n N] [--interval DUR] [--line-length L] [--seconds S]
           [--repeat R] [--no-pin] [--strace-seconds S] [--json FILE]"""
import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from trapped_clients import TrappedClients, raise_fd_limit  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def duration_ms(text):
    match = re.fullmatch(r"(\d+)(ms|s)", text)
    if not match:
        sys.exit(f"tarpit-compare.py: --interval {text}: give it as 10s or 500ms")
    return int(match.group(1)) * (1000 if match.group(2) == "s" else 1)


def rss_kib(pid):
    return int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{pid}/status").read()).group(1))


def cpu_ticks(pid):
    """utime and stime of every thread of PID, in clock ticks."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def open_files(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def listening(port):
    """Whether a socket listens on PORT (IPv4 or IPv6), from /proc/net/tcp{,6}."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def free_port():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def start(name, path, args, pin):
    """Starts server NAME; returns (process, port)."""
    prefix = ["taskset", "-c", "0"] if pin else []
    max_clients = str(args.n + 100)
    if name == "endlessh":
        port = free_port()
        command = [path, "-d", str(args.interval_ms), "-l", str(args.line_length),
                   "-m", max_clients, "-p", str(port)]
        server = subprocess.Popen(prefix + command, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not listening(port):
            if server.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"tarpit-compare.py: endlessh did not listen on port {port}")
            time.sleep(0.05)
        return server, port
    command = [path, "--host", "127.0.0.1", "--port", "0", "--workers", "1", "--tarpit",
               "--drip-interval", f"{args.interval_ms}ms",
               "--drip-line-length", str(args.line_length), "--max-trapped", max_clients]
    server = subprocess.Popen(prefix + command, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    line = server.stdout.readline()
    match = re.search(r"^listening on .*:(\d+)\s*$", line)
    if not match:
        sys.exit(f"tarpit-compare.py: {name} did not start ({line.strip()!r})")
    return server, int(match.group(1))


def attach(command, pid, clients):
    """Starts COMMAND (perf stat or strace) attached to PID, the clients reading while
    it attaches (lines left unread then would count in the window); None if it is
    missing."""
    try:
        tool = subprocess.Popen(command + ["-p", str(pid)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    except FileNotFoundError:
        return None
    clients.drain_until(time.monotonic() + 0.3)
    return tool


def detach(tool):
    if tool is None:
        return
    tool.send_signal(signal.SIGINT)
    tool.wait()


def perf_counts(path):
    """{event: value} of a `perf stat -x,` output file ({} if absent)."""
    counts = {}
    try:
        for row in open(path):
            fields = row.split(",")
            if len(fields) > 2 and fields[0].replace(".", "", 1).isdigit():
                counts[fields[2]] = float(fields[0])
    except OSError:
        pass
    return counts


def syscall_counts(path):
    """{name: calls} from `strace -c`'s summary."""
    counts = {}
    for row in open(path):
        fields = row.split()
        if len(fields) >= 5 and fields[3].isdigit() and fields[-1] != "total":
            counts[fields[-1]] = int(fields[3])
    return counts


def run(name, path, args, round_number, work, strace_seconds=None):
    """One run of server NAME; returns its row."""
    server, port = start(name, path, args, args.pin)
    try:
        time.sleep(0.5)
        rss_before, files_before = rss_kib(server.pid), open_files(server.pid)
        clients = TrappedClients()
        clients.connect(port, args.n, args.interval_ms / 1000)
        deadline = time.monotonic() + 60
        while open_files(server.pid) - files_before < args.n:
            if time.monotonic() > deadline:
                sys.exit(f"tarpit-compare.py: {name} held only "
                         f"{open_files(server.pid) - files_before} of {args.n} clients")
            clients.drain_until(time.monotonic() + 0.05)
        clients.drain_until(time.monotonic() + min(1.0, args.interval_ms / 1000))
        seconds = strace_seconds or args.seconds
        if strace_seconds:
            tool = attach(["strace", "-c", "-f", "-o", f"{work}/strace-{name}.txt"], server.pid,
                          clients)
        else:
            tool = attach(["perf", "stat", "-x,", "-e", "task-clock,context-switches", "-o",
                           f"{work}/perf-{name}.txt"], server.pid, clients)
        ticks0, bytes0, lines0, t0 = (cpu_ticks(server.pid), clients.bytes, clients.lines,
                                      time.monotonic())
        clients.drain_until(t0 + seconds)
        ticks1, bytes1, lines1, t1 = (cpu_ticks(server.pid), clients.bytes, clients.lines,
                                      time.monotonic())
        detach(tool)
        rss_held = rss_kib(server.pid)
    finally:
        server.terminate()
        server.wait()
    closed = clients.closed_by_server
    clients.close()
    lines, window = lines1 - lines0, t1 - t0
    row = {"server": name, "round": round_number, "clients": args.n,
           "interval_ms": args.interval_ms, "seconds": round(window, 2), "lines": lines,
           "bytes": bytes1 - bytes0, "closed_by_server": closed}
    if strace_seconds:
        counts = syscall_counts(f"{work}/strace-{name}.txt")
        row["syscalls_per_line"] = {k: round(v / max(lines, 1), 3)
                                    for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}
        return row
    user = (ticks1[0] - ticks0[0]) / TICKS
    system = (ticks1[1] - ticks0[1]) / TICKS
    counted = perf_counts(f"{work}/perf-{name}.txt")
    precise = counted.get("task-clock")
    cpu = precise / 1000 if precise is not None else user + system
    switches = counted.get("context-switches")
    client_hours = args.n * window / 3600
    # The user/system split of the precise total in the proportions of the ticks.
    user_share = user / (user + system) if user + system > 0 else 0.0
    row.update({
        "rss_before_kib": rss_before, "rss_held_kib": rss_held,
        "rss_bytes_per_client": (rss_held - rss_before) * 1024 / args.n,
        "cpu_s": cpu, "cpu_source": "perf task-clock" if precise is not None else "ticks",
        "user_ticks_s": user, "sys_ticks_s": system,
        "cpu_ms_per_client_hour": cpu * 1000 / client_hours,
        "user_ms_per_client_hour": cpu * user_share * 1000 / client_hours,
        "sys_ms_per_client_hour": cpu * (1 - user_share) * 1000 / client_hours,
        "cpu_us_per_line": cpu * 1e6 / max(lines, 1),
        "bytes_per_line": (bytes1 - bytes0) / max(lines, 1),
        # Each time the server sleeps and wakes: a context switch (perf's count).
        "switches_per_line": switches / max(lines, 1) if switches is not None else float("nan"),
    })
    return row


FIGURES = [("rss_bytes_per_client", "RSS B/client", 0),
           ("cpu_ms_per_client_hour", "CPU ms/client-hour", 3),
           ("user_ms_per_client_hour", "user", 3), ("sys_ms_per_client_hour", "sys", 3),
           ("cpu_us_per_line", "CPU µs/line", 3), ("lines", "lines/run", 0),
           ("bytes_per_line", "bytes/line", 1), ("switches_per_line", "context switches/line", 3),
           ("closed_by_server", "closed by server", 0)]


def summary(rows, servers):
    med = {}
    print("| server | " + " | ".join(label for _, label, _ in FIGURES) + " |")
    print("|---" * (len(FIGURES) + 1) + "|")
    for name in servers:
        runs = [r for r in rows if r["server"] == name]
        med[name] = {key: statistics.median(r[key] for r in runs) for key, _, _ in FIGURES}
        spread = {key: (min(r[key] for r in runs), max(r[key] for r in runs))
                  for key, _, _ in FIGURES}
        cells = []
        for key, _, places in FIGURES:
            lo, hi = spread[key]
            cell = f"{med[name][key]:.{places}f}"
            if key in ("rss_bytes_per_client", "cpu_ms_per_client_hour", "cpu_us_per_line"):
                cell += f" ({lo:.{places}f}-{hi:.{places}f})"
            cells.append(cell)
        print(f"| {name} | " + " | ".join(cells) + " |")
    return med


def main():
    parser = argparse.ArgumentParser(usage=__doc__)
    parser.add_argument("--endlessh", required=True)
    parser.add_argument("--greeter", required=True)
    parser.add_argument("--before")
    parser.add_argument("-n", type=int, default=10000)
    parser.add_argument("--interval", default="10s")
    parser.add_argument("--line-length", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    parser.add_argument("--strace-seconds", type=float, default=0.0)
    parser.add_argument("--json")
    parser.add_argument("--work", default="/tmp")
    args = parser.parse_args()
    args.interval_ms = duration_ms(args.interval)
    raise_fd_limit()
    if args.pin:
        os.sched_setaffinity(0, {1})
    paths = {"endlessh": args.endlessh, "greeter": args.greeter}
    if args.before:
        paths["greeter-before"] = args.before
    servers = list(paths)
    rows = []
    for round_number in range(1, args.repeat + 1):
        order = servers if round_number % 2 else servers[::-1]
        for name in order:
            row = run(name, paths[name], args, round_number, args.work)
            rows.append(row)
            print(f"run: round {round_number} {name}: "
                  + " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in row.items() if k not in ("server", "round")),
                  file=sys.stderr, flush=True)
    cpu_source = ", ".join(sorted({r["cpu_source"] for r in rows}))
    print(f"clients={args.n} interval={args.interval} line_length={args.line_length} "
          f"seconds={args.seconds:g} rounds={args.repeat} pinned={'yes' if args.pin else 'no'} "
          f"cpu={cpu_source}")
    print()
    print(f"Medians of {args.repeat} rounds (min-max), each column's own; user and sys: the "
          "CPU total split in the shares of the ticks (utime, stime).")
    print()
    med = summary(rows, servers)
    print()
    e, g = med["endlessh"], med["greeter"]
    ratio = {key: g[key] / e[key] if e[key] else float("inf")
             for key in ("rss_bytes_per_client", "cpu_ms_per_client_hour", "cpu_us_per_line")}
    print(f"ratio greeter/endlessh: RSS per client {ratio['rss_bytes_per_client']:.2f}x, "
          f"CPU per client-hour {ratio['cpu_ms_per_client_hour']:.3f}x, "
          f"CPU per line {ratio['cpu_us_per_line']:.3f}x")
    met = lambda ok: "met" if ok else "MISSED"
    print(f"goal: RSS per client below endlessh's: {met(ratio['rss_bytes_per_client'] < 1)}; "
          f"CPU per client-hour <= 1.05x: {met(ratio['cpu_ms_per_client_hour'] <= 1.05)}; "
          f"CPU per line <= 1.05x: {met(ratio['cpu_us_per_line'] <= 1.05)}")
    if args.strace_seconds:
        print()
        print(f"System calls per line received, strace -c -f attached for "
              f"{args.strace_seconds:g} s (a separate run each; strace slows the server):")
        for name in servers:
            row = run(name, paths[name], args, 0, args.work, args.strace_seconds)
            calls = row["syscalls_per_line"]
            total = sum(calls.values())
            print(f"syscalls {name}: lines={row['lines']} per_line={total:.3f} "
                  + " ".join(f"{k}={v}" for k, v in calls.items()))
    if args.json:
        with open(args.json, "w") as out:
            for row in rows:
                out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
