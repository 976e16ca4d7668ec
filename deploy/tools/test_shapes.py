"""The shapes deploy/ deploys are shapes.toml's, and the per-shape Ingress and sweep CronJob come from one
template (components/http-edge) whose rendering is what the per-overlay copies rendered before it.

`python3 deploy/tools/test_shapes.py` rewrites rendered.sha256 after a deliberate change of what renders.
"""
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import KUSTOMIZATIONS, SHAPE_DIRS
from deploytree import APPS, DEPLOY

DIGESTS = Path(__file__).with_name("rendered.sha256")


def rendered_digest(directory: str) -> str:
    """sha256 of `kubectl kustomize deploy/<directory>`, byte for byte."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.fail("kubectl is not installed: it renders the kustomizations")
    proc = subprocess.run([kubectl, "kustomize", str(DEPLOY / directory)], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    return hashlib.sha256(proc.stdout).hexdigest()


def recorded() -> dict[str, str]:
    return dict(reversed(ln.split()) for ln in DIGESTS.read_text().splitlines() if ln and not ln.startswith("#"))


@pytest.mark.parametrize("shape,directory", SHAPE_DIRS, ids=[d for _, d in SHAPE_DIRS])
def test_edge_names_the_shapes_http_app(shape, directory):
    """The overlay's edge.yaml (what components/http-edge writes into the Ingress and CronJob) is shapes.toml's."""
    (http_app,) = [a.name for a in APPS if a.shape == shape and a.http]
    edge = yaml.safe_load((DEPLOY / directory / "edge.yaml").read_text())
    assert edge["metadata"]["annotations"]["config.kubernetes.io/local-config"] == "true", "edge.yaml must not be applied"
    assert edge["data"] == {"shape": shape, "app": http_app}


@pytest.mark.parametrize("directory", KUSTOMIZATIONS)
def test_renders_as_recorded(directory):
    """Byte for byte what rendered.sha256 records. Recorded before the Ingress and sweep CronJob copies became
    components/http-edge, so the template and its replacements render exactly what the copies did."""
    want = recorded().get(directory)
    assert want, f"rendered.sha256 has no digest for {directory}: run `python3 deploy/tools/test_shapes.py`"
    assert rendered_digest(directory) == want, \
        f"`kubectl kustomize deploy/{directory}` changed; if on purpose, run `python3 deploy/tools/test_shapes.py`"


if __name__ == "__main__":
    lines = ["# sha256 of `kubectl kustomize deploy/<dir>` (kustomize v5.5.0); tools/test_shapes.py checks it."]
    lines += [f"{rendered_digest(d)}  {d}" for d in KUSTOMIZATIONS]
    DIGESTS.write_text("\n".join(lines) + "\n")
    sys.exit(0)
