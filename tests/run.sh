#!/usr/bin/env bash
# The tests, in one command: installs the real peers some tests talk to (Debian packages:
# haproxy) when they are missing, then runs `cargo test --workspace` with any arguments given.
# No test is skipped for want of a peer: one that cannot find it fails, naming this script.
set -euo pipefail
cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

need=()
have haproxy || need+=(haproxy)
have curl || need+=(curl)

if [ "${#need[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 ||
        { echo "tests/run.sh: ${need[*]} missing and no apt-get here: install them" >&2; exit 1; }
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
    # Keep the packages' maintainer scripts from starting system-wide daemons (HAProxy on its
    # default config): a policy-rc.d that says no, only while installing, only if none.
    policy=/usr/sbin/policy-rc.d
    remove_policy() { :; }
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod 755 "$policy"
        remove_policy() { "${sudo[@]}" rm -f "$policy"; }
        trap remove_policy EXIT
    fi
    echo "tests/run.sh: installing ${need[*]} with apt-get" >&2
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
    remove_policy
    trap - EXIT
fi

exec cargo test --workspace "$@"
