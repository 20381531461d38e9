#!/usr/bin/env bash
# Prints wall time and AWS API calls (total / writes / per service) of plan, up,
# converged plan and down, for stacks/web.yaml and generated stacks with 1, 5 and 20
# services, each against a fresh moto server on a free loopback port. Numbers only;
# nothing is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stack-target}"
cargo build --quiet --bin stack
STACK="$CARGO_TARGET_DIR/debug/stack"
MOTO="$(localstack/moto.sh path)"
WORK="$(mktemp -d)"
trap 'kill $MOTO_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/stacks" "$WORK/userdata"
cp userdata/*.sh "$WORK/userdata/"
cp stacks/web.yaml "$WORK/stacks/web.yaml"

generate() { # N services
  local n=$1 f="$WORK/stacks/gen$1.yaml"
  {
    echo "stack: gen$n"
    echo "network: { cidr: 10.50.0.0/16, subnets: [ { az: a, cidr: 10.50.1.0/24 }, { az: b, cidr: 10.50.2.0/24 } ] }"
    echo "load_balancer:"
    echo "  ingress: [0.0.0.0/0]"
    echo "  listener: { port: 80 }"
    echo "  default_service: s1"
    echo "  rules:"
    for i in $(seq 2 "$n"); do echo "    - { path: \"/s$i/*\", service: s$i, priority: $i }"; done
    echo "services:"
    for i in $(seq 1 "$n"); do
      echo "  s$i: { port: 8080, health: { path: /health }, instance: { type: t3.micro, ami: al2023 }, user_data: ../userdata/app.sh, scaling: { min: 1, max: 2, desired: 1, cpu_target: 50 } }"
    done
    echo "table: { name: t, partition_key: { name: id, type: S } }"
  } > "$f"
  [ "$n" -gt 1 ] || sed -i 's/^  rules:$/  rules: []/' "$f"
  echo "$f"
}

run() { # label file command...
  local label=$1 file=$2; shift 2
  local start end stats
  start=$(date +%s.%N)
  stats=$(AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \
    "$STACK" "$@" "$file" --endpoint-url "http://127.0.0.1:$PORT" --stats 2>&1 >/dev/null | sed -n '/^AWS API calls/,$p')
  end=$(date +%s.%N)
  printf '  %-16s %6.2fs  %s\n' "$label" "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" "$(echo "$stats" | head -1)"
  echo "$stats" | tail -n +2 | sed 's/^/                            /'
}

for target in web 1 5 20; do
  if [ "$target" = web ]; then file="$WORK/stacks/web.yaml"; else file=$(generate "$target"); fi
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$MOTO" -H 127.0.0.1 -p "$PORT" >/dev/null 2>&1 & MOTO_PID=$!
  until curl -fsS -o /dev/null "http://127.0.0.1:$PORT/moto-api/" 2>/dev/null; do sleep 0.1; done
  echo "== $(basename "$file") ($target services)"
  run "plan (empty)" "$file" plan
  run "up" "$file" up --yes
  run "plan (converged)" "$file" plan
  run "down" "$file" down --yes
  kill $MOTO_PID; wait $MOTO_PID 2>/dev/null || true
done

# The deploy benchmark (a new build to a 5-service stack through the proxy at 50 ms
# per call, with scripted 4 s instance refreshes): the engine's time on top of AWS's.
MOTO_SERVER="$MOTO" cargo nextest run --test bench_deploy --no-capture 2>&1 | sed -n '/^deploy benchmark/,/engine on top/p'

# The local load balancer (`up --local`): req/s and p50/p99 through HAProxy to 2 and
# 4 local instances beside one instance hit directly.
MOTO_SERVER="$MOTO" cargo nextest run --test bench_local --no-capture 2>&1 | sed -n '/^local load balancer benchmark/,/HAProxy → 4 instances *\/info/p'
