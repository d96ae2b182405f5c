#!/usr/bin/env python3
"""Shares of a perf profile by kind of work: `perf_summary.py perf.data [top]`.

Reads `perf report --no-children --sort symbol -g none` and sums the self time of each symbol
into the first matching group below (order matters), then lists the top symbols.
"""
import re
import subprocess
import sys

GROUPS = [
    ("allocator (malloc/free)", r"malloc|_int_free|cfree|free@|unlink_chunk|consolidate|__rdl_|__rust_alloc|__rust_dealloc|realloc|mi_|_mi_"),
    ("tracing spans + OpenTelemetry", r"tracing|opentelemetry|sharded_slab|SpanFacts"),
    ("JSON log line", r"JsonLines|logging::"),
    ("loopback gRPC (h2, tonic, prost, clients/servers, resilience)", r"h2::|tonic|prost|reservation_api::grpc|tower_resilience|hpack|InventoryService|PaymentService"),
    ("HTTP (hyper, axum, tower)", r"hyper|axum|tower|http::"),
    ("JSON (serde_json)", r"serde_json|serde_core"),
    ("embedded store", r"store::memory|btree"),
    ("seat inventory", r"inventory::"),
    ("idempotency (SHA-256, fingerprint)", r"sha2|Sha256|idempotency|hex::"),
    ("tokio runtime", r"tokio|mio::"),
    ("memcpy/memcmp", r"memmove|memcpy|memcmp|memset"),
    ("kernel (syscalls, network, scheduling)", r"^\[k\]"),
]


def main():
    data = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    out = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "symbol",
                          "-g", "none", "--stdio"], capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\[[.k]\])\s+(.*?)\s*(-\s+-\s*)?$", line)
        if m:
            rows.append((float(m.group(1)), f"{m.group(2)} {m.group(3)}"))
    shares = {name: 0.0 for name, _ in GROUPS}
    other = 0.0
    for pct, sym in rows:
        for name, pattern in GROUPS:
            if re.search(pattern, sym):
                shares[name] += pct
                break
        else:
            other += pct
    print("| kind of work | share of the service's CPU |\n|---|---|")
    for name, pct in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {pct:.1f} % |")
    print(f"| other | {other:.1f} % |")
    print(f"\ntop {top} symbols (self):")
    for pct, sym in rows[:top]:
        print(f"  {pct:5.2f} %  {sym[:110]}")


if __name__ == "__main__":
    main()
