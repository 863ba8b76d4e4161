"""Measures a tarpit's cost per trapped client: starts target/release/greeter-server
--tarpit on loopback, traps N clients (default 10000) that never read (each with a
4 KiB receive buffer), and over SECONDS (default 20) of drips every INTERVAL (default
1s) reports the server's RSS per trapped client and its CPU time per client-hour and
per line sent. Needs N + a few hundred open files here and in the server.

usage: python3 scripts/tarpit-rss.py [N] [INTERVAL] [SECONDS]"""
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
interval = sys.argv[2] if len(sys.argv) > 2 else "1s"
seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 20.0
probe = socket.socket()
probe.bind(("127.0.0.1", 0))
metrics_port = probe.getsockname()[1]
probe.close()
server = subprocess.Popen(
    ["target/release/greeter-server", "--port", "0", "--tarpit", "--drip-interval", interval,
     "--max-trapped", str(n + 100), "--metrics", f"127.0.0.1:{metrics_port}"],
    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
port = int(re.search(r":(\d+)\s*$", server.stdout.readline()).group(1))


def rss_kib():
    status = open(f"/proc/{server.pid}/status").read()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))


def cpu_seconds():
    fields = open(f"/proc/{server.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metric(name):
    """The sum of a family's samples (the trap families have a country label)."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
    return sum(float(value) for value in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)", body, re.M))


time.sleep(0.5)
before = rss_kib()
clients = []
for _ in range(n):
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(("127.0.0.1", port))
    clients.append(client)
while metric("greeter_trapped_connections") < n:
    time.sleep(0.1)
held = rss_kib()
cpu0, bytes0, t0 = cpu_seconds(), metric("greeter_bytes_dripped_total"), time.time()
time.sleep(seconds)
cpu1, bytes1, t1 = cpu_seconds(), metric("greeter_bytes_dripped_total"), time.time()
lines = (bytes1 - bytes0) / 32
client_hours = n * (t1 - t0) / 3600
print(f"trapped={n} interval={interval} rss_before_kib={before} rss_trapped_kib={held} "
      f"bytes_per_trapped={(held - before) * 1024 / n:.0f} cpu_s={cpu1 - cpu0:.2f} "
      f"lines={lines:.0f} cpu_ms_per_client_hour={(cpu1 - cpu0) * 1000 / client_hours:.2f} "
      f"cpu_us_per_line={(cpu1 - cpu0) * 1e6 / max(lines, 1):.2f}")
server.terminate()
server.wait()
