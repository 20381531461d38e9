#!/usr/bin/env bash
# Install and run moto server, the local AWS emulator the tests and the demo use.
#
#   localstack/moto.sh install        create the venv with moto[server] (idempotent)
#   localstack/moto.sh start [PORT]   start it on 127.0.0.1:PORT (default 4566), wait until it answers
#   localstack/moto.sh stop  [PORT]   stop the one started on PORT
#   localstack/moto.sh path           print the moto_server executable
#   localstack/moto.sh aws            print an `aws` CLI executable (installed on first use;
#                                     the boot test runs user data with it, as AL2023 has one)
#   localstack/moto.sh venv DIR SPEC EXE
#                                     a venv at DIR with the pip requirement SPEC, checked by
#                                     its bin/EXE (idempotent; app/toolchain.sh uses it too)
#
# The venv lives outside the clone (STACK_CACHE, default ~/.cache/stack) so CI and
# later runs reuse it.
set -euo pipefail

MOTO_VERSION="5.2.5"
CACHE="${STACK_CACHE:-$HOME/.cache/stack}"
VENV="$CACHE/moto-$MOTO_VERSION"
BIN="$VENV/bin/moto_server"
AWSCLI_VERSION="1.46.3"
AWSCLI_VENV="$CACHE/awscli-$AWSCLI_VERSION"

log() { printf 'moto.sh: %s\n' "$*" >&2; }

uv_cmd() {
  if ! command -v uv >/dev/null 2>&1 && ! python3 -m uv --version >/dev/null 2>&1; then
    log "installing uv with pip"
    python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv
  fi
  if command -v uv >/dev/null 2>&1; then echo uv; else echo "python3 -m uv"; fi
}

# venv DIR SPEC EXE: the marker is written last, so an interrupted install is redone.
venv() {
  local dir="$1" spec="$2" exe="$3"
  if [ -f "$dir/.complete" ]; then return 0; fi
  mkdir -p "$(dirname "$dir")"
  local uv
  uv="$(uv_cmd)"
  log "creating $dir with $spec"
  rm -rf "$dir"
  $uv venv --quiet -p python3 "$dir"
  $uv pip install --quiet --python "$dir/bin/python" "$spec"
  [ -x "$dir/bin/$exe" ] || { log "$exe missing after installing $spec"; exit 1; }
  touch "$dir/.complete"
}

install() {
  venv "$VENV" "moto[server]==$MOTO_VERSION" moto_server
}

start() {
  local port="${1:-4566}"
  install
  local pidfile="$CACHE/moto-$port.pid"
  if curl -fsS -o /dev/null "http://127.0.0.1:$port/moto-api/" 2>/dev/null; then
    log "already answering on 127.0.0.1:$port"
    return 0
  fi
  # AWS's managed policies exist in every account; moto loads them only when asked.
  MOTO_IAM_LOAD_MANAGED_POLICIES=true nohup "$BIN" -H 127.0.0.1 -p "$port" >"$CACHE/moto-$port.log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$port/moto-api/" 2>/dev/null; then
      log "moto server answering on http://127.0.0.1:$port (log: $CACHE/moto-$port.log)"
      return 0
    fi
    kill -0 "$(cat "$pidfile")" 2>/dev/null || { log "moto server exited; see $CACHE/moto-$port.log"; exit 1; }
    sleep 0.1
  done
  log "moto server did not answer within 30 s"
  exit 1
}

awscli() {
  venv "$AWSCLI_VENV" "awscli==$AWSCLI_VERSION" aws
  echo "$AWSCLI_VENV/bin/aws"
}

stop() {
  local port="${1:-4566}"
  local pidfile="$CACHE/moto-$port.pid"
  if [ -f "$pidfile" ]; then
    kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
    log "stopped moto server on port $port"
  fi
}

case "${1:-}" in
  install) install ;;
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  path) install; echo "$BIN" ;;
  aws) awscli ;;
  venv) venv "${2:?DIR}" "${3:?SPEC}" "${4:?EXE}" ;;
  *) echo "usage: $0 install|start [PORT]|stop [PORT]|path|aws|venv DIR SPEC EXE" >&2; exit 2 ;;
esac
