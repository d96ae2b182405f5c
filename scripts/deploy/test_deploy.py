"""What only this project knows about its deployment files (the generic checks are standard tools
in scripts/validate_deploy.sh). Run by that script with:

    RENDER_DIR   the renders: k8s-dev.yaml, k8s-prod.yaml (kubectl kustomize), helm-default.yaml,
                 helm-prod.yaml, helm-options.yaml (scripts/deploy/render.py)
    RESERVATION_API_BIN   the binary (cargo build), for `config check`, `serve` and `probe`
"""

import base64
import json
import os
import re
import subprocess
import threading
from pathlib import Path
from urllib.parse import urlparse

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RENDER_DIR = Path(os.environ["RENDER_DIR"])
BIN = os.environ["RESERVATION_API_BIN"]
K8S = ["k8s-dev", "k8s-prod", "helm-default", "helm-prod", "helm-options"]
DEV = ["k8s-dev", "helm-default", "helm-options"]
COMPOSE = ["docker-compose.dev.yml", "docker-compose.prod.yml"]
# What the operator supplies to docker-compose.prod.yml (`${VAR:?}`): example values.
PROD_COMPOSE_ENV = {
    "IMAGE": "registry.example.com/reservation-api:0.1.0",
    "AWS_REGION": "ap-northeast-2",
    "JWT_ISSUER_URI": "https://issuer.example.com/realms/tickets",
    "REDIS_URL": "redis://redis.internal:6379/0",
    "PAYMENT_GRPC_ADDRESS": "http://payment.internal:9091",
}
TABLES = {k: v["TableName"] for k, v in json.loads((ROOT / "dynamodb/tables.json").read_text()).items()}
GRPC_SERVICES = {"inventory": "reservation.v1.InventoryService", "payment": "payment.v1.PaymentService"}


# ---------------------------------------------------------------------------------------------
# The containers of each render, with their resolved environment


def k8s_docs(name):
    return [d for d in yaml.safe_load_all((RENDER_DIR / f"{name}.yaml").read_text()) if d]


def k8s_containers(docs):
    """(deployment name, container, env dict) of every Deployment container."""
    by = lambda kind: {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}  # noqa: E731
    maps, secrets = by("ConfigMap"), by("Secret")

    def secret_data(name):
        s = secrets[name]
        out = {k: base64.b64decode(v).decode() for k, v in (s.get("data") or {}).items()}
        return out | (s.get("stringData") or {})

    out = []
    for d in docs:
        if d["kind"] != "Deployment":
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            env = {}
            for src in c.get("envFrom", []):
                if "configMapRef" in src:
                    env |= maps[src["configMapRef"]["name"]]["data"]
                else:
                    env |= secret_data(src["secretRef"]["name"])
            for e in c.get("env", []):
                if "value" in e:
                    env[e["name"]] = e["value"]
                elif "secretKeyRef" in e["valueFrom"]:
                    ref = e["valueFrom"]["secretKeyRef"]
                    env[e["name"]] = secret_data(ref["name"])[ref["key"]]
                else:
                    ref = e["valueFrom"]["configMapKeyRef"]
                    env[e["name"]] = maps[ref["name"]]["data"][ref["key"]]
            out.append((d["metadata"]["name"], c, env))
    return out


