#!/usr/bin/env bash
# Schemathesis against the served /v3/api-docs, bounded in time: no 5xx, no answer that breaks the
# schema, no schema-valid request refused (beyond what the schema cannot say). Starts the built
# binary (BIN, default the debug build) on a free 127.0.0.1 port with a development token.
#   scripts/schemathesis.sh            (SCHEMATHESIS_MAX_TIME=90 seconds by default)
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-${CARGO_TARGET_DIR:-target}/debug/reservation-api}
MAX_TIME=${SCHEMATHESIS_MAX_TIME:-90}
[ -x "$BIN" ] || cargo build --locked --bin reservation-api
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
data=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$data"
}
trap cleanup EXIT
# One worker: with two, schemathesis parses lambdas' source (Hypothesis) on two threads at once,
# and CPython 3.11's AST constructor is not safe for that: "AST constructor recursion depth
# mismatch" failed a fresh-clone run as a Runtime Error of the tool, not a finding on the API.
# Only this process: never the caller's AWS, Redis or issuer settings. A debug build on a busy
# machine answers slower than the 250 ms gRPC deadline; deadlines have tests of their own, so the
# run allows 5 s (a 504 here would be the machine, not the contract).
run_env=(env -i PATH="$PATH" DATA_DIR="$data" SERVER_HOST=127.0.0.1 SERVER_PORT="$port" RUST_LOG=warn
  INVENTORY_TIMEOUT_MS=5000 PAYMENT_TIMEOUT_MS=5000)
token=$("${run_env[@]}" "$BIN" token --sub schemathesis --ttl 3600)
"${run_env[@]}" "$BIN" serve >"$data/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/actuator/health/liveness', timeout=1)" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$data/serve.log" >&2; exit 1; }
  sleep 0.1
done
.venv/bin/schemathesis --config-file scripts/schemathesis.toml run "http://127.0.0.1:$port/v3/api-docs" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,positive_data_acceptance,refusals_are_domain_only \
  --phases examples,coverage,fuzzing \
  --max-time "$MAX_TIME" \
  --workers 1 \
  --request-timeout 10 \
  --no-color
