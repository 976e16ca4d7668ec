"""What the kustomizations render and how it fits the Spin apps, one case per (file, check)."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from conftest import APPS, CONFIG, DEPLOY, KUSTOMIZATIONS, ROOT, SHAPE_DIRS, image_ref, nanohost_check, render

sys.path.insert(0, str(DEPLOY / "oci"))
import stage  # noqa: E402

K8S_VERSION = "1.35.0"  # the k3d node image runs k3s v1.35.2
CRDS = Path(__file__).resolve().parent / "crds"
SPINKUBE_API = "core.spinkube.dev/v1alpha1"
CLUSTER_SCOPED = {"Namespace", "RuntimeClass", "ClusterRole", "ClusterRoleBinding", "IngressClass", "StorageClass"}
PUBLIC_IMAGES = {"redis:7.4-alpine", "eclipse-mosquitto:2.0.21"}
DEFAULT_PORTS = {"mqtt": 1883, "redis": 6379, "http": 80, "https": 443}
URL = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>[^:/?#]+)(:(?P<port>\d+))?")
LOOPBACK = re.compile(r"//(127\.|localhost\b)")
SPIN_VARIABLE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
SPINKUBE_DIRS = [d for d in KUSTOMIZATIONS if d.startswith("spinkube/")]


def of_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def deployments(objects: list[dict]):
    """(Deployment, pod spec, pod labels) of every Deployment."""
    for o in of_kind(objects, "Deployment").values():
        template = o["spec"]["template"]
        yield o, template["spec"], template.get("metadata", {}).get("labels", {})


def services(objects: list[dict]) -> dict[str, set[int]]:
    """Service name -> ports, with the Service (port 80) the operator makes for each SpinApp."""
    ports = {n: {p["port"] for p in s["spec"].get("ports", [])} for n, s in of_kind(objects, "Service").items()}
    return ports | {name: {80} for name in of_kind(objects, "SpinApp")}


def runtime_config(objects: list[dict]) -> str:
    secret = of_kind(objects, "Secret").get("spin-runtime-config")
    assert secret, "no Secret spin-runtime-config"
    text = (secret.get("stringData") or {}).get("runtime-config.toml")
    assert text is not None, "Secret spin-runtime-config has no stringData key runtime-config.toml"
    return text


def k8s_variables(objects: list[dict], app: str) -> dict[str, str]:
    """The Spin variables Kubernetes gives `app`: SPIN_VARIABLE_* env or SpinApp spec.variables."""
    found = {}
    for o, spec, _ in deployments(objects):
        if o["metadata"]["name"] == app:
            for env in (e for c in spec["containers"] for e in c.get("env") or []):
                if env["name"].startswith("SPIN_VARIABLE_"):
                    found[env["name"][len("SPIN_VARIABLE_"):].lower()] = env.get("value", "")
    spinapp = of_kind(objects, "SpinApp").get(app)
    for var in spinapp["spec"].get("variables") or [] if spinapp else []:
        found[var["name"]] = var.get("value", "")
    return found


def address_problem(value: str, known: dict[str, set[int]]) -> str | None:
    """None when scheme://host:port is an in-cluster address of a rendered Service and one of its ports."""
    m = URL.match(value)
    if not m or LOOPBACK.search(value):
        return f"{value!r} is not an in-cluster address"
    parts = m["host"].removesuffix(".svc.cluster.local").split(".")
    if len(parts) > 2 or (len(parts) == 2 and parts[1] != CONFIG["NAMESPACE"]):
        return f"{value}: host is not <service>[.{CONFIG['NAMESPACE']}[.svc.cluster.local]]"
    port = int(m["port"] or DEFAULT_PORTS.get(m["scheme"], 0))
    if parts[0] not in known:
        return f"{value}: no Service {parts[0]}"
    return None if port in known[parts[0]] else f"{value}: Service {parts[0]} does not expose port {port}"


def crd_schema(kind: str) -> dict:
    """The operator's openAPIV3Schema, strict as `kubectl apply` is: unknown fields are errors."""
    crd = yaml.safe_load((CRDS / f"core.spinkube.dev_{kind.lower()}s.yaml").read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == SPINKUBE_API.split("/")[1])

    def strict(node):
        if isinstance(node, list):
            return [strict(n) for n in node]
        if not isinstance(node, dict):
            return node
        node = {k: strict(v) for k, v in node.items()}
        if "properties" in node and "additionalProperties" not in node \
                and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        return node

    return strict(version["schema"]["openAPIV3Schema"])


# ------------------------------------------------------------------------------------------------------------
# the kustomizations


@pytest.mark.parametrize("directory", KUSTOMIZATIONS)
def test_renders(directory):
    assert render(directory), f"deploy/{directory} renders no objects"


