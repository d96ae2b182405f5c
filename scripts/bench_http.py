#!/usr/bin/env python3
"""HTTP throughput of the service against an axum hello-world, on this machine, in one run.

Started by `./run_local.sh bench-http`, which builds both binaries in release first. Runs wrk
(`-t1 -c64`, BENCH_SECONDS each, default 10) in this order, interleaving the baseline:

    hello /json, GET /v1/reservations/{id}, hello /json, create, confirm, hello /json

and prints per route: req/s, the ratio to the mean hello /json rate, p50/p99, non-2xx and socket
errors, CPU microseconds per request in the service process (utime+stime deltas of
/proc/<pid>/stat; the bundled inventory and payment run in that process, called in process; with
BUNDLED_PEERS=loopback in the environment, over gRPC on a loopback port), and its RSS.
The service runs on the embedded default with a generated catalogue of one big event, rate limits
off and INFO logs going to /dev/null (BENCH_RUST_LOG changes the level). Nothing leaves 127.0.0.1.

BENCH_REMOTE_PEERS=1 runs the inventory and the payment simulator as processes of their own
(`reservation-api inventory --listen`, `payment --listen`) instead of bundled in the service: the
service's CPU per request then leaves out the server half of the loopback gRPC hop, and the
peers' CPU per request is printed apart (as a remote inventory in production would have it).
BENCH_PERF=FILE records a perf profile of the service during the create run (see
docs/performance.md for reading it). Throughput figures mean something only on an otherwise idle machine (the load is printed first);
CPU per request is meaningful under load too.
"""

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LUA = os.path.join(ROOT, "scripts", "bench_http")
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
SERVICE_BIN = os.environ.get("BENCH_SERVICE_BIN") or os.path.join(TARGET, "release", "reservation-api")
HELLO_BIN = os.environ.get("BENCH_HELLO_BIN") or os.path.join(TARGET, "release", "examples", "hello")
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "64"))
THREADS = int(os.environ.get("BENCH_THREADS", "1"))
SEATS = int(os.environ.get("BENCH_SEATS", "1000000"))
EVENT = "evt_bench"
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_listening(port, proc, what):
    for _ in range(300):
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{what} did not listen on {port}")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15; after the ")" the first field is field 3.
    return int(fields[11]) + int(fields[12])


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def catalogue(path, seats):
    """One event of `seats` seats: sections of 100 rows of 100 seats (the last one shorter)."""
    sections = []
    left = seats
    n = 0
    while left > 0:
        in_section = min(left, 10_000)
        rows = max(1, in_section // 100)
        per_row = in_section // rows
        sections.append({
            "id": f"S{n}", "name": f"Section {n}", "price": 50000,
            "rows": [f"S{n}R{r}" for r in range(rows)], "seats_per_row": per_row,
        })
        left -= rows * per_row
        n += 1
    with open(path, "w") as f:
        json.dump({"events": [{"id": EVENT, "name": "Bench hall", "currency": "KRW",
                               "sections": sections}]}, f)


def wrk(port, script, path, env):
    cmd = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency",
           "-s", os.path.join(LUA, script), f"http://127.0.0.1:{port}{path}"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    m = re.search(r"^BENCH (.*)$", out, re.M)
    if not m:
        sys.exit(f"wrk printed no summary:\n{out}")
    r = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


PEER_PIDS = []


def measure(name, port, script, path, env, pid=None, profile=None):
    before = cpu_ticks(pid) if pid else 0
    peers_before = sum(cpu_ticks(p) for p in PEER_PIDS)
    perf = None
    if profile:
        # A flat profile of the service process during this run (BENCH_PERF=file.data).
        perf = subprocess.Popen(["perf", "record", "-F", "499", "-g", "-o", profile, "-p", str(pid),
                                 "--", "sleep", str(SECONDS)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = wrk(port, script, path, env)
    if perf:
        perf.wait()
    if pid:
        r["cpu_us"] = (cpu_ticks(pid) - before) / TICK * 1e6 / max(r["requests"], 1)
        r["peers_cpu_us"] = ((sum(cpu_ticks(p) for p in PEER_PIDS) - peers_before)
                             / TICK * 1e6 / max(r["requests"], 1))
        r["rss_mb"] = rss_mb(pid)
    r["name"] = name
    print(f"  {name:<28} {r['rps']:>9.0f} req/s  p50 {r['p50_us'] / 1000:6.2f} ms  "
          f"p99 {r['p99_us'] / 1000:7.2f} ms  non-2xx {r['non2xx']}", flush=True)
    return r


def post(port, path, token, body):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                 "Idempotency-Key": str(uuid.uuid4())})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def main():
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
          f" ({'QUIET' if load[0] < 0.5 else 'LOADED: throughput figures are not meaningful'})")
    print(f"wrk -t{THREADS} -c{CONNECTIONS} -d{SECONDS}s per run; catalogue: one event of {SEATS:,} seats")
    tmp = tempfile.mkdtemp(prefix="bench-http-")
    cat = os.path.join(tmp, "catalog.json")
    catalogue(cat, SEATS)
    ids_file = os.path.join(tmp, "ids.txt")
    open(ids_file, "w").close()

    hello_port, api_port = free_port(), free_port()
    procs = []
    try:
        hello = subprocess.Popen([HELLO_BIN, f"127.0.0.1:{hello_port}"], stdout=subprocess.DEVNULL)
        procs.append(hello)
        env = dict(os.environ, DATA_DIR=tmp, SERVER_HOST="127.0.0.1", SERVER_PORT=str(api_port),
                   CATALOG_FILE=cat, RUST_LOG=os.environ.get("BENCH_RUST_LOG", "info"),
                   HOLD_TTL_SECONDS="900", RATE_LIMIT_USER_RPS="0", RATE_LIMIT_GLOBAL_RPS="0")
        if os.environ.get("BENCH_REMOTE_PEERS") == "1":
            inv_port, pay_port = free_port(), free_port()
            inv = subprocess.Popen([SERVICE_BIN, "inventory", "--listen", f"127.0.0.1:{inv_port}",
                                    "--catalog", cat], env=env, stdout=subprocess.DEVNULL)
            pay = subprocess.Popen([SERVICE_BIN, "payment", "--listen", f"127.0.0.1:{pay_port}"],
                                   env=env, stdout=subprocess.DEVNULL)
            procs.extend([inv, pay])
            wait_listening(inv_port, inv, "the inventory")
            wait_listening(pay_port, pay, "the payment simulator")
            PEER_PIDS.extend([inv.pid, pay.pid])
            env["INVENTORY_GRPC_ADDRESS"] = f"127.0.0.1:{inv_port}"
            env["PAYMENT_GRPC_ADDRESS"] = f"127.0.0.1:{pay_port}"
            print("peers: inventory and payment in processes of their own (BENCH_REMOTE_PEERS=1)")
        token = subprocess.run([SERVICE_BIN, "token", "--sub", "bench", "--ttl", "36000"], env=env,
                               capture_output=True, text=True, check=True).stdout.strip()
        started = time.monotonic()
        api = subprocess.Popen([SERVICE_BIN, "serve"], env=env, stdout=subprocess.DEVNULL)
        procs.append(api)
        wait_listening(api_port, api, "the service")
        print(f"service: listening {time.monotonic() - started:.2f} s after start, "
              f"RSS {rss_mb(api.pid):.0f} MB at idle")
        wait_listening(hello_port, hello, "hello")
        one = post(api_port, "/v1/reservations", token, {"event_id": EVENT, "qty": 1})
        lua_env = dict(os.environ, BENCH_LUA_DIR=LUA, BENCH_TOKEN=token, BENCH_EVENT=EVENT,
                       BENCH_RESERVATION=one["reservation_id"], IDS_FILE=ids_file,
                       BENCH_RUN=uuid.uuid4().hex[:8])

        results = []
        hellos = []
        def base():
            hellos.append(measure("hello /json", hello_port, "hello.lua", "/json", lua_env))
        base()
        results.append(measure("GET /v1/reservations/{id}", api_port, "get.lua",
                               "/v1/reservations", lua_env, api.pid))
        base()
        results.append(measure("create (1-seat hold)", api_port, "create.lua",
                               "/v1/reservations", lua_env, api.pid,
                               profile=os.environ.get("BENCH_PERF")))
        with open(ids_file) as f:
            holds = sum(1 for _ in f)
        confirm = measure("confirm", api_port, "confirm.lua", "/v1/reservations", lua_env, api.pid)
        if confirm["requests"] > holds:
            print(f"  note: the confirm run sent {confirm['requests']} requests for {holds} holds; "
                  "the rest were refused and count as non-2xx")
        results.append(confirm)
        base()

        hello_rps = sum(h["rps"] for h in hellos) / len(hellos)
        print()
        print(f"hello /json: {hello_rps:,.0f} req/s (mean of {len(hellos)} runs: "
              + ", ".join(f"{h['rps']:,.0f}" for h in hellos) + ")")
        print(f"{'route':<28} {'req/s':>9} {'÷hello':>7} {'p50 ms':>7} {'p99 ms':>8} "
              f"{'non-2xx':>8} {'sock err':>8} {'CPU µs/req':>10} {'RSS MB':>7}"
              + (f" {'peers µs/req':>12}" if PEER_PIDS else ""))
        for r in results:
            errs = r["connect"] + r["read"] + r["write"] + r["timeout"]
            print(f"{r['name']:<28} {r['rps']:>9,.0f} {r['rps'] / hello_rps:>7.2f} "
                  f"{r['p50_us'] / 1000:>7.2f} {r['p99_us'] / 1000:>8.2f} {r['non2xx']:>8} "
                  f"{errs:>8} {r['cpu_us']:>10.1f} {r['rss_mb']:>7.0f}"
                  + (f" {r['peers_cpu_us']:>12.1f}" if PEER_PIDS else ""))

        # Shutdown: SIGTERM to exit, with everything the runs left in the store.
        t = time.monotonic()
        api.terminate()
        api.wait(timeout=60)
        print(f"\nSIGTERM to exit: {time.monotonic() - t:.2f} s (exit code {api.returncode})")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
