"""The deploy checks' view of deploy/ (deploytree.py, where a missing input fails the case) and of nanohost.

The nanohost binary is $NANOHOST (default target/debug/nanohost; deploy/check.sh builds it).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.dont_write_bytecode = True  # keep deploy/ free of __pycache__ also when pytest is run by hand
import deploytree  # noqa: E402
from deploytree import APPS, DEPLOY, SHAPES  # noqa: E402,F401  (re-exported for the test modules)

NANOHOST = Path(os.environ.get("NANOHOST", Path(__file__).resolve().parents[2] / "target/debug/nanohost"))
# Every kustomization that renders on its own; a Component (components/) renders only inside one of them.
KUSTOMIZATIONS = sorted(str(p.parent.relative_to(DEPLOY)) for p in DEPLOY.rglob("kustomization.yaml")
                        if "kind: Component" not in p.read_text())
# The kustomizations that deploy one shape: k8s/overlays/<shape> (plain Deployments) and spinkube/<shape>.
SHAPE_DIRS = [(s, d) for s in SHAPES for d in (f"k8s/overlays/{s}", f"spinkube/{s}")]


def _or_fail(read):
    """`read`, with a DeployError failing the case instead of erroring it."""
    def reader(*args):
        try:
            return read(*args)
        except deploytree.DeployError as err:
            pytest.fail(str(err))
    return reader


render, variables, runtime_config, sweep_request = map(_or_fail, (
    deploytree.render, deploytree.variables, deploytree.runtime_config, deploytree.sweep_request))


def nanohost_check(manifest: Path, variables: dict[str, str], runtime_config: Path | None = None,
                   routes: tuple[str, ...] = ()) -> dict:
    """nanohost's own reading of a Spin manifest (`nanohost check`), with the component its router sends each
    of `routes` to; fails the test on its errors."""
    if not NANOHOST.is_file():
        pytest.fail(f"{NANOHOST} does not exist: build it with `cargo build -p nanohost` (deploy/check.sh does)")
    cmd = [str(NANOHOST), "check", "--manifest", str(manifest)]
    cmd += [f"--variable={k}={v}" for k, v in sorted(variables.items())]
    cmd += ["--runtime-config", str(runtime_config)] if runtime_config else []
    cmd += [f"--route={r}" for r in routes]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPIN_VARIABLE_")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"nanohost check {manifest} exited {proc.returncode}: {proc.stderr.strip()}")
    assert not report["errors"] and proc.returncode == 0, f"nanohost check {manifest}: {report['errors']}"
    return report
