#!/usr/bin/env bash
# Every test drover has, in the order a fresh machine needs: lint, build (Rust, C ABI, Node addon),
# then the Rust, C and Node suites, all against real processes.
#
#   ./scripts/test.sh            # everything
#   SKIP_LINT=1 ./scripts/test.sh  # skip fmt/clippy while iterating
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# The store's Redis backend is tested against a redis-server each test starts on its own port
# (tests/tests/store.rs, store_redis.rs). Installed here when we can; without it those tests print
# a SKIP line saying so.
if ! command -v redis-server >/dev/null; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        step "apt-get install redis-server (the store's Redis backend tests)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
        # A Debian install starts the system service; the tests use their own servers.
        (systemctl disable --now redis-server || service redis-server stop) >/dev/null 2>&1 || true
    else
        echo "SKIP (Redis backend): redis-server is not installed and cannot be (not root, or no apt-get)" >&2
    fi
fi

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

step "monitor page in headless Chromium (tests/browser)"
# Debian's chromium, driven by playwright-core (npm, pinned): installed here when we may.
if [[ ! -x /usr/bin/chromium && "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y chromium >/dev/null || { apt-get update >/dev/null && apt-get install -y chromium >/dev/null; } || true
fi
if [[ -x /usr/bin/chromium ]]; then
    (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error && node --test)
else
    printf '\n!!! SKIPPED: the monitor page browser test: no /usr/bin/chromium (as root: apt-get install -y chromium) !!!\n\n' >&2
fi

step "all suites passed"
