# Shared by the scripts in this folder (sourced, not run): build the release binaries,
# a work directory removed on exit, the server a script started stopped on exit, and
# the port from greeter-server's "listening on" line. Scripts do not change directory:
# paths a user passes stay relative to where they ran the script.

# Builds the binaries, raises the fd limit, makes $work; sets $root (the repository)
# and $bin (the release binaries) and the exit trap.
greeter_setup() {
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  bin="$root/target/release"
  cargo build --release -q --manifest-path "$root/Cargo.toml" --bin greeter-server --bin greeter-load
  ulimit -n "$(ulimit -Hn)"
  work=$(mktemp -d)
  server_pid=
  trap greeter_cleanup EXIT
}

greeter_cleanup() {
  if [ -n "${server_pid:-}" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}

# The machine-wide count of connections dropped because a listen queue was full
# (TcpExtListenOverflows); read it before and after a run for the run's delta.
listen_overflows() {
  awk '/^TcpExt:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "ListenOverflows") col = i; h = 1 } else print $col }' /proc/net/netstat
}

# wait_for_port OUT_FILE PID: prints the port once OUT_FILE has the "listening on"
# line (the first, with several listeners); prints nothing if PID exits first or 10 s
# pass.
wait_for_port() {
  for _ in $(seq 200); do
    grep -q '^listening on ' "$1" 2>/dev/null && break
    kill -0 "$2" 2>/dev/null || break
    sleep 0.05
  done
  sed -n 's/^listening on .*:\([0-9]*\)$/\1/p;T;q' "$1" 2>/dev/null
}

# --before DIR: another build's greeter-server measured beside this one's. Checks that
# DIR holds one (exit 2, naming SCRIPT, if not), sets $builds ("after", or "after
# before") and defines server_binary BUILD, the path of that build's server. Call it
# before greeter_setup, so that a wrong DIR is said before anything is built.
before_and_after() {
  if [ -n "$before_bin" ] && [ ! -x "$before_bin/greeter-server" ]; then
    echo "$1: no greeter-server in $before_bin (--before names the folder holding it)" >&2
    exit 2
  fi
  builds="after"
  [ -z "$before_bin" ] || builds="after before"
}

server_binary() { if [ "$1" = before ]; then echo "$before_bin/greeter-server"; else echo "$bin/greeter-server"; fi; }
