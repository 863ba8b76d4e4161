#!/usr/bin/env bash
# The image in a real engine: a private dockerd of this script's own, the image built
# from the Dockerfile, checked in a container, then three replicas behind HAProxy
# replaced one by one under load. See --help.
set -euo pipefail
usage() {
  cat <<'USAGE'
usage: scripts/container-test.sh

As root, with Debian's docker.io and haproxy (scripts/test.sh installs both):
  1. starts a private dockerd: data root, exec root, pid file and socket in a
     temporary folder, no iptables, no bridge, no IP forwarding, so nothing
     machine-wide changes; stopped by its PID and its folder removed at exit,
     also when a check fails;
  2. stages the image (scripts/image.sh) and builds it with Debian's client,
     /usr/bin/docker, and DOCKER_BUILDKIT=0 (no base image is pulled: FROM scratch);
  3. the image: its defaults (--check-config); a container run --read-only
     --cap-drop ALL --security-opt no-new-privileges on a loopback port of the
     host network greets with the mounted /etc/greeter/greeter.toml's exact bytes,
     from the host and from a client container sharing its network
     (--network container:NAME); a new greeter.toml renamed into the mounted
     directory and `docker kill -s HUP` give the new greeting; the image's health
     check turns healthy; it runs as 65532 with no capabilities and cannot write its
     root file system; SIGUSR2 is refused (no /bin/sh) and it greets on;
     `docker stop` ends it with exit code 0 and its drain and
     totals lines in `docker logs`;
  4. three containers behind HAProxy (health checks on /healthz), greeter-load
     through HAProxy while each container in turn is stopped, replaced and seen up
     again: 0 errors, every greeting exact. Prints the connections served and the
     longest connection (connect to EOF, through HAProxy) and HAProxy's longest
     connect to a greeter during the replacement.
Every container uses --network host on free 127.0.0.1 ports: nothing is published
or pulled. Ends with "container-test.sh: ok" and exit 0, or the failed check and
exit 1.
USAGE
}
case "${1:-}" in -h|--help) usage; exit 0 ;; esac
[ $# -eq 0 ] || { echo "container-test.sh: no arguments (see --help)" >&2; exit 2; }

fail() { echo "container-test.sh: FAILED: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (it starts a dockerd)"
docker=/usr/bin/docker # Debian's client: another docker may come first on PATH
[ -x /usr/sbin/dockerd ] && [ -x "$docker" ] || fail "needs Debian's docker.io (apt-get install docker.io)"
command -v haproxy >/dev/null || fail "needs haproxy (apt-get install haproxy)"

root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/target/release"
SECONDS=0
"$root/scripts/image.sh" >/dev/null
cargo build --release -q --manifest-path "$root/Cargo.toml" --bin greeter-load

tmp=$(mktemp -d /tmp/greeter-docker.XXXXXX)
# dockerd makes /run/docker/plugins (and netns) whatever its exec root: removed at
# exit if this script made them (and they are empty).
[ -e /run/docker ] && made_run_docker=0 || made_run_docker=1
dockerd_pid=
haproxy_pid=
load_pid=
cleanup() {
  local status=$?
  set +e
  # The load loop ends after its current one-second run.
  [ -n "$load_pid" ] && touch "$tmp/stop-load" && wait "$load_pid" 2>/dev/null
  [ -n "$haproxy_pid" ] && kill "$haproxy_pid" 2>/dev/null && wait "$haproxy_pid" 2>/dev/null
  if [ -n "$dockerd_pid" ]; then
    # The daemon stops its containers and its containerd, and unmounts, on SIGTERM.
    kill -TERM "$dockerd_pid" 2>/dev/null
    for _ in $(seq 300); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$dockerd_pid" 2>/dev/null; then
      echo "container-test.sh: dockerd (pid $dockerd_pid) did not stop in 30 s; killing it" >&2
      kill -KILL "$dockerd_pid" 2>/dev/null
    fi
    wait "$dockerd_pid" 2>/dev/null
  fi
  # What a daemon that died hard left mounted, deepest first.
  awk -v dir="$tmp" 'index($2, dir) == 1 { print $2 }' /proc/mounts | sort -r | xargs -r umount -l
  rm -rf "$tmp"
  [ "$made_run_docker" = 1 ] && rmdir /run/docker/plugins /run/docker/netns /run/docker 2>/dev/null
  exit "$status"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# Containers inherit the daemon's open-file limit: 20000 at most (the hard limit of
# the project's machines), never more than this shell's hard limit.
hard=$(ulimit -Hn)
nofile=20000
[ "$hard" != unlimited ] && [ "$hard" -lt "$nofile" ] && nofile=$hard
# The trust key dockerd 20.10 writes (by default /etc/docker/key.json) and any
# machine-wide daemon.json: both kept in the folder.
printf '{"deprecated-key-path": "%s/key.json"}\n' "$tmp" >"$tmp/daemon.json"
(
  ulimit -n "$nofile"
  exec /usr/sbin/dockerd --config-file "$tmp/daemon.json" --data-root "$tmp/data" \
    --exec-root "$tmp/exec" --pidfile "$tmp/dockerd.pid" -H "unix://$tmp/docker.sock" \
    --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none \
    --default-ulimit "nofile=$nofile:$nofile"
) >"$tmp/dockerd.log" 2>&1 &
dockerd_pid=$!
export DOCKER_HOST="unix://$tmp/docker.sock" DOCKER_BUILDKIT=0 DOCKER_CONFIG="$tmp/client"
for _ in $(seq 300); do
  "$docker" version >/dev/null 2>&1 && break
  kill -0 "$dockerd_pid" 2>/dev/null || { cat "$tmp/dockerd.log" >&2; fail "dockerd exited"; }
  sleep 0.1
done
"$docker" version >/dev/null 2>&1 || { tail -20 "$tmp/dockerd.log" >&2; fail "dockerd did not answer in 30 s"; }

image=greeter-test:latest
"$docker" build -q -t "$image" "$root" >/dev/null || fail "docker build"
size=$("$docker" image inspect -f '{{.Size}}' "$image")
echo "image: $image size_bytes=$size"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# wait_until SECONDS WHAT COMMAND...: polls COMMAND every 0.1 s until it succeeds.
wait_until() {
  local seconds=$1 what=$2; shift 2
  local deadline=$(($(date +%s) + seconds))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "timed out after ${seconds}s waiting for $what"
    sleep 0.1
  done
}
# greets PORT EXPECTED_FILE: the host's greeter-client receives exactly those bytes.
greets() { "$bin/greeter-client" --port "$1" --timeout 2s 2>/dev/null | cmp -s - "$2"; }
# docker run -d, without the client's warning that a host-network container does not
# need: "IPv4 forwarding is disabled" (this daemon leaves forwarding alone on purpose).
quiet_run() { "$docker" run -d "$@" 2> >(grep -v 'IPv4 forwarding is disabled' >&2) >/dev/null; }
# The hardening every container here runs with.
hardened=(--read-only --cap-drop ALL --security-opt no-new-privileges)

# --- the image's defaults: all addresses, 8080, metrics on 9464, the image's config
defaults=$("$docker" run --rm --network none "${hardened[@]}" "$image" --check-config 2>&1) ||
  fail "--check-config with the image's defaults: $defaults"
for line in 'host = ["0.0.0.0"]' 'port = 8080' 'metrics = "0.0.0.0:9464"'; do
  grep -qF "$line" <<<"$defaults" || fail "the image's defaults lack '$line':"$'\n'"$defaults"
done

# --- one container, configured by a mounted directory
config="$tmp/config"
mkdir -p "$config"
printf 'message = "first greeting from the mounted config"\n' >"$config/greeter.toml"
printf 'first greeting from the mounted config' >"$tmp/first"
port=$(free_port)
metrics_port=$(free_port)
quiet_run --name single --network host "${hardened[@]}" --health-interval 1s \
  -e GREETER_HOST=127.0.0.1 -e GREETER_PORT="$port" -e GREETER_METRICS="127.0.0.1:$metrics_port" \
  -v "$config:/etc/greeter:ro" "$image" >/dev/null
wait_until 20 "the container to greet on 127.0.0.1:$port" greets "$port" "$tmp/first"
from_container=$("$docker" run --rm --network container:single "${hardened[@]}" \
  --entrypoint /usr/bin/greeter-client "$image" --port "$port" \
  2> >(grep -v 'IPv4 forwarding is disabled' >&2) | od -An -c)
[ "$from_container" = "$(od -An -c <"$tmp/first")" ] || fail "the client container received: $from_container"
echo "image: greets with the mounted config's exact bytes from the host and from a client container"

# A new file renamed over the old one in the mounted directory, then SIGHUP.
printf 'message = "second greeting, after SIGHUP"\n' >"$config/greeter.toml.new"
mv "$config/greeter.toml.new" "$config/greeter.toml"
printf 'second greeting, after SIGHUP' >"$tmp/second"
"$docker" kill -s HUP single >/dev/null
wait_until 20 "the new greeting after SIGHUP" greets "$port" "$tmp/second"
echo "image: a greeter.toml renamed into the mounted directory and SIGHUP give the new greeting"

healthy() { [ "$("$docker" inspect -f '{{.State.Health.Status}}' single)" = healthy ]; }
wait_until 30 "the health check to report healthy" healthy
"$docker" inspect -f '{{json .Config.Healthcheck.Test}}' single | grep -qF '"/usr/bin/greeter-server","--health-check"' ||
  fail "the image's health check is not greeter-server --health-check"
echo "image: the health check (greeter-server --health-check) reports healthy"

# An upgrade needs /bin/sh, which the image does not have: refused, and it serves on.
"$docker" kill -s USR2 single >/dev/null
refused() { "$docker" logs single 2>&1 | grep -qF 'upgrade: refused: /bin/sh is missing (in a container, replace the container instead)'; }
wait_until 20 "the SIGUSR2 refusal in docker logs" refused
greets "$port" "$tmp/second" || fail "no greeting after the refused SIGUSR2"
echo "image: SIGUSR2 is refused with one line (no /bin/sh), and it greets on"

pid=$("$docker" inspect -f '{{.State.Pid}}' single)
status_field() { awk -v f="$1:" '$1 == f { $1 = ""; print substr($0, 2) }' "/proc/$pid/status"; }
[ "$(status_field Uid)" = "65532 65532 65532 65532" ] || fail "runs as uid $(status_field Uid), not 65532"
[ "$(status_field Gid)" = "65532 65532 65532 65532" ] || fail "runs as gid $(status_field Gid), not 65532"
[ "$(status_field CapEff)" = 0000000000000000 ] || fail "has capabilities $(status_field CapEff)"
# A non-root process has no effective capabilities anyway: --cap-drop ALL empties the
# bounding set, so that none can be gained either.
[ "$(status_field CapBnd)" = 0000000000000000 ] || fail "its capability bounding set is $(status_field CapBnd)"
[ "$(status_field NoNewPrivs)" = 1 ] || fail "may gain privileges (NoNewPrivs $(status_field NoNewPrivs))"
# Its root is mounted read-only: not even root on the host can write there.
awk '$5 == "/" { split($6, o, ","); exit o[1] != "ro" }' "/proc/$pid/mountinfo" || fail "its root file system is not read-only"
if touch "/proc/$pid/root/written" 2>/dev/null; then fail "its root file system took a new file"; fi
echo "image: runs as 65532:65532 with no capabilities, no new privileges, a read-only root"

"$docker" stop -t 30 single >/dev/null
exit_code=$("$docker" inspect -f '{{.State.ExitCode}}' single)
[ "$exit_code" = 0 ] || fail "exit code $exit_code after docker stop"
logs=$("$docker" logs single 2>&1)
grep -q 'shutdown: stopped accepting' <<<"$logs" || fail "no drain line in docker logs:"$'\n'"$logs"
grep -q 'totals in_flight=0 ' <<<"$logs" || fail "no totals line in docker logs:"$'\n'"$logs"
echo "image: docker stop: exit code 0, the drain and totals lines in docker logs"

# --- three replicas behind HAProxy, replaced in turn under load
ports=() metrics=()
for i in 1 2 3; do ports+=("$(free_port)"); metrics+=("$(free_port)"); done
replica() { # replica N: starts container greeterN on its ports
  local i=$1
  quiet_run --name "greeter$i" --network host "${hardened[@]}" \
    -e GREETER_HOST=127.0.0.1 -e GREETER_PORT="${ports[i - 1]}" \
    -e GREETER_METRICS="127.0.0.1:${metrics[i - 1]}" -e GREETER_SHUTDOWN_DELAY=2s "$image" >/dev/null
}
printf 'Hello there! This is the hosted server' >"$tmp/default"
for i in 1 2 3; do replica "$i"; done
# Each one greets before HAProxy starts (HAProxy may count a server up until its
# checks fail).
for i in 1 2 3; do wait_until 20 "greeter$i to greet" greets "${ports[i - 1]}" "$tmp/default"; done
front=$(free_port)
# docs/deploy/haproxy.cfg's settings, with checks on /healthz 200 ms apart (instead
# of 2 s, as tests/haproxy.rs shortens them), and no retry: like a Kubernetes Service,
# which does not retry a refused connect, no connection may reach a replica once it
# has stopped listening. The replicas' shutdown delay is what makes that hold: /healthz
# answers 503 at SIGTERM, HAProxy takes the replica out within fall x inter (0.4 s),
# and greetings go on for the 2 s delay. (Without the delay, or with retries 3 and
# redispatch, connections fail or wait for a retry.)
{
  cat <<CFG
global
    maxconn 4000
    stats socket $tmp/haproxy.sock mode 600 level admin
defaults
    mode tcp
    retries 0
    timeout connect 2s
    timeout client 35s
    timeout server 35s
    timeout check 2s
frontend greeting
    bind 127.0.0.1:$front
    default_backend greeters
backend greeters
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
    default-server check inter 200ms fall 2 rise 2 maxconn 10000
CFG
  for i in 1 2 3; do
    echo "    server greeter$i 127.0.0.1:${ports[i - 1]} check port ${metrics[i - 1]}"
  done
} >"$tmp/haproxy.cfg"
haproxy -db -f "$tmp/haproxy.cfg" >"$tmp/haproxy.log" 2>&1 &
haproxy_pid=$!
# stat SERVER FIELD: a column of HAProxy's `show stat` for a server of the backend.
stat() {
  python3 - "$tmp/haproxy.sock" "$1" "$2" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"show stat\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
lines = data.decode().splitlines()
header = lines[0].lstrip("# ").split(",")
for line in lines[1:]:
    row = line.split(",")
    if len(row) == len(header) and row[0] == "greeters" and row[1] == sys.argv[2]:
        print(row[header.index(sys.argv[3])])
PY
}
is_up() { [ "$(stat "$1" status 2>/dev/null)" = UP ]; }
for i in 1 2 3; do wait_until 30 "greeter$i to be UP in HAProxy" is_up "greeter$i"; done

# greeter-load through HAProxy in one-second runs until the replacement is over.
(
  while [ ! -e "$tmp/stop-load" ]; do
    "$bin/greeter-load" --port "$front" -c 8 -n 1000000 -d 1s --json >>"$tmp/load.jsonl" 2>>"$tmp/load.err" || true
  done
) &
load_pid=$!
wait_until 20 "the load to start" test -s "$tmp/load.jsonl"
for i in 1 2 3; do
  "$docker" stop -t 30 "greeter$i" >/dev/null
  code=$("$docker" inspect -f '{{.State.ExitCode}}' "greeter$i")
  [ "$code" = 0 ] || fail "greeter$i exited with $code"
  "$docker" rm "greeter$i" >/dev/null
  replica "$i"
  wait_until 20 "the new greeter$i to greet" greets "${ports[i - 1]}" "$tmp/default"
  wait_until 30 "the new greeter$i to be UP in HAProxy" is_up "greeter$i"
  # ... and to serve part of the load before the next one goes.
  served_before=$(stat "greeter$i" stot)
  serves() { [ "$(stat "greeter$i" stot)" -gt $((served_before + 100)) ]; }
  wait_until 20 "the new greeter$i to take connections" serves
done
touch "$tmp/stop-load"
wait "$load_pid"
load_pid=
ctime_max=$(stat BACKEND ctime_max)
python3 - "$tmp/load.jsonl" "$ctime_max" <<'PY' || { cat "$tmp/load.err" >&2; fail "the load through HAProxy had errors"; }
import json, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
completed = sum(r["completed"] for r in runs)
errors = sum(r["errors_total"] for r in runs)
longest = max(r["latency_us"]["max"] for r in runs if r["completed"]) / 1000
print(f"replacement: connections={completed} errors={errors} runs={len(runs)} "
      f"longest_connection_ms={longest:.1f} haproxy_longest_connect_ms={sys.argv[2]}")
sys.exit(0 if errors == 0 and completed > 0 else 1)
PY
echo "container-test.sh: ok (${SECONDS} s)"
