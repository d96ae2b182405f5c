#!/usr/bin/env bash
# Memory of the embedded store under a create+cancel load: a release build with short TTLs and
# retention, ROUNDS rounds of PAIRS create+cancel pairs, the process's RSS after each round and
# after its cleanup (each pair gives its seat back, so the bundled catalogue suffices). Flat figures across rounds mean nothing is kept for ever. Run it by hand on
# an otherwise idle machine (it is a measurement); nothing leaves 127.0.0.1.
#   scripts/soak.sh            (PAIRS=20000 ROUNDS=3 WORKERS=8 SOAK_SETTLE_SECONDS=15 by default)
set -euo pipefail
cd "$(dirname "$0")/.."

PAIRS=${PAIRS:-20000}
ROUNDS=${ROUNDS:-3}
WORKERS=${WORKERS:-8}
SETTLE=${SOAK_SETTLE_SECONDS:-15}
# SOAK_BIN: an already built binary (skips the release build).
BIN=${SOAK_BIN:-${CARGO_TARGET_DIR:-target}/release/reservation-api}

[ -n "${SOAK_BIN:-}" ] || cargo build --release --locked
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
data=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$data"' EXIT

export DATA_DIR="$data" SERVER_HOST=127.0.0.1 SERVER_PORT="$port" RUST_LOG=warn
export HOLD_TTL_SECONDS=5 IDEMPOTENCY_TTL_SECONDS=5 OUTBOX_RETENTION_SECONDS=5 RESERVATION_RETENTION_SECONDS=5
token=$("$BIN" token --sub soak --ttl 36000)
"$BIN" serve >/dev/null &
pid=$!
for _ in $(seq 1 100); do
  python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/actuator/health/liveness', timeout=1)" 2>/dev/null && break
  sleep 0.1
done

rss() { awk '/VmRSS/ {print $2 / 1024 " MB"}' "/proc/$pid/status"; }
echo "idle: $(rss)"
for round in $(seq 1 "$ROUNDS"); do
  python3 - "$port" "$token" "$PAIRS" "$WORKERS" "$round" <<'PY'
import http.client, json, sys, threading, uuid
port, token, pairs, workers, rnd = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
failures = []
def work(n):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(n):
        h = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
             "Idempotency-Key": str(uuid.uuid4())}
        c.request("POST", "/v1/reservations", json.dumps({"event_id": "evt_2025_1001", "qty": 1}), h)
        r = c.getresponse(); body = r.read()
        if r.status != 201:
            failures.append(r.status); continue
        rid = json.loads(body)["reservation_id"]
        h["Idempotency-Key"] = str(uuid.uuid4())
        c.request("POST", f"/v1/reservations/{rid}/cancel", "", h)
        r = c.getresponse(); r.read()
        if r.status != 200:
            failures.append(r.status)
threads = [threading.Thread(target=work, args=(pairs // workers,)) for _ in range(workers)]
for t in threads: t.start()
for t in threads: t.join()
if failures:
    print(f"round {rnd}: {len(failures)} failed requests, e.g. {failures[:5]}")
PY
  echo "round $round: after $PAIRS pairs: $(rss)"
  sleep "$SETTLE"
  echo "round $round: after cleanup: $(rss)"
done
python3 -c "import urllib.request as u; print(u.urlopen('http://127.0.0.1:$port/actuator/prometheus').read().decode())" | grep '^store_items' || true
