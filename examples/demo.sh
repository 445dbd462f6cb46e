#!/usr/bin/env bash
# Runs porxy on the shipped example config (examples/porxy.toml: 127.0.0.1:8000 -> 127.0.0.1:7000)
# with an echo server behind it. Try it from another terminal with: nc 127.0.0.1 8000
# Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p porxy-cli --bin porxy --example testserver

target/release/examples/testserver echo 127.0.0.1:7000 &
backend=$!
trap 'kill "$backend" 2>/dev/null || true' EXIT

target/release/porxy --config examples/porxy.toml "$@"
