#!/usr/bin/env bash
# Builds drover's release addon and runs bench.js (wrk from apt: `apt-get install wrk`).
# Arguments go to bench.js (--duration S --connections N --runs R).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
command -v wrk >/dev/null || { echo "bench/balance: wrk is needed (apt-get install wrk)" >&2; exit 1; }
(cd "$root" && cargo build --workspace --locked --release >&2)
export DROVER_NODE_ADDON="$root/target/release/libdrover_node.so"
exec node "$root/bench/balance/bench.js" "$@"