def interpolate(value, env):
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}`, the forms these files use."""

    def one(m):
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if env.get(name):
            return env[name]
        if op == ":?":
            raise AssertionError(f"${{{name}}} is required: {arg}")
        return arg or ""

    return re.sub(r"\$\{(\w+)(?:(:[-?])([^}]*))?\}", one, str(value))


def compose_services(file):
    """(service name, service, env dict) of every service running the binary."""
    doc = yaml.safe_load((ROOT / file).read_text())
    host_env = PROD_COMPOSE_ENV if "prod" in file else {}
    out = []
    for name, s in doc["services"].items():
        image = interpolate(s.get("image", ""), host_env)
        if "reservation-api" not in image:
            continue
        env = {k: interpolate(v, host_env) for k, v in (s.get("environment") or {}).items()}
        out.append((name, s, env))
    return doc, out


def all_renders():
    for name in K8S:
        yield name, [(n, env) for n, _, env in k8s_containers(k8s_docs(name))]
    for file in COMPOSE:
        yield file, [(n, env) for n, _, env in compose_services(file)[1]]


def config_check(env):
    keep = {"PATH": os.environ.get("PATH", "")}
    return subprocess.run([BIN, "config", "check"], env=keep | env, capture_output=True, text=True, timeout=30)


# ---------------------------------------------------------------------------------------------
# Must show 1: every container's environment passes `config check`


@pytest.mark.parametrize("render", K8S + COMPOSE)
def test_every_container_environment_passes_config_check(render):
    containers = dict(all_renders())[render]
    assert containers, f"{render}: no container runs the binary"
    for name, env in containers:
        r = config_check(env)
        assert r.returncode == 0, f"{render} {name}: config check refuses its environment:\n{r.stderr}"


def test_config_check_refuses_what_the_issue_found():
    # The combination every old manifest had: prod with an issuer but neither Redis nor peers.
    r = config_check({"APP_PROFILE": "prod", "JWT_ISSUER_URI": "https://issuer.example.com"})
    assert r.returncode == 2 and "REDIS_URL" in r.stderr and "INVENTORY_GRPC_ADDRESS" in r.stderr


# ---------------------------------------------------------------------------------------------
# Must show 2: gRPC addresses name a Service of the same render; probes hit real routes


def host_port(address):
    u = urlparse(address if "://" in address else f"http://{address}")
    return u.hostname, u.port


@pytest.mark.parametrize("render", K8S)
def test_k8s_grpc_addresses_name_a_service_of_the_same_render(render):
    docs = k8s_docs(render)
    services = {d["metadata"]["name"]: {p["port"] for p in d["spec"]["ports"]} for d in docs if d["kind"] == "Service"}
    seen = 0
    for name, _, env in k8s_containers(docs):
        for var, address in env.items():
            if var.endswith("_GRPC_ADDRESS"):
                host, port = host_port(address)
                service = host.split(".")[0]
                assert service in services, f"{render} {name}: {var}={address} names no Service of this render"
                assert port in services[service], f"{render} {name}: {var}={address}: {service} has ports {services[service]}"
                seen += 1
    assert seen >= 2


@pytest.mark.parametrize("file", COMPOSE)
def test_compose_grpc_addresses_name_a_service_of_the_same_file(file):
    doc, services = compose_services(file)
    listens = {}
    for name, s, _ in services:
        cmd = s.get("command") or []
        if "--listen" in cmd:
            listens[name] = int(cmd[cmd.index("--listen") + 1].rsplit(":", 1)[1])
    for name, s, _ in services:
        for var, raw in (s.get("environment") or {}).items():
            # An operator-supplied address (`${…:?}`) is the real payment service, outside the file.
            if var.endswith("_GRPC_ADDRESS") and not str(raw).startswith("${"):
                host, port = host_port(raw)
                assert listens.get(host) == port, f"{file} {name}: {var}={raw}; gRPC servers here: {listens}"


@pytest.fixture(scope="module")
def running():
    """The binary's own servers on loopback ports: `serve` (local profile) and the two gRPC peers."""
    procs, addrs = [], {}
    env = {"PATH": os.environ.get("PATH", ""), "SERVER_HOST": "127.0.0.1", "SERVER_PORT": "0", "RUST_LOG": "info"}
    for name, (args, message) in {
        "serve": (["serve"], "reservation-api listening"),
        "inventory": (["inventory", "--listen", "127.0.0.1:0"], "gRPC server listening"),
        "payment": (["payment", "--listen", "127.0.0.1:0"], "gRPC server listening"),
    }.items():
        p = subprocess.Popen([BIN, *args], env=env | {"DATA_DIR": str(RENDER_DIR / f"data-{name}")}, stdout=subprocess.PIPE, text=True)
        procs.append(p)
        for line in p.stdout:
            log = json.loads(line)
            if log.get("message") == message:
                addrs[name] = log["addr"]
                break
        # Keep reading, so that a full pipe never blocks the server's logging.
        threading.Thread(target=p.stdout.read, daemon=True).start()
    yield addrs
    for p in procs:
        p.terminate()
        p.wait(10)


def http_route_ok(running, path):
    import urllib.request

    with urllib.request.urlopen(f"http://{running['serve']}{path}", timeout=5) as r:
        return r.status == 200


def grpc_health_ok(running, component, service):
    r = subprocess.run([BIN, "probe", f"grpc://{running[component]}", "--service", service], capture_output=True, timeout=30)
    return r.returncode == 0


def component(args):
    return args[0] if args and args[0] in GRPC_SERVICES else "serve"


@pytest.mark.parametrize("render", K8S)
def test_k8s_probes_hit_a_route_of_the_binary_or_its_grpc_health(render, running):
    probes = 0
    for name, c, _ in k8s_containers(k8s_docs(render)):
        ports = {p.get("name"): p["containerPort"] for p in c["ports"]}
        kind = component(c.get("args") or c.get("command"))
        for key in ("startupProbe", "livenessProbe", "readinessProbe"):
            probe = c.get(key)
            if not probe:
                continue
            probes += 1
            where = f"{render} {name} {key}"
            if "httpGet" in probe:
                assert kind == "serve", f"{where}: an HTTP probe on a gRPC server"
                port = probe["httpGet"]["port"]
                assert ports.get(port, port) == 8080, f"{where}: port {port} is not the API's 8080"
                assert http_route_ok(running, probe["httpGet"]["path"]), where
            else:
                assert kind in GRPC_SERVICES and "grpc" in probe, f"{where}: {probe}"
                listen = int(c["args"][c["args"].index("--listen") + 1].rsplit(":", 1)[1])
                assert probe["grpc"]["port"] == listen, f"{where}: the server listens on {listen}"
                service = probe["grpc"].get("service", "")
                assert service in ("", GRPC_SERVICES[kind]), where
                assert grpc_health_ok(running, kind, service), where
    assert probes >= 5


def test_compose_and_dockerfile_healthchecks_hit_a_route_or_grpc_health(running):
    checks = []
    for file in COMPOSE:
        for name, s, _ in compose_services(file)[1]:
            test = (s.get("healthcheck") or {}).get("test")
            if test:
                checks.append((f"{file} {name}", component(s.get("command")), test[test.index("probe") + 1 :]))
    m = re.search(r"HEALTHCHECK [^[]*CMD (\[[^]]*\])", (ROOT / "Dockerfile").read_text())
    dockerfile = json.loads(m.group(1))
    checks.append(("Dockerfile", "serve", dockerfile[dockerfile.index("probe") + 1 :]))
    assert len(checks) >= 6
    for where, kind, args in checks:
        url = urlparse(args[0])
        if url.scheme == "grpc":
            service = args[args.index("--service") + 1] if "--service" in args else ""
            assert service in ("", GRPC_SERVICES.get(kind)), where
            assert grpc_health_ok(running, kind, service), where
        else:
            assert kind == "serve" and url.port == 8080, where
            assert http_route_ok(running, url.path), where


# ---------------------------------------------------------------------------------------------
# Table names, the dev key, CRDs


def test_table_names_everywhere_equal_tables_json():
    want = {f"DYNAMODB_TABLE_{k.upper()}": v for k, v in TABLES.items()}
    for render, containers in all_renders():
        for name, env in containers:
            got = {k: v for k, v in env.items() if k.startswith("DYNAMODB_TABLE_")}
            assert got == want, f"{render} {name}"
    values = yaml.safe_load((ROOT / "helm/reservation-api/values.yaml").read_text())
    assert values["config"]["dynamodb"]["tables"] == TABLES
    # And the binary's defaults (what `config check` prints with nothing set).
    out = config_check({}).stdout
    for var, table in want.items():
        assert f"{var}={table}" in out.splitlines()


@pytest.mark.parametrize("render", DEV)
def test_a_dev_render_has_one_key_secret_shared_by_every_api_pod(render):
    docs = k8s_docs(render)
    keys = [d for d in docs if d["kind"] == "Secret" and "JWT_DEV_SECRET" in {**d.get("data", {}), **d.get("stringData", {})}]
    assert len(keys) == 1, f"{render}: {len(keys)} dev key Secrets"
    api = [(n, c, env) for n, c, env in k8s_containers(docs) if component(c.get("args")) == "serve"]
    assert api
    for name, c, env in api:
        assert env.get("APP_PROFILE") == "dev"
        refs = [s["secretRef"]["name"] for s in c.get("envFrom", []) if "secretRef" in s]
        refs += [e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]
        assert refs == [keys[0]["metadata"]["name"]], f"{render} {name}: key from {refs}"
        assert env["JWT_DEV_SECRET"], name


@pytest.mark.parametrize("render", ["k8s-prod", "helm-prod"])
def test_a_prod_render_has_no_dev_key(render):
    for d in k8s_docs(render):
        assert "JWT_DEV_SECRET" not in {**d.get("data", {}), **d.get("stringData", {})}, d["metadata"]["name"]


def test_crd_objects_match_their_vendored_schema():
    schema = json.loads((ROOT / "scripts/deploy/schemas/servicemonitor.json").read_text())
    found = 0
    for render in K8S:
        for d in k8s_docs(render):
            if d["kind"] == "ServiceMonitor":
                jsonschema.validate(d, schema)
                found += 1
            else:
                assert "." not in d["apiVersion"].split("/")[0] or d["apiVersion"].split("/")[0].endswith("k8s.io"), d["kind"]
    assert found >= 2


# ---------------------------------------------------------------------------------------------
# Must show 6: nothing in the repository refers to a path outside it


def test_no_file_refers_to_a_path_outside_the_repository():
    # Built from parts, so that this file does not match itself.
    patterns = ["shared" + "/spec", "../" + "shared", "/wo" + "rk/", "/ro" + "ot/", "/ho" + "me/"]
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    found = []
    for f in filter(None, files):
        path = ROOT / f.decode()
        if not path.is_file():
            continue
        text = path.read_bytes().decode("utf-8", "replace")
        found += [f"{f.decode()}: {p}" for p in patterns if p in text]
    assert not found, "paths outside the repository:\n" + "\n".join(found)
