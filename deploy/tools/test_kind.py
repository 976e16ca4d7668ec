"""The Kind deploy (deploy/kind) beside k3d's: the same shapes and objects, with the shim installed by
runtime-class-manager instead of a node image. No Kind, Docker or API server here: these read the files."""
import pytest
import yaml

from conftest import SHAPE_DIRS, render
from deploytree import CONFIG, DEPLOY, SHAPES, of_kind, pods

KIND_DIRS = [(d, f"kind/{d.replace('k8s/overlays/', 'k8s/')}") for _, d in SHAPE_DIRS]
# What kind/component changes, and nothing else.
DROPPED = {("RuntimeClass", CONFIG["RUNTIME_CLASS"]), ("Ingress", "order-app")}


def test_every_shape_has_both_kind_overlays():
    have = sorted(str(p.parent.relative_to(DEPLOY / "kind")) for p in (DEPLOY / "kind").glob("*/*/kustomization.yaml"))
    assert have == sorted(f"{flavour}/{s}" for flavour in ("k8s", "spinkube") for s in SHAPES)


@pytest.mark.parametrize("source,kind_dir", KIND_DIRS, ids=[k for _, k in KIND_DIRS])
def test_kind_overlay_is_the_k3d_one_less_what_kind_provides(source, kind_dir):
    """The same objects as on k3d, but the RuntimeClass and Ingress, and the Spin apps' images not pulled."""
    def key(o):
        return (o["kind"], o["metadata"]["name"])
    k3d, kind = {key(o): o for o in render(source)}, {key(o): o for o in render(kind_dir)}
    assert set(k3d) - set(kind) == DROPPED and set(kind) <= set(k3d)
    for k, o in kind.items():
        if o["kind"] == "Deployment" and "nano-orders/shape" in o["metadata"].get("labels", {}):
            (container,) = o["spec"]["template"]["spec"]["containers"]
            assert container["imagePullPolicy"] == "IfNotPresent", f"{k}: `kind load` images are never pulled"
            container["imagePullPolicy"] = k3d[k]["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"]
        assert o == k3d[k], f"{k} differs on Kind"


@pytest.mark.parametrize("source,kind_dir", KIND_DIRS, ids=[k for _, k in KIND_DIRS])
def test_kind_pods_use_the_runtime_class_the_shim_creates(source, kind_dir):
    shim = yaml.safe_load((DEPLOY / "kind/shim.yaml").read_text())
    objects = render(kind_dir)
    names = {spec.get("runtimeClassName") for _, spec, labels in pods(objects) if "nano-orders/shape" in labels}
    names |= {e["spec"]["deploymentConfig"]["runtimeClassName"] for e in of_kind(objects, "SpinAppExecutor").values()}
    assert names == {shim["spec"]["runtimeClass"]["name"]}


def test_kind_config_matches_config_env_and_the_shim():
    kind = yaml.safe_load((DEPLOY / "kind/config.yaml").read_text())
    shim = yaml.safe_load((DEPLOY / "kind/shim.yaml").read_text())
    assert (kind["apiVersion"], kind["kind"], kind["name"]) == ("kind.x-k8s.io/v1alpha4", "Cluster", CONFIG["CLUSTER_NAME"])
    assert {n["image"] for n in kind["nodes"]} == {CONFIG["KIND_NODE_IMAGE"]}
    # Every node runs Spin pods, so every node gets the shim: the Shim's nodeSelector matches each node.
    selector = shim["spec"]["nodeSelector"]
    assert all(selector.items() <= n.get("labels", {}).items() for n in kind["nodes"]), "a node without the shim"
    assert (shim["apiVersion"], shim["kind"]) == ("runtime.spinkube.dev/v1alpha1", "Shim")
    assert shim["spec"]["runtimeClass"]["name"] == CONFIG["RUNTIME_CLASS"]
    location = shim["spec"]["fetchStrategy"]["anonHttp"]["location"]
    assert location == ("https://github.com/spinframework/containerd-shim-spin/releases/download/"
                        f"{CONFIG['SHIM_VERSION']}/containerd-shim-spin-v2-linux-x86_64.tar.gz")


def test_k3d_and_kind_run_one_shim_release():
    assert CONFIG["K3D_NODE_IMAGE"] == f"ghcr.io/spinframework/containerd-shim-spin/k3d:{CONFIG['SHIM_VERSION']}"
    assert CONFIG["SHIM_VERSION"].startswith("v0.24."), "v0.25 (Spin 4) does not load fulfilment-mqtt"
