#!/usr/bin/env bash
# The demo, end to end on a local emulator from a fresh clone: installs and starts
# moto server on 127.0.0.1:4566, installs the toolchain that builds the app for Amazon
# Linux 2023 and HAProxy, builds `stack`, brings stacks/web.yaml up (building and
# shipping the app) and serves it on this machine (`up --local`: the instances run as
# processes behind HAProxy), shows that a second plan has nothing to do, and prints
# the local URL.
#
#   localstack/demo.sh          bring the demo stack up
#   localstack/demo.sh down     take it down again (and stop the emulator)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stack-target}"
STACK="$CARGO_TARGET_DIR/debug/stack"
FILE="${STACK_FILE:-stacks/web.yaml}"

localstack/moto.sh start 4566
cargo build --quiet --bin stack

if [ "${1:-up}" = "down" ]; then
  "$STACK" down --local --yes --force "$FILE"
  localstack/moto.sh stop 4566
  exit 0
fi

app/toolchain.sh install
localstack/haproxy.sh install
# The instances' user data fetches the app with the AWS CLI, as on Amazon Linux.
PATH="$(dirname "$(localstack/moto.sh aws)"):$PATH"
export PATH
"$STACK" up --local --yes "$FILE"
echo
echo "== second plan (should be 'No changes.'):"
"$STACK" plan --local --detailed-exitcode "$FILE"
echo
echo "Emulator on http://127.0.0.1:4566; the stack on http://127.0.0.1:8080/ (try /info, /admin)."
echo "Watch it: $STACK status --local $FILE"
echo "Take it down with: localstack/demo.sh down"
