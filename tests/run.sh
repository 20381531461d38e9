#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the emulator (moto server, into a
# venv under ~/.cache/stack), then formatting, lints and every test. The tests start
# their own emulators on free loopback ports; nothing reaches real AWS.
set -euo pipefail
cd "$(dirname "$0")/.."
# A build directory outside the clone, so CI and later runs reuse the AWS SDK build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stack-target}"
export MOTO_SERVER="$(localstack/moto.sh path)"
# The boot test runs user data with the AWS CLI, and builds the app with cargo-zigbuild.
localstack/moto.sh aws >/dev/null
app/toolchain.sh install
# `up --local` (tests/local.rs) serves the stack with HAProxy from the OS packages.
localstack/haproxy.sh install

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# Build the app for Amazon Linux 2023 up front (minutes on a cold cache) so its
# progress shows here; tests/delivery.rs then finds it built.
cargo build --quiet --bin stack
"$CARGO_TARGET_DIR/debug/stack" build stacks/web.yaml
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
