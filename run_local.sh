#!/usr/bin/env bash
# The project's one entry point for people and CI.
#   ./run_local.sh run     run the service on its embedded default (port 8080)
#   ./run_local.sh test    install what the tests need, start it, run every test, stop it
#   ./run_local.sh build   release build
#   ./run_local.sh setup   install the test peers into .venv (done by `test` too)
#   ./run_local.sh lint    cargo fmt --check and clippy -D warnings
#   ./run_local.sh bench   the benchmarks under benches/
set -euo pipefail
cd "$(dirname "$0")"

log() { printf '\n==> %s\n' "$*"; }

cmd_build() {
  cargo build --release --locked
}

cmd_run() {
  cargo run --release --locked -- serve
}

cmd_setup() {
  if [ -f scripts/validate_deploy.sh ]; then :; fi
  if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    python3 -m venv .venv
  fi
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
  if [ -x scripts/validate_deploy.sh ]; then
    log "deployment files"
    scripts/validate_deploy.sh
  fi
  log "cargo test (embedded store)"
  cargo test --locked --no-fail-fast
}

cmd_bench() {
  cargo bench --locked "$@"
}

case "${1:-}" in
  build) cmd_build ;;
  run) cmd_run ;;
  test) cmd_test ;;
  setup) cmd_setup ;;
  lint) cmd_lint ;;
  bench) shift; cmd_bench "$@" ;;
  *)
    echo "usage: $0 {run|test|build|setup|lint|bench}" >&2
    exit 2
    ;;
esac