@pytest.mark.parametrize("path", sorted(str(p.relative_to(DEPLOY)) for base in ("k8s", "spinkube")
                                        for p in (DEPLOY / base).rglob("*.yaml") if p.name != "kustomization.yaml"))
def test_file_is_in_a_kustomization(path):
    used = {(d / r).resolve() for d in (DEPLOY / k for k in KUSTOMIZATIONS)
            for r in yaml.safe_load((d / "kustomization.yaml").read_text()).get("resources") or []}
    assert (DEPLOY / path).resolve() in used, f"deploy/{path} is in no kustomization"


@pytest.mark.parametrize("directory", KUSTOMIZATIONS)
def test_core_objects_match_kubernetes_schema(directory):
    problems = []
    for o in render(directory):
        if not o["apiVersion"].startswith("core.spinkube.dev/"):
            try:
                kubernetes_validate.validate(o, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as err:
                problems.append(f"{o['kind']} {o['metadata']['name']}: {err.message} at {list(err.path)}")
    assert not problems


@pytest.mark.parametrize("directory", SPINKUBE_DIRS)
def test_spinkube_objects_match_operator_crds(directory):
    problems = []
    for o in render(directory):
        if o["apiVersion"].startswith("core.spinkube.dev/"):
            where = f"{o['kind']} {o['metadata']['name']}"
            if o["apiVersion"] != SPINKUBE_API or o["kind"] not in ("SpinApp", "SpinAppExecutor"):
                problems.append(f"{where}: not a {SPINKUBE_API} SpinApp or SpinAppExecutor")
                continue
            validator = jsonschema.Draft7Validator(crd_schema(o["kind"]))
            problems += [f"{where}: {e.message} at {'.'.join(map(str, e.path))}" for e in validator.iter_errors(o)]
            if not DNS_LABEL.match(o["metadata"]["name"]):
                problems.append(f"{where}: metadata.name must be a DNS-1123 label (it names a Service)")
    assert not problems


@pytest.mark.parametrize("directory", SPINKUBE_DIRS)
def test_spinapps_pass_operator_admission(directory):
    """spin-operator v0.6.1's validating webhook (internal/webhook/spinapp_validating.go) and this deploy's rules."""
    objects = render(directory)
    executors, problems = of_kind(objects, "SpinAppExecutor"), []
    for name, e in executors.items():
        rc = e["spec"].get("deploymentConfig", {}).get("runtimeClassName")
        if e["spec"].get("createDeployment") and rc not in of_kind(objects, "RuntimeClass"):
            problems.append(f"SpinAppExecutor {name}: RuntimeClass {rc} is not in this kustomization")
    for name, app in of_kind(objects, "SpinApp").items():
        spec = app["spec"]
        if spec.get("executor") != "containerd-shim-spin" or "containerd-shim-spin" not in executors:
            problems.append(f"{name}: executor must be the SpinAppExecutor containerd-shim-spin of this namespace")
        elif not executors["containerd-shim-spin"]["spec"].get("createDeployment") \
                and (spec.get("podAnnotations") or spec.get("deploymentAnnotations")):
            problems.append(f"{name}: annotations need an executor that creates Deployments")
        if spec.get("enableAutoscaling") and spec.get("replicas"):
            problems.append(f"{name}: replicas cannot be set when autoscaling is enabled")
        if not spec.get("enableAutoscaling") and spec.get("replicas", 1) < 1:
            problems.append(f"{name}: replicas must be > 0")
        for var in spec.get("variables") or []:
            if not SPIN_VARIABLE.match(var["name"]) or ("value" in var and "valueFrom" in var):
                problems.append(f"{name}: variable {var['name']!r}: not a Spin variable name, or value and valueFrom")
        secret = spec.get("runtimeConfig", {}).get("loadFromSecret")
        if secret and secret not in of_kind(objects, "Secret"):
            problems.append(f"{name}: runtimeConfig.loadFromSecret {secret} is not in this kustomization")
    assert not problems


@pytest.mark.parametrize("directory", KUSTOMIZATIONS)
def test_wiring(directory):
    """Namespace, RuntimeClass, the shim's runtime config mount, Services behind selectors, Ingress, addresses."""
    objects, problems = render(directory), []
    known, ns = services(objects), CONFIG["NAMESPACE"]
    problems += [f"{o['kind']} {o['metadata']['name']} is in namespace {o['metadata'].get('namespace')!r}"
                 for o in objects if o["kind"] not in CLUSTER_SCOPED and o["metadata"].get("namespace") != ns]
    if ns not in of_kind(objects, "Namespace"):
        problems.append(f"no Namespace {ns}")
    classes = of_kind(objects, "RuntimeClass")
    problems += [f"RuntimeClass {n} has handler {c.get('handler')!r}, the shim's is 'spin'"
                 for n, c in classes.items() if c.get("handler") != "spin"]
    templates = list(deployments(objects))
    for o, spec, labels in templates:
        where = f"Deployment {o['metadata']['name']}"
        if any(labels.get(k) != v for k, v in o["spec"]["selector"].get("matchLabels", {}).items()):
            problems.append(f"{where}: selector does not match its pod labels")
        rc = spec.get("runtimeClassName")
        if not any(c["image"].startswith(CONFIG["REGISTRY_NAME"]) for c in spec["containers"]):
            problems += [f"{where}: an ordinary container with runtimeClassName {rc}"] if rc else []
            continue
        if rc != CONFIG["RUNTIME_CLASS"] or rc not in classes:
            problems.append(f"{where}: a Spin app needs runtimeClassName {CONFIG['RUNTIME_CLASS']} (defined here)")
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        for c in spec["containers"]:
            if c.get("command") != ["/"]:
                problems.append(f"{where}: container {c['name']} should have command [\"/\"]")
            mount = next((m for m in c.get("volumeMounts") or [] if m["mountPath"] == "/runtime-config.toml"), {})
            secret = volumes.get(mount.get("name"), {}).get("secret", {}).get("secretName")
            if mount.get("subPath") != "runtime-config.toml" or secret != "spin-runtime-config":
                problems.append(f"{where}: Secret spin-runtime-config is not mounted at /runtime-config.toml")
    for name, svc in of_kind(objects, "Service").items():
        selector = svc["spec"].get("selector") or {}
        targets = [spec for _, spec, labels in templates
                   if selector and all(labels.get(k) == v for k, v in selector.items())]
        if not targets:
            problems.append(f"Service {name} selects no pod template")
        for port in svc["spec"].get("ports", []):
            named = {p.get("name") for spec in targets for c in spec["containers"] for p in c.get("ports") or []}
            if isinstance(port.get("targetPort"), str) and port["targetPort"] not in named:
                problems.append(f"Service {name} targets port {port['targetPort']!r}, which its pods do not name")
    for name, ing in of_kind(objects, "Ingress").items():
        for path in (p for r in ing["spec"].get("rules", []) for p in r.get("http", {}).get("paths", [])):
            svc = path["backend"]["service"]
            if svc["port"].get("number") not in known.get(svc["name"], set()):
                problems.append(f"Ingress {name} -> {svc['name']}:{svc['port']}, which no Service exposes")
    if of_kind(objects, "Secret") or templates or of_kind(objects, "SpinApp"):
        stores = tomllib.loads(runtime_config(objects)).get("key_value_store", {})
        if stores.get("default", {}).get("type") != "redis":
            problems.append("key_value_store.default must be the shared Redis")
        addresses = [(f"key_value_store.{label}", s.get("url", "")) for label, s in stores.items()
                     if s.get("type") == "redis"]
        apps = {o["metadata"]["name"] for o, _, _ in templates} | set(of_kind(objects, "SpinApp"))
        addresses += [(app, v) for app in apps for v in k8s_variables(objects, app).values() if "://" in v]
        problems += [f"{who}: {p}" for who, value in addresses if (p := address_problem(value, known))]
    assert not problems


# ------------------------------------------------------------------------------------------------------------
# images, k3d, packaging


def test_lib_sh_builds_the_images_of_apps_tsv():
    names = " ".join(a["app"] for a in APPS)
    proc = subprocess.run(["bash", "-c", f'. "{DEPLOY}/lib.sh"; for a in {names}; do image_ref "$a"; done'],
                          capture_output=True, text=True, check=True)
    assert proc.stdout.split() == [image_ref(a["app"]) for a in APPS]


@pytest.mark.parametrize("shape,directory", SHAPE_DIRS, ids=[d for _, d in SHAPE_DIRS])
def test_images_of_shape(shape, directory):
    """Each app of the shape runs from the image deploy/oci builds for it, under its own name; nothing else."""
    want = {image_ref(a["app"]): a["app"] for a in APPS if a["shape"] == shape}
    seen, problems = set(), []
    for o in render(directory):
        images = [o["spec"]["image"]] if o["kind"] == "SpinApp" else \
            [c["image"] for c in o["spec"]["template"]["spec"]["containers"]] if o["kind"] == "Deployment" else []
        for image in set(images) - PUBLIC_IMAGES:
            where = f"{o['kind']} {o['metadata']['name']}"
            if want.get(image) != o["metadata"]["name"]:
                problems.append(f"{where}: image {image} is not the one deploy/oci builds for an app of this name")
            elif o["metadata"].get("labels", {}).get("nano-orders/shape") != shape:
                problems.append(f"{where}: label nano-orders/shape is not {shape}")
            seen.add(image)
    problems += [f"app image {image} is deployed by nothing" for image in sorted(set(want) - seen)]
    assert not problems


def test_public_images_are_pinned():
    assert all(":" in i and not i.endswith(":latest") for i in PUBLIC_IMAGES)


def test_k3d_config_matches_config_env():
    k3d = yaml.safe_load((DEPLOY / "k3d/config.yaml").read_text())
    assert (k3d["apiVersion"], k3d["kind"], k3d["metadata"]["name"], k3d["image"]) == \
           ("k3d.io/v1alpha5", "Simple", CONFIG["CLUSTER_NAME"], CONFIG["K3D_NODE_IMAGE"])
    registry = k3d["registries"]["create"]
    assert (registry["name"], str(registry["hostPort"])) == (CONFIG["REGISTRY_NAME"], CONFIG["REGISTRY_PORT"])
    assert any(p["port"] == f"{CONFIG['HTTP_PORT']}:80" and "loadbalancer" in p.get("nodeFilters", [])
               for p in k3d.get("ports", [])), f"no port mapping {CONFIG['HTTP_PORT']}:80 on the loadbalancer"
    assert CONFIG["K3D_NODE_IMAGE"].startswith("ghcr.io/spinframework/containerd-shim-spin/k3d:v0.24.")


def test_dockerfile_puts_spin_toml_and_wasm_where_the_shim_looks():
    lines = [ln.strip() for ln in (DEPLOY / "oci/Dockerfile").read_text().splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    assert lines[0] == "FROM scratch"
    copies = [ln.split()[1:] for ln in lines if ln.startswith("COPY")]
    assert ["spin.toml", "/spin.toml"] in copies and ["target/composed/", "/target/composed/"] in copies


@pytest.mark.parametrize("app", APPS, ids=[a["manifest"] for a in APPS])
def test_stage_rewrites_sources_into_target_composed(app, tmp_path):
    sources = stage.stage(ROOT / app["manifest"], tmp_path, allow_missing=True)
    assert sources and all(s.startswith("target/composed/") for s in sources), sources
    staged = tomllib.loads((tmp_path / "spin.toml").read_text())
    assert {c["source"] for c in staged["component"].values()} <= set(sources)


# ------------------------------------------------------------------------------------------------------------
# the Spin apps, read by nanohost


@pytest.mark.parametrize("app", APPS, ids=[a["manifest"] for a in APPS])
def test_spin_manifest_fits_apps_tsv(app):
    report = nanohost_check(ROOT / app["manifest"], {})
    triggers = {t["type"] for t in report["triggers"]}
    assert report["application"] == app["app"]
    sources = {(ROOT / app["manifest"]).parent.joinpath(c["source"] or "/").resolve()
               for c in report["components"].values()}
    assert ROOT / f"target/composed/{app['app']}.wasm" in sources, "the app's own build output is no component"
    assert all(s.parent == ROOT / "target/composed" for s in sources), f"sources outside target/composed: {sources}"
    assert ("http" in triggers) == (app["http"] == "yes"), "http trigger vs deploy/apps.tsv"
    if app["http"] == "yes":
        assert {"/order", "/order/...", "/..."} & {t.get("route") for t in report["triggers"]}, "no route for /order"
    elif app["shape"] in ("mqtt", "redis"):
        assert app["shape"] in triggers, f"no [[trigger.{app['shape']}]]"


CLUSTER_APPS = [(d, a) for a in APPS for s, d in SHAPE_DIRS if s == a["shape"]]


@pytest.mark.parametrize("directory,app", CLUSTER_APPS, ids=[f"{d}:{a['manifest']}" for d, a in CLUSTER_APPS])
def test_spin_app_in_cluster(directory, app, tmp_path):
    """With the variables Kubernetes sets: every address in-cluster, reachable and allowed; stores defined."""
    objects = render(directory)
    (tmp_path / "runtime-config.toml").write_text(runtime_config(objects))
    report = nanohost_check(ROOT / app["manifest"], k8s_variables(objects, app["app"]),
                            tmp_path / "runtime-config.toml")
    known, problems = services(objects), []
    for name, var in report["variables"].items():
        if not var["set"] and LOOPBACK.search(var["value"] or ""):
            problems.append(f"variable {name} defaults to {var['value']}, not the broker inside a pod")
    for t in report["triggers"]:
        if t.get("address") and (p := address_problem(t["address"], known)):
            problems.append(f"{t['type']} trigger: {p}")
    for cid, c in report["components"].items():
        problems += [f"{cid}: may not reach {u['url']} ({u['variable']}); allowed_outbound_hosts: "
                     f"{c['allowed_outbound_hosts']}" for u in c["urls"] if not u["allowed"]]
        problems += [f"{cid}: {u['variable']}: {p}" for u in c["urls"] if (p := address_problem(u["url"], known))]
        problems += [f"{cid}: key-value store {label!r} is not in the cluster's runtime config"
                     for label in c["key_value_stores"] if label not in report["runtime_config_stores"]]
    assert not problems
