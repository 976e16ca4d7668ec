"""What the kustomizations render and how it fits the Spin apps, one case per (file, check)."""
import functools
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import unquote, urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from conftest import KUSTOMIZATIONS, SHAPE_DIRS, nanohost_check, render, runtime_config, sweep_request, variables
from deploytree import (APPS, CONFIG, DEPLOY, ROOT, SHAPES, SHIM_HTTP_PORT, SHIM_RUNTIME_CONFIG_PATH, container_argv,
                        container_env, cronjob_commands, image_ref, of_kind, pods, probe_paths, runtime_classes)

sys.path.insert(0, str(DEPLOY / "oci"))
import stage  # noqa: E402

K8S_VERSION = "1.35.0"  # the k3d node image runs k3s v1.35.2
SPINKUBE_API = "core.spinkube.dev/v1alpha1"
CLUSTER_SCOPED = {"Namespace", "RuntimeClass", "ClusterRole", "ClusterRoleBinding", "IngressClass", "StorageClass"}
DEFAULT_PORTS = {"mqtt": 1883, "redis": 6379, "http": 80, "https": 443}
LOOPBACK = re.compile(r"//(127\.|localhost\b)")
SPIN_VARIABLE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
SPINKUBE_DIRS = [d for d in KUSTOMIZATIONS if d.startswith("spinkube/")]
CLUSTER_APPS = [(d, a) for a in APPS for s, d in SHAPE_DIRS if s == a.shape]


def required_stand_ins(manifest: str) -> dict[str, str]:
    """A value for each variable the manifest declares `required = true`: for the cases about the manifest's
    shape, not about what Kubernetes sets (test_spin_app_in_cluster checks that, with no stand-in)."""
    declared = tomllib.loads((ROOT / manifest).read_text()).get("variables", {})
    return {name: "stand-in" for name, decl in declared.items() if decl.get("required")}


def is_spin_pod(spec: dict) -> bool:
    return any(c["image"].startswith(CONFIG["REGISTRY_NAME"]) for c in spec["containers"])


def services(objects: list[dict]) -> dict[str, set[int]]:
    """Service name -> ports, with the Service (port 80) the operator makes for each SpinApp."""
    ports = {n: {p["port"] for p in s["spec"].get("ports", [])} for n, s in of_kind(objects, "Service").items()}
    return ports | {name: {80} for name in of_kind(objects, "SpinApp")}


def address_problem(value: str, known: dict[str, set[int]]) -> str | None:
    """None when scheme://host:port names a rendered Service in this namespace and one of its ports."""
    url = urlsplit(value)
    if not url.hostname or LOOPBACK.search(value):
        return f"{value!r} is not an in-cluster address"
    name, _, ns = url.hostname.removesuffix(".svc.cluster.local").partition(".")
    port = url.port or DEFAULT_PORTS.get(url.scheme)
    if ns not in ("", CONFIG["NAMESPACE"]) or port not in known.get(name, set()):
        return f"{value}: no Service {name} with port {port} in namespace {CONFIG['NAMESPACE']}"
    return None


@functools.cache
def crd_validator(kind: str) -> jsonschema.Draft7Validator:
    """The operator's openAPIV3Schema, strict as `kubectl apply` is: an unknown field is an error."""
    crd = yaml.safe_load((Path(__file__).parent / f"crds/core.spinkube.dev_{kind.lower()}s.yaml").read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == SPINKUBE_API.split("/")[1])

    def strict(node):
        if isinstance(node, list):
            return [strict(n) for n in node]
        if not isinstance(node, dict):
            return node
        node = {k: strict(v) for k, v in node.items()}
        if "properties" in node and not {"additionalProperties", "x-kubernetes-preserve-unknown-fields"} & set(node):
            node["additionalProperties"] = False
        return node

    return jsonschema.Draft7Validator(strict(version["schema"]["openAPIV3Schema"]))


@pytest.mark.parametrize("directory", KUSTOMIZATIONS)
def test_renders(directory):
    assert render(directory), f"deploy/{directory} renders no objects"


@pytest.mark.parametrize("path", sorted(str(p.relative_to(DEPLOY)) for base in ("k8s", "spinkube", "components")
                                        for p in (DEPLOY / base).rglob("*.yaml") if p.name != "kustomization.yaml"))
