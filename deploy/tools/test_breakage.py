"""The checks can fail: break a copy of the tree, run test_manifests.py on it, see the right cases fail."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import NANOHOST, SHAPE_DIRS
from deploytree import APPS, DEPLOY, ROOT

MQTT_APP = next(a.manifest for a in APPS if a.shape == "mqtt" and a.http)
MQTT_WORKER = next(a.manifest for a in APPS if a.shape == "mqtt" and not a.http)
# id: (file, text to replace or None to rename the file away, replacement, `-k` selection, cases that must fail)
BREAKS = {
    "spin-manifest-renamed": (MQTT_WORKER, None, None, "spin or stage", {
        f"test_spin_manifest_fits_apps_tsv[{MQTT_WORKER}]",
        f"test_stage_rewrites_sources_into_target_composed[{MQTT_WORKER}]",
        f"test_spin_app_in_cluster[k8s/overlays/mqtt:{MQTT_WORKER}]",
        f"test_spin_app_in_cluster[spinkube/mqtt:{MQTT_WORKER}]"}),
    "k8s-manifest-renamed": ("deploy/k8s/overlays/redis/fulfilment-redis.yaml", None, None, "renders or images", {
        "test_renders[k8s/overlays/redis]", "test_images_of_shape[k8s/overlays/redis]"}),
    "spinapp-without-image": ("deploy/spinkube/mqtt/spinapps.yaml", "  image: ", "  # image: ", "crds", {
        "test_spinkube_objects_match_operator_crds[spinkube/mqtt]"}),
    "spinapp-unknown-field": ("deploy/spinkube/redis/spinapps.yaml", "  replicas:", "  replica:", "crds", {
        "test_spinkube_objects_match_operator_crds[spinkube/redis]"}),
    "deployment-without-selector": ("deploy/k8s/overlays/composed/order-app.yaml", "  selector:", "  selector_:",
                                    "kubernetes_schema", {"test_core_objects_match_kubernetes_schema[k8s/overlays/composed]"}),
    "host-not-allowed": (MQTT_APP, 'allowed_outbound_hosts = ["{{ mqtt_address }}"]',
                         'allowed_outbound_hosts = ["mqtt://mosquitto.elsewhere:1883"]', "in_cluster", {
                             f"test_spin_app_in_cluster[k8s/overlays/mqtt:{MQTT_APP}]",
                             f"test_spin_app_in_cluster[spinkube/mqtt:{MQTT_APP}]"}),
    "variable-not-set": ("deploy/spinkube/redis/spinapps.yaml", "- name: redis_address", "- name: redis_addr",
                         "in_cluster or admission", {
                             f"test_spin_app_in_cluster[spinkube/redis:{a.manifest}]"
                             for a in APPS if a.shape == "redis"}),
    "http-port-moved": ("deploy/k8s/overlays/composed/order-app.yaml", "containerPort: 80", "containerPort: 8080",
                        "shim", {"test_spin_pods_run_on_the_shim[k8s/overlays/composed]"}),
    "sweep-not-routed": ("deploy/k8s/overlays/redis/sweep.yaml", "cluster.local/sweep", "cluster.local/sweeper",
                         "sweep", {"test_sweep_cronjob_calls_the_sweeper[redis]"}),
    "redis-password-in-one-place": ("deploy/k8s/base/broker-credentials.yaml", 'redis-password: ""',
                                    'redis-password: "s3cret"', "password", {
                                        f"test_one_redis_password_everywhere[{d}]" for d in
                                        ("k8s/overlays/redis", "spinkube/redis")}),
    "wrong-service-port": ("deploy/k8s/base/redis.yaml", "port: 6379", "port: 6380", "addresses", {
        f"test_addresses_are_in_cluster_services[{d}]" for _, d in SHAPE_DIRS}),  # every shape keeps orders in Redis
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A copy of deploy/ and of the Spin manifests deploy/apps.tsv names."""
    root = tmp_path_factory.mktemp("pristine")
    shutil.copytree(DEPLOY, root / "deploy", ignore=shutil.ignore_patterns("__pycache__"))
    for a in APPS:
        (root / a.manifest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / a.manifest, root / a.manifest)
    return root


def failures(root: Path, select: str = "") -> tuple[int, set[str]]:
    env = {**os.environ, "DEPLOY_ROOT": str(root), "NANOHOST": str(NANOHOST)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rf",
                           str(Path(__file__).parent / "test_manifests.py"), *(["-k", select] if select else [])],
                          capture_output=True, text=True, env=env, cwd=root, timeout=300)
    return proc.returncode, set(re.findall(r"^FAILED \S+::(\S+)", proc.stdout, re.MULTILINE))


def test_the_copy_passes(pristine):
    assert failures(pristine) == (0, set())


@pytest.mark.parametrize("name", BREAKS)
def test_a_break_fails_its_cases(name, pristine, tmp_path):
    path, old, new, select, expected = BREAKS[name]
    root = tmp_path / "repo"
    shutil.copytree(pristine, root)
    if old is None:
        (root / path).rename(root / (path + ".old"))
    else:
        text = (root / path).read_text()
        assert old in text, f"{path} no longer contains {old!r}: update this case"
        (root / path).write_text(text.replace(old, new))
    code, failed = failures(root, select)
    assert code != 0 and failed == expected
