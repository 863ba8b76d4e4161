#!/usr/bin/env python3
"""The reporting half of scripts/compare.sh: one row per measured run, one row per
strace run, and the table of medians. Standard library only.

usage: report.py run LOAD_JSON TIME_FILE NAME C TICKS_BEFORE TICKS_AFTER HZ OVERFLOWS
       report.py syscalls LOAD_JSON STRACE_FILE NAME C
       report.py table RESULTS_TSV SYSCALLS_TSV "SERVERS" "LEVELS" [JSON_OUT]
       report.py ratio ROWS_JSON SERVER BASE WHAT
"""
import json
import statistics
import sys


def run_row(report_path, time_path, name, c, before, after, hz, overflows):
    """One load run as a tab-separated row: rate, latency, errors, server CPU per
    connection, overflows and the load tool's user-CPU share."""
    report = json.load(open(report_path))
    user, system = (float(x) for x in open(time_path).read().split()[:2])
    completed = max(report["completed"], 1)
    cpu_us = (float(after) - float(before)) * 1e6 / int(hz) / completed
    # No latency (null) when nothing completed: nan, never a fast-looking 0.
    latency = report["latency_us"] or {"p99": float("nan"), "max": float("nan")}
    return "\t".join(str(v) for v in [
        name, c, report["completed"], report["connections_per_s"],
        latency["p99"] / 1000, latency["max"] / 1000,
        report["errors_total"], cpu_us, overflows, 100 * user / max(user + system, 1e-9)])


def syscalls_row(report_path, strace_path, name, c):
    """System calls per completed connection from `strace -c -f`'s summary, and the
    wake-ups (`epoll_wait` returns, over every thread) per connection."""
    completed = max(json.load(open(report_path))["completed"], 1)
    # "% time, seconds, usecs/call, calls, [errors,] NAME": calls is the fourth field.
    rows = [line.split() for line in open(strace_path)]
    calls = lambda last: sum(int(r[3]) for r in rows if len(r) > 4 and r[-1] == last)
    total = next(r for r in rows if r and r[-1] == "total")
    return f"{name}\t{c}\t{int(total[3]) / completed:.2f}\t{calls('epoll_wait') / completed:.2f}"


def medians(results, syscalls, servers, levels):
    """One summary per server and concurrency: medians over the rounds, the worst max
    latency, errors and overflows summed, the spread of server CPU."""
    rows = [line.rstrip("\n").split("\t") for line in open(results) if line.strip()]
    counted = [line.split() for line in open(syscalls) if line.strip()]
    calls = {(r[0], r[1]): float(r[2]) for r in counted}
    wakeups = {(r[0], r[1]): float(r[3]) for r in counted}
    out = []
    for server in servers.split():
        for level in levels.split():
            runs = [r for r in rows if r[0] == server and r[1] == level]
            if not runs:
                continue
            col = lambda i: [float(r[i]) for r in runs]
            cpu = col(7)
            out.append({
                "server": server, "concurrent": int(level), "rounds": len(runs),
                "connections": int(statistics.median(col(2))),
                "connections_per_s": statistics.median(col(3)),
                "p99_ms": statistics.median(col(4)), "max_ms": max(col(5)),
                "errors": int(sum(col(6))),
                "cpu_us_per_connection": statistics.median(cpu),
                "cpu_us_min": min(cpu), "cpu_us_max": max(cpu),
                "listen_overflows": int(sum(col(8))),
                "load_user_cpu_percent": statistics.median(col(9)),
                "syscalls_per_connection": calls.get((server, level)),
                "wakeups_per_connection": wakeups.get((server, level)),
            })
    return out


def table(results, syscalls, servers, levels, json_path=None):
    """The Markdown table of `medians` (and, with `json_path`, the same as JSON lines)."""
    summaries = medians(results, syscalls, servers, levels)
    if json_path:
        with open(json_path, "w") as out:
            for summary in summaries:
                out.write(json.dumps(summary) + "\n")
    out = ["| server | concurrent | connections per run | conn/s | p99 ms | max ms | errors "
           "| server CPU µs/conn (min-max) | listen overflows | load user CPU % | syscalls/conn "
           "| wake-ups/conn |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in summaries:
        calls, wakeups = m["syscalls_per_connection"], m["wakeups_per_connection"]
        out.append(
            f"| {m['server']} | {m['concurrent']} | {m['connections']} "
            f"| {m['connections_per_s']:.0f} | {m['p99_ms']:.2f} "
            f"| {m['max_ms']:.2f} | {m['errors']} "
            f"| {m['cpu_us_per_connection']:.2f} ({m['cpu_us_min']:.2f}-{m['cpu_us_max']:.2f}) "
            f"| {m['listen_overflows']} | {m['load_user_cpu_percent']:.1f} "
            f"| {'-' if calls is None else f'{calls:.2f}'} "
            f"| {'-' if wakeups is None else f'{wakeups:.2f}'} |")
    return "\n".join(out)


def ratio(rows_path, server, base, what):
    """The goal line: SERVER's median server CPU per connection over BASE's, at each
    concurrency of the table's JSON rows, held to at most 1.05x."""
    rows = {(r["server"], r["concurrent"]): r for r in map(json.loads, open(rows_path))}
    levels = sorted(c for s, c in rows if s == server and (base, c) in rows)
    ratios = {c: rows[(server, c)]["cpu_us_per_connection"]
              / max(rows[(base, c)]["cpu_us_per_connection"], 1e-9) for c in levels}
    cells = ", ".join(f"at {c}: {ratios[c]:.3f}x" for c in levels)
    met = "met" if ratios and max(ratios.values()) <= 1.05 else "MISSED"
    return (f"goal ({server}: greetings {what}): server CPU a connection "
            f"{server}/{base} {cells} (<= 1.05): {met}")


if __name__ == "__main__":
    commands = {"run": run_row, "syscalls": syscalls_row, "table": table, "ratio": ratio}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    print(commands[sys.argv[1]](*sys.argv[2:]))
