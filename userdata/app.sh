#!/bin/bash
# Boot script for a {{ stack }} instance running the {{ service }} service.
# Rendered by `stack up`: each double-brace placeholder is filled from the stack file.
#
# Installs the app binary from the stack's bucket as a systemd service and starts it.
# Idempotent: a reboot or a second run re-checks everything and changes only what
# differs. STACK_ROOT (empty on an instance) lets tests run it inside a sandbox.
set -euo pipefail

ROOT="${STACK_ROOT:-}"
BUCKET="{{ artifact_bucket }}"
KEY="{{ artifact_key }}"
SHA256="{{ artifact_sha256 }}"
ENDPOINT="{{ endpoint_url }}"
REGION="{{ region }}"
# On EC2 the service's port; a local instance (`stack up --local`) gets its own.
PORT="${STACK_LOCAL_PORT:-{{ port }}}"
APP_DIR="$ROOT/opt/stack-app"
RELEASE="$APP_DIR/releases/$SHA256"
ENV_FILE="$ROOT/etc/stack-app/env"
UNIT="stack-app.service"
UNIT_FILE="$ROOT/etc/systemd/system/$UNIT"
LOG="$ROOT/var/log/stack-userdata.log"

mkdir -p "$(dirname "$LOG")" "$APP_DIR/releases" "$(dirname "$ENV_FILE")" "$(dirname "$UNIT_FILE")"
exec > >(tee -a "$LOG") 2>&1
log() { echo "$(date -Is) stack-userdata: $*"; }
log "{{ stack }}/{{ service }}: installing $KEY"

# 1. The binary: fetched and checked unless this exact build is already installed.
if [ -x "$RELEASE/app" ] && echo "$SHA256  $RELEASE/app" | sha256sum -c --status; then
  log "build $SHA256 already installed"
else
  mkdir -p "$RELEASE"
  tmp="$(mktemp "$RELEASE/.download.XXXXXX")"
  trap 'rm -f "$tmp"' EXIT
  for attempt in 1 2 3 4 5 6; do
    # The instance role may take a few seconds to reach a new instance.
    if aws s3 cp --only-show-errors --region "$REGION" ${ENDPOINT:+--endpoint-url "$ENDPOINT"} \
        "s3://$BUCKET/$KEY" "$tmp"; then
      break
    fi
    if [ "$attempt" = 6 ]; then
      log "could not fetch s3://$BUCKET/$KEY; giving up"
      exit 1
    fi
    log "fetch failed (attempt $attempt of 6); retrying"
    sleep $((attempt * 2))
  done
  if ! echo "$SHA256  $tmp" | sha256sum -c --status; then
    log "s3://$BUCKET/$KEY does not match its digest $SHA256; refusing to run it"
    exit 1
  fi
  chmod 0755 "$tmp"
  mv -f "$tmp" "$RELEASE/app"
  trap - EXIT
  log "installed build $SHA256"
fi
ln -sfn "$RELEASE/app" "$APP_DIR/current"

# 2. Environment and unit, rewritten only when their content changes.
changed=0
write_if_changed() {
  local path="$1" content="$2"
  if [ -f "$path" ] && [ "$(cat "$path")" = "$content" ]; then return 0; fi
  printf '%s\n' "$content" >"$path.tmp"
  mv -f "$path.tmp" "$path"
  changed=1
  log "wrote $path"
}

write_if_changed "$ENV_FILE" "APP_TABLE={{ table }}
APP_BUCKET={{ bucket }}
APP_REGION=$REGION
APP_PORT=$PORT
APP_ENDPOINT_URL=$ENDPOINT
APP_STRESS_ENABLED={{ stress }}
APP_WRITE_TOKEN_VERIFIER={{ write_token_verifier }}"

write_if_changed "$UNIT_FILE" "[Unit]
Description=stack app ({{ stack }}/{{ service }})
After=network-online.target
Wants=network-online.target

[Service]
EnvironmentFile=$ENV_FILE
ExecStart=$APP_DIR/current
Restart=on-failure
RestartSec=2
# The app drains in-flight requests on SIGTERM (scale-in must not cut requests).
KillSignal=SIGTERM
TimeoutStopSec=30
DynamicUser=yes
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target"

# 3. Enable and (re)start: a restart only when something changed.
if [ "$changed" = 1 ] || ! [ -e "$APP_DIR/.started-$SHA256" ]; then
  systemctl daemon-reload
  systemctl enable "$UNIT"
  systemctl restart "$UNIT"
  touch "$APP_DIR/.started-$SHA256"
  log "restarted $UNIT"
else
  systemctl enable "$UNIT"
  systemctl start "$UNIT"
  log "unchanged; $UNIT started if it was not running"
fi

# 4. Report whether the app answers; the load balancer's health check decides the rest.
for _ in $(seq 1 60); do
  if curl -fsS -o /dev/null "http://127.0.0.1:$PORT/health"; then
    log "app answers on port $PORT"
    exit 0
  fi
  sleep 1
done
log "app did not answer on port $PORT within 60 s; see: journalctl -u $UNIT"
exit 1
