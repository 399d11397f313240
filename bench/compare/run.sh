#!/usr/bin/env bash
# drover vs PM2 cluster mode vs a Node cluster rolling restart, under the same load.
# One command: builds drover (release), installs PM2 (npm ci here), runs bench.js, prints the
# table. See README.md. Loopback only. Every process started is ended by the trap, even on failure.
#
#   bench/compare/run.sh                     # 5 runs of the default contenders
#   RUNS=1 CONTENDERS=drover,pm2 bench/compare/run.sh
#   SKIP_BUILD=1 bench/compare/run.sh        # reuse the release build and node_modules
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
unset NODE_EXTRA_CA_CERTS   # ~90 ms per Node start on this machine, for every contender

WORK="$(mktemp -d /tmp/drover-bench-compare.XXXXXX)"
export BENCH_WORK="$WORK"
touch "$WORK/pids" "$WORK/pm2-homes"

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # The harness first (timeout passes the TERM on to node), so it starts nothing more.
    if [ -n "${BENCH_PID:-}" ] && kill -0 "$BENCH_PID" 2>/dev/null; then
        kill -TERM "$BENCH_PID" 2>/dev/null || true
        wait "$BENCH_PID" 2>/dev/null || true
    fi
    # PM2 daemons first (they would respawn their workers), by their private PM2_HOME.
    while read -r home; do
        [ -n "$home" ] && PM2_HOME="$home" timeout 20 node "$HERE/node_modules/pm2/bin/pm2" kill >/dev/null 2>&1 || true
    done < "$WORK/pm2-homes"
    # Then every process the harness recorded (supervisors, each in its own group, and workers),
    # if it is still ours: a pid can have been reused since, so only a process whose environment
    # carries this run's BENCH_WORK is killed.
    ours() { { tr '\0' '\n' < "/proc/$1/environ"; } 2>/dev/null | grep -qxF "BENCH_WORK=$WORK"; }
    for _ in 1 2 3 4 5 6 7 8 9 10; do   # bounded: a process may be exiting, or fork once more
        local left=0
        while read -r pid; do
            [ -n "$pid" ] || continue
            if ours "$pid"; then
                left=1
                kill -KILL -- "-$pid" 2>/dev/null || true
                kill -KILL "$pid" 2>/dev/null || true
            fi
        done < "$WORK/pids"
        [ "$left" = 0 ] && break
        sleep 0.3
    done
    if [ "${KEEP_WORK:-0}" = 1 ] || [ "$rc" != 0 ]; then
        echo "bench: logs and raw results kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT INT TERM

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --workspace --release)
    (cd "$ROOT/bindings-node" && npm run build:release)   # bench.js loads target/release's addon (DROVER_NODE_ADDON)
    (cd "$HERE" && npm ci --no-audit --no-fund)
fi

# The drover CLI (the Rust master) runs too when it is built and has what the harness uses.
if [ -z "${CONTENDERS:-}" ]; then
    CONTENDERS="drover,pm2,cluster,pm2+drain,cluster+drain"
    if [ -x "$ROOT/target/release/drover" ] && "$ROOT/target/release/drover" run --help 2>/dev/null | grep -q -- '--ready'; then
        CONTENDERS="$CONTENDERS,drover-cli"
    fi
    if [ -x "$ROOT/target/release/drover" ] && "$ROOT/target/release/drover" run --help 2>/dev/null | grep -q -- '--node-preload'; then
        CONTENDERS="$CONTENDERS,drover-cli-app"
    fi
fi
export CONTENDERS

{
    echo "machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r)"
    echo "node $(node --version), pm2 $(node -p "require('$HERE/node_modules/pm2/package.json').version"), drover $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- core bindings-node cli 2>/dev/null || echo '+uncommitted')"
    echo "drain in the drover workers: $(grep -q 'drain' "$ROOT/bindings-node/index.d.ts" && echo "the package's drain helper" || echo "bench/compare/app.js's own (the package has no drain helper yet)")"
} >&2

cd "$HERE"
# In the background and waited for, so that a signal to this script runs the trap at once.
timeout "${BENCH_TIMEOUT:-3600}" node bench.js &
BENCH_PID=$!
wait "$BENCH_PID"
