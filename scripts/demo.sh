#!/usr/bin/env bash
# Builds drover and runs the Rust example: a master supervising 4 HTTP workers, visibly —
# start, a kill -9 and its automatic restart, a zero-downtime reload, a graceful shutdown.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --examples --locked
exec target/debug/examples/master
