#!/usr/bin/env bash
# Every test drover has, in the order a fresh machine needs: lint, build (Rust, C ABI, Node addon),
# then the Rust, C and Node suites, all against real processes.
#
#   ./scripts/test.sh            # everything
#   SKIP_LINT=1 ./scripts/test.sh  # skip fmt/clippy while iterating
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

if [[ -z "${SKIP_LINT:-}" ]]; then
    step "cargo fmt --check"
    cargo fmt --all -- --check
    step "cargo clippy -D warnings"
    cargo clippy --workspace --all-targets --locked -- -D warnings
    step "cargo doc -D warnings (intra-doc links)"
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
fi

step "build (workspace, examples, Node addon)"
cargo build --workspace --all-targets --locked
(cd bindings-node && npm ci --no-audit --no-fund --loglevel=error && npm run build)

step "Rust and C suites (cargo test)"
cargo test --workspace --locked

step "Node suite (tsc --noEmit, node --test)"
(cd bindings-node && npm test)

step "all suites passed"
