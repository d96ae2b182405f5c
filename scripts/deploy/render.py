"""`helm lint --strict` and `helm template` through Helm's Go SDK (helm-python-sdk: no helm binary).

    python scripts/deploy/render.py OUT_DIR

Lints the chart with its default values and with values-prod.yaml, then writes one multi-document
YAML file per render into OUT_DIR: helm-default.yaml, helm-prod.yaml, helm-options.yaml (the
optional objects on: ServiceMonitor, no HPA). Exits 1 on a lint finding or a render error.
"""

import contextlib
import os
import sys
import tempfile
from pathlib import Path

import helm_python
import yaml

CHART = Path(__file__).resolve().parents[2] / "helm" / "reservation-api"
KUBE_VERSION = "v1.30.0"


@contextlib.contextmanager
def quiet_stderr():
    """Helm's Go logger writes to fd 2 directly; keep expected chatter out of the report."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def main(out: Path) -> int:
    prod = helm_python.values_from_yaml((CHART / "values-prod.yaml").read_text())
    renders = {
        "helm-default": {},
        "helm-prod": prod,
        "helm-options": {"serviceMonitor": {"enabled": True}, "api": {"autoscaling": {"enabled": False}}},
    }
    failed = False
    for name, values in renders.items():
        with quiet_stderr():
            report = helm_python.lint(str(CHART), values, strict=True, namespace="reservation", kube_version=KUBE_VERSION)
        findings = [m for m in report.get("messages") or [] if m.get("severity", 0) >= 2] + [
            {"error": e} for e in report.get("errors") or []
        ]
        for f in findings:
            print(f"helm lint --strict ({name}): {f.get('path', '')} {f['error']}", file=sys.stderr)
        failed |= bool(findings)
        with helm_python.Chart.load(str(CHART)) as chart, quiet_stderr():
            manifests = chart.render(values, name="reservation-api", namespace="reservation", is_install=True)
        docs = []
        for path, text in sorted(manifests.items()):
            if path.endswith(".yaml"):
                docs += [d for d in yaml.safe_load_all(text) if d]
        (out / f"{name}.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
        print(f"helm lint --strict + template ({name}): {len(docs)} objects")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
