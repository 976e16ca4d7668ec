"""What deploy/ says, read in one place for the offline checks (deploy/tools) and the shim check (deploy/shim):
config.env, apps.tsv, the kustomizations as `kubectl kustomize` renders them, and what each app is handed.

The tree read is $DEPLOY_ROOT (the repository root by default), so that the breakage tests can point the
offline checks at a broken copy. A missing or unrenderable input raises DeployError, never a default.
"""
import functools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(os.environ.get("DEPLOY_ROOT", Path(__file__).resolve().parents[2])).resolve()
DEPLOY = ROOT / "deploy"
# containerd-shim-spin v0.24.0 (src/constants.rs) reads the runtime config from this path only, and its HTTP
# trigger listens on port 80 unless SPIN_HTTP_LISTEN_ADDR is set; the manifests rely on both.
SHIM_RUNTIME_CONFIG_PATH = "/runtime-config.toml"
SHIM_HTTP_PORT = 80


class DeployError(Exception):
    """An input of deploy/ is missing, does not render, or refers to nothing."""


@dataclass(frozen=True)
class App:
    shape: str
    name: str
    manifest: str  # the app's spin.toml, relative to ROOT
    http: bool  # has an HTTP trigger (and so a Service, probes and maybe a sweep CronJob)


def _lines(name: str) -> list[str]:
    text = (DEPLOY / name).read_text()
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


CONFIG = dict(ln.partition("=")[::2] for ln in _lines("config.env"))
APPS = [App(shape, name, manifest, http == "yes") for shape, name, manifest, http in map(str.split, _lines("apps.tsv"))]
SHAPES = sorted({a.shape for a in APPS})


def image_ref(app: str) -> str:
    """The image deploy/up.sh pushes for `app`, under the name the cluster pulls."""
    return f"{CONFIG['REGISTRY_NAME']}:{CONFIG['REGISTRY_PORT']}/{app}:{CONFIG['IMAGE_TAG']}"


@functools.cache
def render(directory: str) -> list[dict]:
    """The objects `kubectl apply -k deploy/<directory>` would send."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        raise DeployError("kubectl is not installed: it renders the kustomizations (kubectl 1.27+)")
    if not (DEPLOY / directory / "kustomization.yaml").is_file():
        raise DeployError(f"deploy/{directory}/kustomization.yaml does not exist")
    proc = subprocess.run([kubectl, "kustomize", str(DEPLOY / directory)], capture_output=True, text=True, timeout=60)
    if proc.returncode:
        raise DeployError(f"kubectl kustomize deploy/{directory}: {proc.stderr.strip()}")
    return [o for o in yaml.safe_load_all(proc.stdout) if o]


def of_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def pods(objects: list[dict]) -> list[tuple[dict, dict, dict]]:
    """(Deployment, pod spec, pod labels) of every Deployment."""
    return [(o, o["spec"]["template"]["spec"], o["spec"]["template"].get("metadata", {}).get("labels", {}))
            for o in of_kind(objects, "Deployment").values()]


def _value(entry: dict, secrets: dict[str, dict], who: str) -> str:
    """A plain `value`, or the Secret key its valueFrom.secretKeyRef names (what the kubelet or the operator
    hands the app)."""
    if "valueFrom" not in entry:
        return entry.get("value", "")
    ref = entry["valueFrom"].get("secretKeyRef", {})
    data = secrets.get(ref.get("name"), {}).get("stringData", {})
    if ref.get("key") not in data:
        raise DeployError(f"{who}: {entry['name']} names no key of a Secret here: {ref}")
    return data[ref["key"]]


def container_env(objects: list[dict], app: str) -> dict[str, str]:
    """The environment of Deployment `app`'s containers."""
    secrets = of_kind(objects, "Secret")
    return {e["name"]: _value(e, secrets, app) for o, spec, _ in pods(objects) if o["metadata"]["name"] == app
            for c in spec["containers"] for e in c.get("env", [])}


def variables(objects: list[dict], app: str) -> dict[str, str]:
    """The Spin variables Kubernetes hands `app`: the Deployment's SPIN_VARIABLE_* environment and the SpinApp's
    spec.variables (which the operator turns into that same environment)."""
    secrets = of_kind(objects, "Secret")
    found = {k.removeprefix("SPIN_VARIABLE_").lower(): v for k, v in container_env(objects, app).items()
             if k.startswith("SPIN_VARIABLE_")}
    spinapp = of_kind(objects, "SpinApp").get(app, {"spec": {}})
    return found | {v["name"]: _value(v, secrets, app) for v in spinapp["spec"].get("variables", [])}


def runtime_config(objects: list[dict]) -> str:
    text = of_kind(objects, "Secret").get("spin-runtime-config", {}).get("stringData", {}).get("runtime-config.toml")
    if text is None:
        raise DeployError("no Secret spin-runtime-config with stringData key runtime-config.toml")
    return text


def probe_paths(objects: list[dict], app: str) -> set[str | None]:
    """The httpGet paths of `app`'s readiness and liveness probes (Deployment) or checks (SpinApp)."""
    probes = [c.get(p, {}) for o, spec, _ in pods(objects) if o["metadata"]["name"] == app
              for c in spec["containers"] for p in ("readinessProbe", "livenessProbe")]
    spinapp = of_kind(objects, "SpinApp").get(app)
    if spinapp:
        probes += [spinapp["spec"].get("checks", {}).get(p, {}) for p in ("readiness", "liveness")]
    return {p.get("httpGet", {}).get("path") for p in probes}


def cronjob_commands(objects: list[dict]) -> dict[str, list[str]]:
    """CronJob name -> the command line of its one container."""
    return {n: [*c.get("command", []), *c.get("args", [])] for n, o in of_kind(objects, "CronJob").items()
            for c in o["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]}


def sweep_request(objects: list[dict]) -> tuple[str, str] | None:
    """(method, URL) of the render's sweep CronJob, which curls one http:// URL; None without a CronJob."""
    jobs = cronjob_commands(objects)
    if not jobs:
        return None
    urls = [a for argv in jobs.values() for a in argv if a.startswith("http://")]
    if len(jobs) != 1 or len(urls) != 1 or [argv[:1] for argv in jobs.values()] != [["curl"]]:
        raise DeployError(f"expected one CronJob that curls one http:// URL, found {jobs}")
    (argv,) = jobs.values()
    return argv[argv.index("-X") + 1] if "-X" in argv else "GET", urls[0]
