"""The checks can fail: break a copy of the tree and run test_manifests.py on it."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import APPS, DEPLOY, NANOHOST, ROOT

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A copy of deploy/ and of the Spin manifests deploy/apps.tsv names, and a runner of the suite on it."""
    pristine = tmp_path_factory.mktemp("pristine")
    shutil.copytree(DEPLOY, pristine / "deploy", ignore=shutil.ignore_patterns("__pycache__"))
    for a in APPS:
        (pristine / a["manifest"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / a["manifest"], pristine / a["manifest"])

    def run(root: Path, select: str = "") -> tuple[int, set[str]]:
        env = {**os.environ, "DEPLOY_ROOT": str(root), "NANOHOST": str(NANOHOST)}
        proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rf",
                               str(HERE / "test_manifests.py"), *(["-k", select] if select else [])],
                              capture_output=True, text=True, env=env, cwd=root, timeout=300)
        return proc.returncode, set(re.findall(r"^FAILED \S+::(\S+)", proc.stdout, re.MULTILINE))

    return pristine, run


@pytest.fixture
def copy(tree, tmp_path):
    pristine, run = tree
    shutil.copytree(pristine, tmp_path / "repo")
    return tmp_path / "repo", run


def test_the_copy_passes(tree):
    pristine, run = tree
    assert run(pristine) == (0, set())


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path} no longer contains {old!r}: update this test"
    path.write_text(text.replace(old, new, 1))


def test_a_renamed_spin_manifest_fails(copy):
    root, run = copy
    app = next(a for a in APPS if a["shape"] == "mqtt" and a["http"] == "no")
    (root / app["manifest"]).rename(root / (app["manifest"] + ".old"))
    code, failed = run(root, "spin or stage")
    assert code != 0
    assert {f"test_spin_manifest_fits_apps_tsv[{app['manifest']}]",
            f"test_stage_rewrites_sources_into_target_composed[{app['manifest']}]",
            f"test_spin_app_in_cluster[spinkube/mqtt:{app['manifest']}]"} <= failed, failed


def test_a_renamed_kubernetes_manifest_fails(copy):
    root, run = copy
    (root / "deploy/k8s/overlays/redis/fulfilment-redis.yaml").rename(root / "deploy/k8s/overlays/redis/x.yml")
    code, failed = run(root, "renders or images")
    assert code != 0 and {"test_renders[k8s/overlays/redis]", "test_images_of_shape[k8s/overlays/redis]"} <= failed


def test_a_spinapp_without_its_image_fails_the_crd_schema(copy):
    root, run = copy
    edit(root / "deploy/spinkube/mqtt/spinapps.yaml", "  image: ", "  # image: ")
    code, failed = run(root, "crds")
    assert code != 0 and failed == {"test_spinkube_objects_match_operator_crds[spinkube/mqtt]"}


def test_an_unknown_spinapp_field_fails_the_crd_schema(copy):
    root, run = copy
    edit(root / "deploy/spinkube/redis/spinapps.yaml", "  replicas:", "  replica:")
    code, failed = run(root, "crds")
    assert code != 0 and failed == {"test_spinkube_objects_match_operator_crds[spinkube/redis]"}


def test_a_deployment_without_its_selector_fails_the_kubernetes_schema(copy):
    root, run = copy
    edit(root / "deploy/k8s/overlays/composed/order-app.yaml", "  selector:", "  selector_:")
    code, failed = run(root, "kubernetes_schema")
    assert code != 0 and failed == {"test_core_objects_match_kubernetes_schema[k8s/overlays/composed]"}


def test_an_address_outside_the_allowed_hosts_fails(copy):
    root, run = copy
    app = next(a for a in APPS if a["shape"] == "mqtt" and a["http"] == "yes")
    edit(root / app["manifest"], 'allowed_outbound_hosts = ["{{ mqtt_address }}"]',
         'allowed_outbound_hosts = ["mqtt://mosquitto.elsewhere:1883"]')
    code, failed = run(root, "in_cluster")
    assert code != 0 and failed == {f"test_spin_app_in_cluster[{d}:{app['manifest']}]"
                                    for d in ("k8s/overlays/mqtt", "spinkube/mqtt")}
