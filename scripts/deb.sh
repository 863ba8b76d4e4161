#!/usr/bin/env bash
# Builds the Debian package (cargo deb), lints it (lintian: no error allowed),
# installs it with dpkg -i, checks what an administrator would (the config check,
# the man pages, the README's links, the three --version lines, the installed server greeting a client
# on a free loopback port), then purges it and checks that nothing of it is left in
# /usr/bin and /etc/greeter. Needs root (it installs a package), dpkg-dev, lintian and
# cargo-deb (scripts/test.sh installs them when it runs as root). Loopback only.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/deb.sh

Prints lintian's output (`lintian: ...` lines), then one `deb ok: PACKAGE` line; exits
1 at the first check that fails, saying which.
USAGE
}
case "${1:-}" in -h|--help) usage; exit 0 ;; esac
[ "$(id -u)" -eq 0 ] || { echo "deb.sh: must run as root (it installs the package)" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
fail() { echo "deb.sh: $*" >&2; exit 1; }

cargo build --release -q --workspace
cargo deb --no-build --strip -q >/dev/null
deb=$(ls -t target/debian/greeter_*.deb | head -1)

lint=$(lintian "$deb" 2>&1 | grep -v 'running with root privileges' || true)
echo "${lint:-no lintian tags}" | sed 's/^/lintian: /'
# A package built outside the archive closes no bug: the one warning left.
if echo "$lint" | grep -q '^E:'; then fail "lintian reports errors"; fi

work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  dpkg --purge greeter >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

dpkg -i "$deb" >/dev/null || fail "dpkg -i $deb failed"
/usr/bin/greeter-server --check-config --config /etc/greeter/greeter.toml >/dev/null ||
  fail "the installed config does not check"
for page in greeter-server greeter-client greeter-load; do
  man -w "$page" >/dev/null || fail "no man page $page"
done
man -w 5 greeter.toml >/dev/null || fail "no man page greeter.toml(5)"
for binary in greeter-server greeter-client greeter-load; do
  "/usr/bin/$binary" --version | grep -q "^$binary [0-9]" || fail "$binary --version"
done
[ -f /usr/share/bash-completion/completions/greeter-server ] || fail "no bash completion"
[ -f /usr/share/doc/greeter/examples/grafana-greeter.json ] || fail "no dashboard"
# Every relative link of the installed README names an installed file (the docs it
# links are installed under docs/, as in the repository).
doc=/usr/share/doc/greeter
[ -f "$doc/README.md" ] || fail "no $doc/README.md"
links=$(grep -oE '\]\([^)]+\)' "$doc/README.md" | sed -E 's/^\]\(//; s/\)$//; s/#.*//' | grep -v '://' | sort -u)
[ -n "$links" ] || fail "found no relative link in $doc/README.md"
for link in $links; do
  [ -f "$doc/$link" ] || fail "the installed README links $link, which is not in $doc"
done
systemctl is-enabled greeter.socket >/dev/null 2>&1 && fail "the package enabled greeter.socket"

/usr/bin/greeter-server --port 0 >"$work/out" 2>"$work/err" &
server_pid=$!
for _ in $(seq 100); do grep -q '^listening on ' "$work/out" && break; sleep 0.1; done
port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$work/out")
[ -n "$port" ] || fail "the installed server did not start: $(cat "$work/err")"
greeting=$(/usr/bin/greeter-client --port "$port")
[ "$greeting" = "Hello there! This is the hosted server" ] || fail "wrong greeting: $greeting"
kill -TERM "$server_pid"; wait "$server_pid" || fail "the installed server did not exit 0"
server_pid=

dpkg --purge greeter >/dev/null || fail "dpkg --purge failed"
left=$(ls /usr/bin/greeter-* /etc/greeter 2>/dev/null || true)
[ -z "$left" ] || fail "left after purge: $left"
echo "deb ok: $(basename "$deb")"
