#!/usr/bin/env bash
# The porxy benchmark, in one command: porxy side by side with a direct connection (the limit),
# HAProxy (mode tcp) and nginx (stream module), on loopback. See bench/README.md.
#
#   bench/run.sh              full run, ~8 minutes on 2 cores; the report goes to stdout
#   bench/run.sh --quick      ~1 minute, one short round: a look, not a result
#   bench/run.sh --smoke      ~17 s, direct and porxy (both data paths, with the PROXY
#                             protocol, with its access log, terminating TLS, routing TLS by
#                             server name) only, installs nothing (for CI)
#
# Other arguments go to porxy-bench as they are (--seconds N, --rounds N, --idle N,
# --kinds direct,porxy,porxy-copy,porxy-proxy,haproxy,haproxy-proxy,nginx,porxy-tls,
# haproxy-tls,nginx-tls,porxy-sni,haproxy-sni,nginx-sni,porxy-log,haproxy-log,nginx-log,
# porxy-b, --porxy-b PATH, --phases ..., --no-scaling, --no-busy, --no-syscalls, --no-rsa;
# `--help` lists them). What the PROXY protocol costs:
#   bench/run.sh --kinds porxy,porxy-proxy,haproxy,haproxy-proxy --phases short,idle \
#       --no-scaling --no-busy --no-syscalls --rounds 5
# What the access log costs each proxy, and this porxy build over another (here the one before
# the metrics work, built in its own worktree) (~8 minutes):
#   bench/run.sh --kinds porxy,porxy-b,porxy-log,haproxy,haproxy-log,nginx,nginx-log \
#       --phases idle,rr1,rr64,short --no-scaling --no-busy --no-syscalls --rounds 5 \
#       --seconds 2 --porxy-b /tmp/before-metrics/target/release/porxy
# TLS termination, porxy beside HAProxy and nginx with the same certificate (~3 minutes):
#   bench/run.sh --kinds porxy-tls,haproxy-tls,nginx-tls --no-syscalls --rounds 3
# SNI routing without termination, porxy beside HAProxy and nginx, each beside itself
# relaying the same TLS unrouted, in front of a TLS backend (~8 minutes):
#   bench/run.sh --kinds porxy-sni,haproxy-sni,nginx-sni --no-syscalls --rounds 3 --seconds 3
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=false
for arg in "$@"; do
    if [ "$arg" = "--smoke" ]; then smoke=true; fi
done

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
nginx_bin() { command -v nginx 2>/dev/null || echo /usr/sbin/nginx; }

# HAProxy and nginx with its stream module, from Debian's packages, when missing.
if ! $smoke; then
    need=()
    have haproxy || need+=(haproxy)
    if ! have nginx; then
        need+=(nginx libnginx-mod-stream)
    elif ! "$(nginx_bin)" -V 2>&1 | tr ' ' '\n' | grep -qx -- '--with-stream' &&
        ! ls /usr/lib/nginx/modules/ngx_stream_module.so >/dev/null 2>&1; then
        need+=(libnginx-mod-stream)
    fi
    # perf counts the proxies' system calls (a section of its own; --no-syscalls skips it).
    # Installed on its own below: a system without Debian's linux-perf (Ubuntu has
    # linux-tools-*) still gets the rest, and the report says why the section is left out.
    want_perf=true
    for arg in "$@"; do
        if [ "$arg" = "--no-syscalls" ]; then want_perf=false; fi
    done
    if command -v perf >/dev/null 2>&1; then want_perf=false; fi
    if [ "${#need[@]}" -gt 0 ] || $want_perf; then
        if ! have apt-get; then
            $want_perf && need+=(perf)
            echo "bench/run.sh: ${need[*]} missing and no apt-get here: they are left out" >&2
        else
            tools/apt-install "${need[@]}"
            if $want_perf; then
                tools/apt-install linux-perf ||
                    echo "bench/run.sh: perf not installed: no system-call section" >&2
            fi
        fi
    fi
fi

cargo build --release -p porxy-cli -p porxy-bench >&2
target="${CARGO_TARGET_DIR:-target}/release"
exec "$target/porxy-bench" --porxy "$target/porxy" "$@"