def test_file_is_in_a_kustomization(path):
    used = {(k.parent / r).resolve() for k in DEPLOY.rglob("kustomization.yaml")
            for r in yaml.safe_load(k.read_text()).get("resources", [])}
    assert (DEPLOY / path).resolve() in used, f"deploy/{path} is in no kustomization"


@pytest.mark.parametrize("directory", KUSTOMIZATIONS)
def test_core_objects_match_kubernetes_schema(directory):
    problems = []
    for o in (o for o in render(directory) if not o["apiVersion"].startswith("core.spinkube.dev/")):
        try:
            kubernetes_validate.validate(o, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            problems.append(f"{o['kind']} {o['metadata']['name']}: {err.message} at {list(err.path)}")
    assert not problems


@pytest.mark.parametrize("directory", SPINKUBE_DIRS)
def test_spinkube_objects_match_operator_crds(directory):
    problems = []
    for o in (o for o in render(directory) if o["apiVersion"].startswith("core.spinkube.dev/")):
        where = f"{o['kind']} {o['metadata']['name']}"
        if o["apiVersion"] != SPINKUBE_API or o["kind"] not in ("SpinApp", "SpinAppExecutor"):
            problems.append(f"{where}: not a {SPINKUBE_API} SpinApp or SpinAppExecutor")
            continue
        problems += [f"{where}: {e.message} at {e.json_path}" for e in crd_validator(o["kind"]).iter_errors(o)]
        if not DNS_LABEL.match(o["metadata"]["name"]):
            problems.append(f"{where}: metadata.name must be a DNS-1123 label (it names a Service)")
    assert not problems


@pytest.mark.parametrize("directory", SPINKUBE_DIRS)
def test_spinapps_pass_operator_admission(directory):
    """spin-operator v0.6.1's validating webhook (internal/webhook/spinapp_validating.go), and this deploy's rules."""
    objects, problems = render(directory), []
    executors = of_kind(objects, "SpinAppExecutor")
    for name, e in executors.items():
        rc = e["spec"].get("deploymentConfig", {}).get("runtimeClassName")
        if e["spec"].get("createDeployment") and rc not in of_kind(objects, "RuntimeClass"):
            problems.append(f"SpinAppExecutor {name}: RuntimeClass {rc} is not in this kustomization")
    for name, spec in ((n, a["spec"]) for n, a in of_kind(objects, "SpinApp").items()):
        executor = executors.get(spec.get("executor", ""), {}).get("spec")
        if spec.get("executor") != "containerd-shim-spin" or executor is None:
            problems.append(f"{name}: executor must be the SpinAppExecutor containerd-shim-spin of this namespace")
        elif not executor.get("createDeployment") and (spec.get("podAnnotations") or spec.get("deploymentAnnotations")):
            problems.append(f"{name}: annotations need an executor that creates Deployments")
        auto = spec.get("enableAutoscaling", False)
        if (auto and spec.get("replicas")) or (not auto and spec.get("replicas", 1) < 1):
            problems.append(f"{name}: replicas must be > 0, and unset when autoscaling is enabled")
        problems += [f"{name}: variable {v['name']!r}: not a Spin variable name, or both value and valueFrom"
                     for v in spec.get("variables", [])
                     if not SPIN_VARIABLE.match(v["name"]) or {"value", "valueFrom"} <= set(v)]
        if spec.get("runtimeConfig", {}).get("loadFromSecret") != "spin-runtime-config":
            problems.append(f"{name}: runtimeConfig.loadFromSecret is not the Secret spin-runtime-config")
    assert not problems


@pytest.mark.parametrize("directory", KUSTOMIZATIONS)
def test_namespace_and_runtime_class(directory):
    objects, ns = render(directory), CONFIG["NAMESPACE"]
    assert [f"{o['kind']} {o['metadata']['name']}" for o in objects
            if o["kind"] not in CLUSTER_SCOPED and o["metadata"].get("namespace") != ns] == [], f"not in namespace {ns}"
    assert ns in of_kind(objects, "Namespace")
    assert all(c.get("handler") == "spin" for c in of_kind(objects, "RuntimeClass").values()), "shim handler: spin"


@pytest.mark.parametrize("directory", KUSTOMIZATIONS)
def test_spin_pods_run_on_the_shim(directory):
    """Spin apps on the RuntimeClass with command ["/"], the runtime config where the shim reads it, and HTTP
    where the shim listens: one port, 80, and one probe path."""
    objects, problems = render(directory), []
    http = {a.name for a in APPS if a.http}
    for o, spec, labels in pods(objects):
        name, rc = o["metadata"]["name"], spec.get("runtimeClassName")
        where = f"Deployment {name}"
        if any(labels.get(k) != v for k, v in o["spec"]["selector"].get("matchLabels", {}).items()):
            problems.append(f"{where}: selector does not match its pod labels")
        if not is_spin_pod(spec):
            problems += [f"{where}: an ordinary container with runtimeClassName {rc}"] if rc else []
            continue
        if rc != CONFIG["RUNTIME_CLASS"] or rc not in runtime_classes(directory, objects):
            problems.append(f"{where}: a Spin app needs runtimeClassName {CONFIG['RUNTIME_CLASS']} (defined here)")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec["containers"]:
            mount = next((m for m in c.get("volumeMounts", []) if m["mountPath"] == SHIM_RUNTIME_CONFIG_PATH), {})
            secret = volumes.get(mount.get("name"), {}).get("secret", {}).get("secretName")
            if c.get("command") != ["/"] or mount.get("subPath") != "runtime-config.toml" \
                    or secret != "spin-runtime-config":
                problems.append(f"{where}: needs command [\"/\"] and spin-runtime-config at {SHIM_RUNTIME_CONFIG_PATH}")
            ports = [p["containerPort"] for p in c.get("ports", [])]
            if ports != ([SHIM_HTTP_PORT] if name in http else []):
                problems.append(f"{where}: containerPorts {ports}; the shim serves HTTP apps on {SHIM_HTTP_PORT} only")
        if "SPIN_HTTP_LISTEN_ADDR" in container_env(objects, name):
            problems.append(f"{where}: SPIN_HTTP_LISTEN_ADDR moves the shim off port {SHIM_HTTP_PORT}")
    for name in http & ({o["metadata"]["name"] for o, _, _ in pods(objects)} | set(of_kind(objects, "SpinApp"))):
        if len(paths := probe_paths(objects, name)) != 1 or None in paths:
            problems.append(f"{name}: probe paths {paths}; every probe needs the same httpGet path")
    assert not problems


@pytest.mark.parametrize("shape", SHAPES)
def test_both_deploys_hand_an_app_the_same_variables(shape):
    k8s, spinkube = render(f"k8s/overlays/{shape}"), render(f"spinkube/{shape}")
    assert {a.name: variables(k8s, a.name) for a in APPS if a.shape == shape} == \
           {a.name: variables(spinkube, a.name) for a in APPS if a.shape == shape}


@pytest.mark.parametrize("shape", SHAPES)
def test_sweep_cronjob_calls_the_sweeper(shape):
    """The same one CronJob in both deploys curls a route of the shape's HTTP app, through its Service."""
    (app,) = [a for a in APPS if a.shape == shape and a.http]
    renders = {d: render(f"{d}/{shape}") for d in ("k8s/overlays", "spinkube")}
    for d, objects in renders.items():
        request = sweep_request(objects)
        assert request, f"{d}/{shape} has no sweep CronJob"
        url = urlsplit(request[1])
        assert (url.hostname, url.port or 80) == (f"{app.name}.{CONFIG['NAMESPACE']}.svc.cluster.local", SHIM_HTTP_PORT)
        report = nanohost_check(ROOT / app.manifest, required_stand_ins(app.manifest), routes=(url.path,))
        assert report["routes"][url.path] == "sweeper", d
    assert cronjob_commands(renders["k8s/overlays"]) == cronjob_commands(renders["spinkube"])


@pytest.mark.parametrize("directory", KUSTOMIZATIONS)
def test_services_and_ingress_have_targets(directory):
    objects, problems = render(directory), []
    for name, svc in of_kind(objects, "Service").items():
        selector = svc["spec"].get("selector", {})
        targets = [spec for _, spec, labels in pods(objects) if selector.items() <= labels.items()]
        named = {p.get("name") for spec in targets for c in spec["containers"] for p in c.get("ports", [])}
        if not selector or not targets:
            problems.append(f"Service {name} selects no pod template")
        problems += [f"Service {name} targets port {p['targetPort']!r}, which its pods do not name"
                     for p in svc["spec"]["ports"]
                     if isinstance(p.get("targetPort"), str) and p["targetPort"] not in named]
    for name, ing in of_kind(objects, "Ingress").items():
        for svc in (p["backend"]["service"] for r in ing["spec"]["rules"] for p in r["http"]["paths"]):
            if svc["port"].get("number") not in services(objects).get(svc["name"], set()):
                problems.append(f"Ingress {name} -> {svc['name']}:{svc['port']}, which no Service exposes")
    assert not problems


def spin_apps(objects: list[dict]) -> list[str]:
    """The Spin apps of a render: Deployments of our images, or SpinApps."""
    apps = {o["metadata"]["name"] for o, spec, _ in pods(objects) if is_spin_pod(spec)}
    return sorted(apps | set(of_kind(objects, "SpinApp")))


def addresses(objects: list[dict]) -> list[tuple[str, str]]:
    """(who, URL) of the runtime config's Redis stores and of every URL Kubernetes hands a Spin app."""
    stores = tomllib.loads(runtime_config(objects)).get("key_value_store", {})
    found = [(f"key_value_store.{k}", s.get("url", "")) for k, s in stores.items() if s["type"] == "redis"]
    return found + [(app, v) for app in spin_apps(objects) for v in variables(objects, app).values() if "://" in v]


DEPLOYS = [d for d in KUSTOMIZATIONS if "/base" not in d]


@pytest.mark.parametrize("directory", DEPLOYS)
def test_addresses_are_in_cluster_services(directory):
    """The runtime config's stores and every URL Kubernetes hands an app name a Service and port here."""
    objects = render(directory)
    stores = tomllib.loads(runtime_config(objects)).get("key_value_store", {})
    assert stores.get("default", {}).get("type") == "redis", "key_value_store.default must be the shared Redis"
    assert [f"{who}: {p}" for who, v in addresses(objects) if (p := address_problem(v, services(objects)))] == []


@pytest.mark.parametrize("directory", DEPLOYS)
def test_one_redis_password_everywhere(directory):
    """Every client of the one Redis has the same password, or none: a password set in one place only loses
    orders silently, since Spin's Redis trigger given none starts subscribed to nothing (host/README.md)."""
    objects = render(directory)
    # An app with a redis_password variable opens its (credential-free) redis_address with that password.
    own = {a: vs["redis_password"] for a in spin_apps(objects) if "redis_password" in (vs := variables(objects, a))}
    given = set(own.items()) | {(who, unquote(urlsplit(v).password or "")) for who, v in addresses(objects)
                                if v.startswith("redis://") and who not in own}
    # ... and the server's own: Redis' --requirepass (none: the empty password).
    argv = container_argv(objects, "Deployment", "redis")
    given.add(("redis --requirepass", argv[argv.index("--requirepass") + 1] if "--requirepass" in argv else ""))
    assert len({password for _, password in given}) <= 1, f"different Redis passwords: {sorted(given)}"


def test_lib_sh_builds_the_images_of_shapes_toml():
    """lib.sh, which up.sh and oci/build.sh source, reads the same shapes and apps and names the same images."""
    script = f'. "{DEPLOY}/lib.sh"; echo "$SHAPES"; for s in $SHAPES; do apps_for_shape "$s" | ' \
             'while read -r app manifest http; do echo "$app $manifest $http $(image_ref "$app")"; done; done'
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    shapes, *apps = proc.stdout.splitlines()
    assert sorted(shapes.split()) == SHAPES
    assert sorted(apps) == sorted(f"{a.name} {a.manifest} {'yes' if a.http else 'no'} {image_ref(a.name)}"
                                  for a in APPS)


@pytest.mark.parametrize("shape,directory", SHAPE_DIRS, ids=[d for _, d in SHAPE_DIRS])
def test_images_of_shape(shape, directory):
    """Each app of the shape runs the image deploy/oci builds for it, under its name; other images are pinned."""
    want, seen, problems = {image_ref(a.name): a.name for a in APPS if a.shape == shape}, set(), []
    for o in render(directory):
        where = f"{o['kind']} {o['metadata']['name']}"
        images = [o["spec"]["image"]] if o["kind"] == "SpinApp" else \
            [c["image"] for c in o["spec"]["template"]["spec"]["containers"]] if o["kind"] == "Deployment" else []
        for image in images:
            seen.add(image)
            if image.startswith(CONFIG["REGISTRY_NAME"]) and want.get(image) != o["metadata"]["name"]:
                problems.append(f"{where}: image {image} is not the one deploy/oci builds for an app of this name")
            elif image in want and o["metadata"].get("labels", {}).get("nano-orders/shape") != shape:
                problems.append(f"{where}: label nano-orders/shape is not {shape}")
            elif image not in want and (":" not in image or image.endswith(":latest")):
                problems.append(f"{where}: public image {image} is not pinned to a version")
    assert not problems + [f"app image {i} is deployed by nothing" for i in sorted(set(want) - seen)]


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
    copies = [ln.split()[1:] for ln in lines if ln.startswith("COPY")]
    assert lines[0] == "FROM scratch"
    assert ["spin.toml", "/spin.toml"] in copies and ["target/composed/", "/target/composed/"] in copies


@pytest.mark.parametrize("app", APPS, ids=[a.manifest for a in APPS])
def test_stage_rewrites_sources_into_target_composed(app, tmp_path):
    sources = stage.stage(ROOT / app.manifest, tmp_path, allow_missing=True)
    assert sources and all(s.startswith("target/composed/") for s in sources), sources
    staged = tomllib.loads((tmp_path / "spin.toml").read_text())
    assert {c["source"] for c in staged["component"].values()} <= set(sources)


@pytest.mark.parametrize("app", APPS, ids=[a.manifest for a in APPS])
def test_spin_manifest_fits_shapes_toml(app):
    report = nanohost_check(ROOT / app.manifest, required_stand_ins(app.manifest))
    triggers = {t["type"] for t in report["triggers"]}
    sources = {(ROOT / app.manifest).parent.joinpath(c["source"] or "/").resolve()
               for c in report["components"].values()}
    assert report["application"] == app.name
    assert ROOT / f"target/composed/{app.name}.wasm" in sources, "the app's own build output is no component"
    assert all(s.parent == ROOT / "target/composed" for s in sources), f"sources outside target/composed: {sources}"
    assert ("http" in triggers) == (app.http), "http trigger vs shapes.toml"
    if app.http:
        report = nanohost_check(ROOT / app.manifest, required_stand_ins(app.manifest), routes=("/order", "/order/1"))
        assert None not in report["routes"].values(), f"POST /order or GET /order/<id> is not routed: {report['routes']}"
    elif app.shape in ("mqtt", "redis"):
        assert app.shape in triggers, f"no [[trigger.{app.shape}]]"


@pytest.mark.parametrize("directory,app", CLUSTER_APPS, ids=[f"{d}:{a.manifest}" for d, a in CLUSTER_APPS])
def test_spin_app_in_cluster(directory, app, tmp_path):
    """With the variables Kubernetes sets: every address in-cluster, reachable and allowed; stores defined."""
    objects = render(directory)
    (tmp_path / "runtime-config.toml").write_text(runtime_config(objects))
    report = nanohost_check(ROOT / app.manifest, variables(objects, app.name), tmp_path / "runtime-config.toml")
    known, problems = services(objects), []
    problems += [f"variable {n} defaults to {v['value']}, not the broker inside a pod"
                 for n, v in report["variables"].items() if not v["set"] and LOOPBACK.search(v["value"] or "")]
    problems += [f"{t['type']} trigger: {p}" for t in report["triggers"]
                 if t.get("address") and (p := address_problem(t["address"], known))]
    for cid, c in report["components"].items():
        problems += [f"{cid}: may not reach {u['url']} ({u['variable']}); allowed_outbound_hosts: "
                     f"{c['allowed_outbound_hosts']}" for u in c["urls"] if not u["allowed"]]
        problems += [f"{cid}: {u['variable']}: {p}" for u in c["urls"] if (p := address_problem(u["url"], known))]
        problems += [f"{cid}: key-value store {label!r} is not in the cluster's runtime config"
                     for label in c["key_value_stores"] if label not in report["runtime_config_stores"]]
    assert not problems
