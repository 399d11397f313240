#!/usr/bin/env bash
# Keep-alive throughput of drover's round-robin master against Node cluster's SCHED_RR, measured
# in alternating pairs (A then B, B then A, ...) so that drift of a shared machine hits both alike:
#
#   bench/balance/pairs.sh [PAIRS] [DROVER_BALANCE]     # default 8 pairs, round-robin
#
# Needs wrk and a release addon (cargo build --workspace --locked --release). One line per pair.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
pairs=${1:-8}
balance=${2:-round-robin}
export DROVER_NODE_ADDON=${DROVER_NODE_ADDON:-$root/target/release/libdrover_node.so}
export DROVER_PACKAGE=${DROVER_PACKAGE:-$root/bindings-node}
unset NODE_EXTRA_CA_CERTS

# Requests per second of `wrk -t2 -c32 -d8s` against a fresh master ($1: its script; then VAR=VALUE).
one() {
    local script=$1; shift
    local port=$((20000 + RANDOM % 20000)) dir out
    dir=$(mktemp -d); out=$(mktemp)
    env "$@" PORT=$port COUNT_DIR="$dir" node "$here/$script" > "$out" 2>&1 &
    local master=$!
    for _ in $(seq 100); do grep -q ready "$out" && break; sleep 0.1; done
    wrk -t2 -c32 -d8s "http://127.0.0.1:$port/" | awk '/Requests\/sec/ {print $2}'
    kill -TERM "$master"; wait "$master" 2>/dev/null || true
    rm -rf "$dir" "$out"
}

for i in $(seq "$pairs"); do
    if (( i % 2 )); then
        a=$(one drover-master.js BALANCE="$balance"); b=$(one cluster-master.js SCHEDULING=rr)
    else
        b=$(one cluster-master.js SCHEDULING=rr); a=$(one drover-master.js BALANCE="$balance")
    fi
    echo "pair $i: drover $balance $a req/s, node cluster SCHED_RR $b req/s"
done
