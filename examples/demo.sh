#!/usr/bin/env bash
# Runs porxy on the shipped example config (examples/porxy.toml: 127.0.0.1:8000 -> 127.0.0.1:7000,
# control socket on 127.0.0.1:9999) with an echo server behind it. Try it from another terminal
# with: nc 127.0.0.1 8000
# Ctrl-C stops both. Extra arguments go to porxy (e.g. --log debug).
#
# The ports are those of the example config, so they are fixed: the script stops at once,
# saying which, if one of them is already in use. The binaries are built where cargo puts them
# (CARGO_TARGET_DIR or build.target-dir are honoured).
set -euo pipefail
cd "$(dirname "$0")/.."

PORTS=(7000 8000 9999)

die() {
    echo "demo.sh: $*" >&2
    exit 1
}

command -v cargo >/dev/null 2>&1 ||
    die "cargo not found: install Rust (1.88 or newer) with rustup, see https://rustup.rs"

# True when something accepts connections on 127.0.0.1:$1.
in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

for port in "${PORTS[@]}"; do
    if in_use "$port"; then
        die "port $port on 127.0.0.1 is already in use (examples/porxy.toml needs 7000, 8000" \
            "and 9999); stop whatever listens there, or edit a copy of the config"
    fi
done

cargo build --release -p porxy-cli --bin porxy --example testserver

# Where cargo put the binaries: CARGO_TARGET_DIR, build.target-dir, or ./target.
target_dir=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$target_dir" ] || die "cannot tell cargo's target directory from 'cargo metadata'"
porxy="$target_dir/release/porxy"
testserver="$target_dir/release/examples/testserver"
[ -x "$porxy" ] && [ -x "$testserver" ] || die "no binaries in $target_dir/release after the build"

backend_log=$(mktemp)
backend=
cleanup() {
    # Only the process this script started, by its PID.
    if [ -n "$backend" ]; then
        kill "$backend" 2>/dev/null || true
        wait "$backend" 2>/dev/null || true
    fi
    rm -f "$backend_log"
}
trap cleanup EXIT

"$testserver" echo 127.0.0.1:7000 >"$backend_log" 2>&1 &
backend=$!

# Wait (at most 5 s) for the echo server to say it listens, or to fail.
for _ in $(seq 50); do
    grep -q '^listening on' "$backend_log" && break
    kill -0 "$backend" 2>/dev/null || die "the echo server failed: $(cat "$backend_log")"
    sleep 0.1
done
grep -q '^listening on' "$backend_log" || die "the echo server did not start within 5 s"
echo "echo server: $(cat "$backend_log") (pid $backend)"

"$porxy" --config examples/porxy.toml "$@"
