#!/usr/bin/env bash
# Install what `stack up` needs to build the app for Amazon Linux 2023 on x86_64:
# cargo-zigbuild and zig (from the ziglang Python package). AL2023 has glibc 2.34,
# older than most build machines, so the binary is linked against glibc 2.34 by zig.
#
#   app/toolchain.sh install   install both into $STACK_CACHE/toolchain/bin (idempotent)
#   app/toolchain.sh bin       print that directory
#
# `stack` looks for cargo-zigbuild on PATH first, then in that directory.
set -euo pipefail

ZIGBUILD_VERSION="0.24.1"
ZIG_VERSION="0.15.2"
CACHE="${STACK_CACHE:-$HOME/.cache/stack}"
ROOT="$CACHE/toolchain"
BIN="$ROOT/bin"
VENV="$ROOT/zig-$ZIG_VERSION"

log() { printf 'toolchain.sh: %s\n' "$*" >&2; }

install() {
  # The marker is written last, so an interrupted install is redone.
  if [ -f "$ROOT/.complete-$ZIGBUILD_VERSION-$ZIG_VERSION" ]; then return 0; fi
  mkdir -p "$BIN"
  "$(dirname "$0")/../localstack/moto.sh" venv "$VENV" "ziglang==$ZIG_VERSION" python
  local zig
  zig="$("$VENV/bin/python" -c 'import ziglang, os; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')"
  [ -x "$zig" ] || { log "zig missing after install"; exit 1; }
  ln -sf "$zig" "$BIN/zig"
  log "installing cargo-zigbuild $ZIGBUILD_VERSION into $ROOT (a few minutes, once)"
  cargo install --quiet --locked --root "$ROOT" "cargo-zigbuild@$ZIGBUILD_VERSION"
  touch "$ROOT/.complete-$ZIGBUILD_VERSION-$ZIG_VERSION"
  log "ready: $BIN"
}

case "${1:-}" in
  install) install ;;
  bin) echo "$BIN" ;;
  *) echo "usage: $0 install|bin" >&2; exit 2 ;;
esac
