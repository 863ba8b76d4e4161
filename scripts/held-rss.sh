#!/usr/bin/env bash
# Measures greeter-server's memory per held connection: starts a release server whose
# greeting is larger than the socket buffers, opens N peers on loopback that never
# read (so every connection stays held mid-greeting), and reports the server's RSS and
# the machine's TCP memory (/proc/net/sockstat: both ends of every loopback socket)
# before and with them held. Everything runs on 127.0.0.1 and ends by itself.
set -euo pipefail
usage() {
  cat <<'USAGE'
usage: scripts/held-rss.sh [PEERS] [GREETING_BYTES] [-- SERVER_FLAGS...]
  PEERS           non-reading peers to hold at once (default 10000)
  GREETING_BYTES  size of the greeting (default 8388608: larger than what loopback
                  socket buffers absorb, so no peer finishes and every one stays held)
  SERVER_FLAGS    more greeter-server flags, e.g. -- --send-buffer 64KiB
Prints one line: rss_before_kib, rss_held_kib, held, bytes_per_held_connection,
then one: tcp_mem_before_kib, tcp_mem_held_kib (the whole machine's TCP memory).
Without --send-buffer each held socket may grow its send buffer to
net.ipv4.tcp_wmem's maximum (4 MiB by default): mind net.ipv4.tcp_mem before holding
thousands.
USAGE
}
case "${1:-}" in -h|--help) usage; exit 0 ;; esac
peers=10000
greeting_bytes=8388608
[ $# -gt 0 ] && [ "$1" != "--" ] && { peers=$1; shift; }
[ $# -gt 0 ] && [ "$1" != "--" ] && { greeting_bytes=$1; shift; }
[ "${1:-}" = "--" ] && shift
server_flags=("$@")
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
greeter_setup
head -c "$greeting_bytes" /dev/urandom > "$work/greeting"
"$bin"/greeter-server --port 0 --max-connections $((peers + 10)) \
  --message-file "$work/greeting" --write-timeout 10m ${server_flags[@]+"${server_flags[@]}"} \
  >"$work/out" 2>"$work/err" &
server_pid=$!
port=$(wait_for_port "$work/out" "$server_pid")
[ -n "$port" ] || { echo "held-rss.sh: greeter-server did not start" >&2; cat "$work/err" >&2; exit 1; }
rss() { awk '/^VmRSS/ {print $2}' "/proc/$server_pid/status"; }
tcp_mem_kib() { awk '/^TCP:/ { for (i = 1; i < NF; i++) if ($i == "mem") print $(i + 1) * 4 }' /proc/net/sockstat; }
held() { ls "/proc/$server_pid/fd" | wc -l; }
before=$(rss); fds_before=$(held); tcp_before=$(tcp_mem_kib)
python3 - "$port" "$peers" "$server_pid" "$before" "$fds_before" "$tcp_before" <<'PY'
import os, socket, sys, time
port, peers, pid, before, fds_before, tcp_before = (int(a) for a in sys.argv[1:])
socks = []
for _ in range(peers):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # stay small: never read
    s.connect(("127.0.0.1", port))
    socks.append(s)
deadline = time.time() + 30
while time.time() < deadline:
    held = len(os.listdir(f"/proc/{pid}/fd")) - fds_before
    if held >= peers:
        break
    time.sleep(0.1)
time.sleep(0.5)
rss = int(next(l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")))
held = len(os.listdir(f"/proc/{pid}/fd")) - fds_before
tcp = next(l.split() for l in open("/proc/net/sockstat") if l.startswith("TCP:"))
tcp_held = int(tcp[tcp.index("mem") + 1]) * 4
print(f"rss_before_kib={before} rss_held_kib={rss} held={held} "
      f"bytes_per_held_connection={(rss - before) * 1024 / max(held, 1):.0f}")
print(f"tcp_mem_before_kib={tcp_before} tcp_mem_held_kib={tcp_held}")
for s in socks:
    s.close()
PY
