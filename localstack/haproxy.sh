#!/usr/bin/env bash
# HAProxy, the load balancer `stack up --local` serves a stack with: installed from
# the OS packages when it is missing (apt-get on Debian/Ubuntu, Homebrew on macOS).
#
#   localstack/haproxy.sh install    install it unless `haproxy` is on PATH (idempotent)
set -euo pipefail

log() { printf 'haproxy.sh: %s\n' "$*" >&2; }

install() {
  if command -v haproxy >/dev/null 2>&1; then
    return 0
  fi
  case "$(uname -s)" in
    Linux)
      if ! command -v apt-get >/dev/null 2>&1; then
        log "install haproxy (2.4 or newer) with your distribution's package manager"
        exit 1
      fi
      local sudo=""
      [ "$(id -u)" = 0 ] || sudo="sudo"
      log "installing haproxy with apt-get"
      $sudo apt-get update -qq
      # The package's own service is not needed: `stack` runs its own HAProxy.
      $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy >/dev/null
      ;;
    Darwin)
      if command -v brew >/dev/null 2>&1; then
        log "installing haproxy with Homebrew"
        brew install haproxy
      else
        log "install Homebrew, then: brew install haproxy"
        exit 1
      fi
      ;;
    *)
      log "install haproxy (2.4 or newer), then run this again"
      exit 1
      ;;
  esac
  command -v haproxy >/dev/null 2>&1 || { log "haproxy is still not on PATH"; exit 1; }
}

case "${1:-install}" in
  install) install ;;
  *) log "usage: localstack/haproxy.sh install"; exit 2 ;;
esac
