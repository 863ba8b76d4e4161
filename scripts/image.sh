#!/usr/bin/env bash
# Stages what the Dockerfile at the repository's root copies: the release binaries,
# stripped, and exactly the shared libraries (and the dynamic loader) ldd names for
# them, at the paths ldd names, in target/image/rootfs. See --help.
set -euo pipefail
usage() {
  cat <<'USAGE'
usage: scripts/image.sh [--no-build]

Builds greeter-server and greeter-client in release mode (cargo build --release),
then stages in target/image/rootfs:
  /usr/bin/greeter-server, /usr/bin/greeter-client   stripped copies
  every library ldd names for them, and the loader     at the paths ldd names
  /etc/greeter/greeter.toml                            a config file with no keys
Then build the image from the repository's root (.dockerignore sends only the
staged tree):
  docker build -t greeter .
Prints the staged files and their total size.

  --no-build   stage the binaries already in target/release
USAGE
}
build=1
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  --no-build) build=0 ;;
  "") ;;
  *) echo "image.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
if [ "$build" = 1 ]; then
  cargo build --release -q --manifest-path "$root/Cargo.toml" --bin greeter-server --bin greeter-client
fi
command -v ldd >/dev/null && command -v strip >/dev/null ||
  { echo "image.sh: needs ldd (libc-bin) and strip (binutils)" >&2; exit 1; }
stage="$root/target/image/rootfs"
rm -rf "$stage"
mkdir -p "$stage/usr/bin" "$stage/etc/greeter"
for name in greeter-server greeter-client; do
  binary="$root/target/release/$name"
  [ -x "$binary" ] || { echo "image.sh: $binary is missing (run cargo build --release)" >&2; exit 1; }
  strip -o "$stage/usr/bin/$name" "$binary"
  # ldd's lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", the loader
  # as "/lib64/ld-linux-x86-64.so.2 (0x...)", the vDSO with no path (the kernel's).
  ldd "$binary" | grep -q 'not found' &&
    { echo "image.sh: ldd cannot find a library of $name:" >&2; ldd "$binary" >&2; exit 1; }
  for library in $(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
    mkdir -p "$stage$(dirname "$library")"
    # The file's content at the path the loader looks for (a symbolic link on the
    # host, e.g. into /usr with merged /usr, would dangle in the image).
    cp -L "$library" "$stage$library"
  done
done
cat > "$stage/etc/greeter/greeter.toml" <<'TOML'
# The image's own greeter.toml: no keys, so greeter-server starts with the image's
# GREETER_* variables and its defaults. Mount a directory holding your greeter.toml
# over /etc/greeter (never the file alone) to configure it; SIGHUP re-reads it.
TOML
chmod -R a+rX,go-w "$stage"
(cd "$stage" && find . -type f -printf '%P %s\n' | sort)
echo "staged $(du -sb "$stage" | cut -f1) bytes in $stage"
