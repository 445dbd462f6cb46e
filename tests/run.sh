#!/usr/bin/env bash
# The tests, in one command: installs the real peers some tests talk to (Debian packages:
# haproxy, curl, jq, tmux for `porxy top` in a real terminal, systemd for systemd-socket-activate; promtool from the prometheus package, unpacked under target/tools) when they are
# missing, then runs `cargo test --workspace` with any arguments given.
# No test is skipped for want of a peer: one that cannot find it fails, naming this script.
set -euo pipefail
cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

need=()
have haproxy || need+=(haproxy)
have curl || need+=(curl)
have jq || need+=(jq)
have tmux || need+=(tmux)
have systemd-socket-activate || need+=(systemd)

tools/apt-install "${need[@]}"
tools/promtool >/dev/null

exec cargo test --workspace "$@"
