"""The checks can fail: break a copy of the tree, run the rule files on it, see the right cases fail."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import KUSTOMIZATIONS, NANOHOST, SHAPE_DIRS, SHAPES
from deploytree import APPS, DEPLOY, ROOT

CHECKED = ("test_manifests.py", "test_hardening.py", "test_placements.py")  # the rule files run on each broken copy
PLACEMENTS_MANIFEST = "apps/placements/spin.toml"
# Every kustomization that deploys the order app: each shape's, and each placement of apps/placements/spin.toml
# (spinkube/placements/*), which shares the base (Redis, Mosquitto) and the sweep CronJob template.
DEPLOY_DIRS = [d for _, d in SHAPE_DIRS] + [d for d in KUSTOMIZATIONS if d.startswith("spinkube/placements/")]
MQTT_APP = next(a.manifest for a in APPS if a.shape == "mqtt" and a.http)
MQTT_WORKER = next(a.manifest for a in APPS if a.shape == "mqtt" and not a.http)
# id: (file, text to replace or None to rename the file away, replacement, `-k` selection, cases that must fail)
BREAKS = {
    "spin-manifest-renamed": (MQTT_WORKER, None, None, "spin or stage", {
        f"test_spin_manifest_fits_shapes_toml[{MQTT_WORKER}]",
        f"test_stage_rewrites_sources_into_target_composed[{MQTT_WORKER}]",
        f"test_spin_app_in_cluster[k8s/overlays/mqtt:{MQTT_WORKER}]",
        f"test_spin_app_in_cluster[spinkube/mqtt:{MQTT_WORKER}]",
        f"test_secret_variables_come_from_secrets[k8s/overlays/mqtt:{MQTT_WORKER}]",
        f"test_secret_variables_come_from_secrets[spinkube/mqtt:{MQTT_WORKER}]",
        "test_spin_pool_sized_for_the_app[k8s/overlays/mqtt:fulfilment-mqtt]"}),
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
    # One template (components/http-edge) for every shape's CronJob: a break there breaks each shape's.
    "sweep-not-routed": ("deploy/components/http-edge/sweep.yaml", "cluster.local/sweep", "cluster.local/sweeper",
                         "sweep", {f"test_sweep_cronjob_calls_the_sweeper[{s}]" for s in SHAPES} | {
                             f"test_sweep_and_ingress_reach_the_order_side[{d}]" for d in DEPLOY_DIRS if "/placements/" in d}),
    "redis-password-in-one-place": ("deploy/secrets/secrets.yaml", 'redis-trigger-address: "redis://:${redis_password}@',
                                    'redis-trigger-address: "redis://', "password", {
                                        f"test_one_redis_password_everywhere[{d}]" for d in
                                        ("k8s/overlays/redis", "spinkube/redis")}),
    "redis-without-aof": ("deploy/k8s/base/redis.yaml", '"--appendonly", "yes"', '"--appendonly", "no"', "durable", {
        f"test_redis_is_durable_and_bounded[{d}]" for d in DEPLOY_DIRS}),
    "redis-maxmemory-at-the-limit": ("deploy/k8s/base/redis.yaml", '"256mb"', '"512mb"', "durable", {
        f"test_redis_is_durable_and_bounded[{d}]" for d in DEPLOY_DIRS}),
    "redis-aof-on-an-emptydir": ("deploy/k8s/base/redis.yaml", "persistentVolumeClaim:\n            claimName: redis-data",
                                 "emptyDir: {}", "durable", {
                                     f"test_redis_is_durable_and_bounded[{d}]" for d in DEPLOY_DIRS}),
    "redis-without-password": ("deploy/k8s/base/redis.yaml", ',\n                 "--requirepass", "$(REDIS_PASSWORD)"',
                               "", "anonymous or password", {
                                   f"test_{t}[{d}]" for d in DEPLOY_DIRS
                                   for t in ("brokers_refuse_anonymous_clients", "one_redis_password_everywhere")}),
    "mosquitto-anonymous": ("deploy/k8s/base/mosquitto.yaml", "allow_anonymous false", "allow_anonymous true",
                            "anonymous", {f"test_brokers_refuse_anonymous_clients[{d}]" for d in DEPLOY_DIRS}),
    "mosquitto-no-size-limit": ("deploy/k8s/base/mosquitto.yaml", "message_size_limit 4096", "message_size_limit 0",
                                "anonymous", {f"test_brokers_refuse_anonymous_clients[{d}]" for d in DEPLOY_DIRS}),
    "secret-as-plain-value": ("deploy/k8s/overlays/redis/order-app-redis.yaml",
                              "SPIN_VARIABLE_SWEEP_TOKEN\n              valueFrom:\n                secretKeyRef:\n"
                              "                  name: app-secrets\n                  key: sweep-token",
                              'SPIN_VARIABLE_SWEEP_TOKEN\n              value: "sample-sweep-token"', "secret_variables", {
                                  "test_secret_variables_come_from_secrets[k8s/overlays/redis:apps/order-app-redis/spin.toml]"}),
    "message-key-from-another-secret": ("deploy/k8s/overlays/mqtt/fulfilment-mqtt.yaml", "key: message-key",
                                        "key: sweep-token", "message_key or same_variables", {
                                            "test_message_key_is_one_secret_for_the_shape[k8s/overlays/mqtt]",
                                            "test_both_deploys_hand_an_app_the_same_variables[mqtt]"}),
    "cronjob-without-token": ("deploy/components/http-edge/sweep.yaml", '"Authorization: Bearer $(SWEEP_TOKEN)"',
                              '"X-Sweep: none"', "sweep", {f"test_sweep_cronjob_sends_the_token[{d}]"
                                                           for d in DEPLOY_DIRS}),
    "edge-names-another-app": ("deploy/spinkube/mqtt/edge.yaml", "app: order-app-mqtt", "app: order-app-redis",
                               "sweep", {"test_sweep_cronjob_calls_the_sweeper[mqtt]"}),
    "pool-short-of-memories": ("deploy/k8s/overlays/composed/order-app.yaml", 'value: "1200"', 'value: "1000"', "pool", {
        "test_spin_pool_sized_for_the_app[k8s/overlays/composed:order-app]"}),
    "pool-keeps-memory-resident": ("deploy/k8s/overlays/mqtt/fulfilment-mqtt.yaml",
                                   'SPIN_WASMTIME_LINEAR_MEMORY_KEEP_RESIDENT\n              value: "0"',
                                   'SPIN_WASMTIME_LINEAR_MEMORY_KEEP_RESIDENT\n              value: "2097152"', "pool",
                                   {"test_spin_pool_sized_for_the_app[k8s/overlays/mqtt:fulfilment-mqtt]"}),
    # Placement from one manifest: an id the manifest lacks (the shim would refuse to start), and the order
    # side pointed at a Service that exists but is not the fulfilment side's (its own: no /fulfil there).
    "placement-keeps-unknown-component": ("deploy/spinkube/placements/apart/spinapps.yaml", "- fulfilment-http",
                                          "- fulfilment", "placements", {
                                              "test_spinapps_keep_existing_components_of_one_image[spinkube/placements/apart]",
                                              "test_kept_components_reach_what_they_call[spinkube/placements/apart]"}),
    "placement-fulfilment-misnamed": ("deploy/spinkube/placements/apart/spinapps.yaml",
                                      "http://placements-fulfilment.", "http://placements-order.", "placements", {
                                          "test_kept_components_reach_what_they_call[spinkube/placements/apart]"}),
    "wrong-service-port": ("deploy/k8s/base/redis.yaml", "port: 6379", "port: 6380", "addresses", {
        f"test_addresses_are_in_cluster_services[{d}]" for d in DEPLOY_DIRS}),  # every deploy keeps orders in Redis
}

# The cases run once per kustomization (KUSTOMIZATIONS, DEPLOYS) also run on the Kind overlays, which are the k3d
# ones plus kind/component: a break of k8s/ or spinkube/ fails their Kind counterparts too.
PER_KUSTOMIZATION = {"test_renders", "test_core_objects_match_kubernetes_schema", "test_namespace_and_runtime_class",
                     "test_spin_pods_run_on_the_shim", "test_services_and_ingress_have_targets",
                     "test_addresses_are_in_cluster_services", "test_one_redis_password_everywhere",
                     "test_redis_is_durable_and_bounded", "test_brokers_refuse_anonymous_clients",
                     "test_sweep_cronjob_sends_the_token"}


def also_on_kind(cases: set[str]) -> set[str]:
    kind = set()
    for case in cases:
        test, _, directory = case.rstrip("]").partition("[")
        counterpart = f"kind/{directory.replace('k8s/overlays/', 'k8s/')}"
        if test in PER_KUSTOMIZATION and counterpart in KUSTOMIZATIONS:  # the placements have none on Kind
            kind.add(f"{test}[{counterpart}]")
    return cases | kind


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A copy of deploy/, shapes.toml and the Spin manifests it names (the built .wasm stay where they are:
    deploytree.COMPOSED)."""
    root = tmp_path_factory.mktemp("pristine")
    shutil.copytree(DEPLOY, root / "deploy", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "shapes.toml", root / "shapes.toml")
    for manifest in [a.manifest for a in APPS] + [PLACEMENTS_MANIFEST]:
        (root / manifest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / manifest, root / manifest)
    return root


def failures(root: Path, select: str = "") -> tuple[int, set[str]]:
    env = {**os.environ, "DEPLOY_ROOT": str(root), "NANOHOST": str(NANOHOST)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rf",
                           *(str(Path(__file__).parent / f) for f in CHECKED), *(["-k", select] if select else [])],
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
    assert code != 0 and failed == also_on_kind(expected)
