"""Shared facts of the deploy checks: config.env, apps.tsv, renders by `kubectl kustomize`, nanohost.

The tree under test is $DEPLOY_ROOT (the repository root by default), so the tests that break a copy
of the tree can run this suite on the copy. The nanohost binary is $NANOHOST (default
target/debug/nanohost; deploy/check.sh builds it).
"""
import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.dont_write_bytecode = True  # keep deploy/ free of __pycache__ also when pytest is run by hand

ROOT = Path(os.environ.get("DEPLOY_ROOT", Path(__file__).resolve().parents[2])).resolve()
DEPLOY = ROOT / "deploy"
NANOHOST = Path(os.environ.get("NANOHOST", Path(__file__).resolve().parents[2] / "target/debug/nanohost"))


def _lines(name: str) -> list[str]:
    text = (DEPLOY / name).read_text()
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


CONFIG = dict(ln.partition("=")[::2] for ln in _lines("config.env"))
APPS = [dict(zip(("shape", "app", "manifest", "http"), ln.split())) for ln in _lines("apps.tsv")]
SHAPES = sorted({a["shape"] for a in APPS})
KUSTOMIZATIONS = sorted(str(p.parent.relative_to(DEPLOY)) for p in DEPLOY.rglob("kustomization.yaml"))
# The kustomizations that deploy one shape: k8s/overlays/<shape> (plain Deployments) and spinkube/<shape>.
SHAPE_DIRS = [(s, d) for s in SHAPES for d in (f"k8s/overlays/{s}", f"spinkube/{s}")]


def image_ref(app: str) -> str:
    return f"{CONFIG['REGISTRY_NAME']}:{CONFIG['REGISTRY_PORT']}/{app}:{CONFIG['IMAGE_TAG']}"


@functools.cache
def render(directory: str) -> list[dict]:
    """The objects `kubectl apply -k deploy/<directory>` would send; a missing kustomization fails."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.fail("kubectl is not installed: it renders the kustomizations (kubectl 1.27+)")
    if not (DEPLOY / directory / "kustomization.yaml").is_file():
        pytest.fail(f"deploy/{directory}/kustomization.yaml does not exist")
    proc = subprocess.run([kubectl, "kustomize", str(DEPLOY / directory)], capture_output=True, text=True)
    if proc.returncode:
        pytest.fail(f"kubectl kustomize deploy/{directory}: {proc.stderr.strip()}")
    return [o for o in yaml.safe_load_all(proc.stdout) if o]


def nanohost_check(manifest: Path, variables: dict[str, str], runtime_config: Path | None = None) -> dict:
    """nanohost's own reading of a Spin manifest (`nanohost check`); fails the test on its errors."""
    if not NANOHOST.is_file():
        pytest.fail(f"{NANOHOST} does not exist: build it with `cargo build -p nanohost` (deploy/check.sh does)")
    cmd = [str(NANOHOST), "check", "--manifest", str(manifest)]
    cmd += [f"--variable={k}={v}" for k, v in sorted(variables.items())]
    cmd += ["--runtime-config", str(runtime_config)] if runtime_config else []
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPIN_VARIABLE_")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"nanohost check {manifest} exited {proc.returncode}: {proc.stderr.strip()}")
    assert not report["errors"] and proc.returncode == 0, f"nanohost check {manifest}: {report['errors']}"
    return report
