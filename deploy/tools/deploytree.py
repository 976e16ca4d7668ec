"""What deploy/ says, read in one place for the offline checks (deploy/tools) and the shim check (deploy/shim):
config.env, the repository's one list of shapes and apps (shapes.toml), the kustomizations as `kubectl kustomize` renders them with the Secrets deploy/up.sh
applies first (deploy/secrets, filled in with stand-ins or given values), and what each app is handed.

The tree read is $DEPLOY_ROOT (the repository root by default), so that the breakage tests can point the
offline checks at a broken copy. A missing or unrenderable input raises DeployError, never a default.
"""
import functools
import importlib.util
import os
import re
import shutil
import subprocess
import tomllib
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
# The deployed shapes of shapes.toml (the one list xtask, composition, the benchmark and the tests read) and
# their apps, in its order.
_SHAPES_TOML = [s for s in tomllib.loads((ROOT / "shapes.toml").read_text())["shape"] if s["deployed"]]
APPS = [App(s["name"], a["name"], a["manifest"], a["http"]) for s in _SHAPES_TOML for a in s["apps"]]
SHAPES = sorted(s["name"] for s in _SHAPES_TOML)


def image_ref(app: str) -> str:
    """The image deploy/up.sh pushes for `app`, under the name the cluster pulls."""
    return f"{CONFIG['REGISTRY_NAME']}:{CONFIG['REGISTRY_PORT']}/{app}:{CONFIG['IMAGE_TAG']}"


def secrets_generator():
    """deploy/secrets/generate.py, the one filling in the Secrets (deploy/up.sh runs it too)."""
    path = DEPLOY / "secrets/generate.py"
    if not path.is_file():
        raise DeployError("deploy/secrets/generate.py does not exist")
    spec = importlib.util.spec_from_file_location("deploy_secrets_generate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def secrets(values: dict[str, str] | None = None) -> list[dict]:
    """The Secrets deploy/up.sh applies before any kustomization: deploy/secrets/secrets.yaml filled in with
    `values` (template name -> value), by default the generator's distinct stand-ins."""
    generate = secrets_generator()
    filled = generate.values(values, sample=values is None)
    return [o for o in yaml.safe_load_all(generate.render(filled)) if o]


@functools.cache
def render(directory: str) -> list[dict]:
    """The objects `kubectl apply -k deploy/<directory>` would send, after the Secrets deploy/up.sh applies
    first (with stand-in values: deploy/secrets)."""
    return [*secrets(), *kustomize(directory)]


def render_with(directory: str, values: dict[str, str]) -> list[dict]:
    """The same with the Secrets filled in with `values` (the shim check's real, random ones)."""
    return [*secrets(values), *kustomize(directory)]


@functools.cache
def kustomize(directory: str) -> list[dict]:
    """The objects `kubectl kustomize deploy/<directory>` renders."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        raise DeployError("kubectl is not installed: it renders the kustomizations (kubectl 1.27+)")
    if not (DEPLOY / directory / "kustomization.yaml").is_file():
        raise DeployError(f"deploy/{directory}/kustomization.yaml does not exist")
    proc = subprocess.run([kubectl, "kustomize", str(DEPLOY / directory)], capture_output=True, text=True, timeout=60)
    if proc.returncode:
        raise DeployError(f"kubectl kustomize deploy/{directory}: {proc.stderr.strip()}")
    return [o for o in yaml.safe_load_all(proc.stdout) if o]


def runtime_classes(directory: str, objects: list[dict]) -> set[str]:
    """The RuntimeClasses a pod of deploy/<directory> can name: those it defines, and on Kind (kind/...) the one
    runtime-class-manager creates from kind/shim.yaml."""
    names = set(of_kind(objects, "RuntimeClass"))
    if directory.startswith("kind/"):
        names.add(yaml.safe_load((DEPLOY / "kind/shim.yaml").read_text())["spec"]["runtimeClass"]["name"])
    return names


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


def env_of(container: dict, objects: list[dict], who: str) -> dict[str, str]:
    """A container's environment as the kubelet hands it over, Secret-backed values resolved."""
    found = of_kind(objects, "Secret")
    return {e["name"]: _value(e, found, who) for e in container.get("env", [])}


def container_env(objects: list[dict], app: str) -> dict[str, str]:
    """The environment of Deployment `app`'s containers."""
    return {k: v for o, spec, _ in pods(objects) if o["metadata"]["name"] == app
            for c in spec["containers"] for k, v in env_of(c, objects, app).items()}


_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, env: dict[str, str]) -> str:
    """The kubelet's expansion of `$(NAME)` in a container's command and args: a defined variable is
    replaced, an undefined reference stays as it is, `$$` is one `$`."""
    return _REF.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), value)


def container_argv(objects: list[dict], kind: str, name: str) -> list[str]:
    """command + args of the one (main) container of Deployment or CronJob `name`, expanded as the kubelet
    does with its environment."""
    obj = of_kind(objects, kind).get(name)
    if obj is None:
        raise DeployError(f"no {kind} {name}")
    spec = obj["spec"]["jobTemplate"]["spec"] if kind == "CronJob" else obj["spec"]
    (container,) = spec["template"]["spec"]["containers"]
    env = env_of(container, objects, name)
    return [expand(a, env) for a in [*container.get("command", []), *container.get("args", [])]]


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
    """CronJob name -> the command line of its one container, `$(VAR)` expanded as the kubelet does."""
    return {n: container_argv(objects, "CronJob", n) for n in of_kind(objects, "CronJob")}


def sweep_request(objects: list[dict]) -> tuple[str, str, dict[str, str]] | None:
    """(method, URL, headers) of the render's sweep CronJob, which curls one http:// URL (headers given with
    -H, Secret-backed values resolved); None without a CronJob."""
    jobs = cronjob_commands(objects)
    if not jobs:
        return None
    urls = [a for argv in jobs.values() for a in argv if a.startswith("http://")]
    if len(jobs) != 1 or len(urls) != 1 or [argv[:1] for argv in jobs.values()] != [["curl"]]:
        raise DeployError(f"expected one CronJob that curls one http:// URL, found {jobs}")
    (argv,) = jobs.values()
    headers = dict(argv[i + 1].split(":", 1) for i, a in enumerate(argv[:-1]) if a in ("-H", "--header"))
    return (argv[argv.index("-X") + 1] if "-X" in argv else "GET", urls[0],
            {k.strip(): v.strip() for k, v in headers.items()})


# --------------------------------------------------------------------------------------------------
# Spin's instance pool
# --------------------------------------------------------------------------------------------------

# What each Spin app Deployment sets (Spin v3.6.3 crates/core/src/lib.rs reads them when it builds its engine):
# the number of instances (SPIN_MAX_INSTANCE_COUNT: component instances and async stacks) and, per that many
# instances of the app's largest component, the totals of the pool's other slots.
POOL_ENV = {"SPIN_MAX_INSTANCE_COUNT": None, "SPIN_WASMTIME_TOTAL_MEMORIES": "memories",
            "SPIN_WASMTIME_TOTAL_CORE_INSTANCES": "core_instances", "SPIN_WASMTIME_TOTAL_TABLES": "tables"}
# Spin's default: a released memory slot keeps up to this much resident (and a table slot a quarter of it).
SPIN_DEFAULT_KEEP_RESIDENT = 2 * 1024 * 1024
# One instance of each app's largest component, measured on Spin 3.6.3 with deploy/tools/measure_pool.py (the
# fulfilment of the MQTT and Redis apps through its HTTP twin, fulfilment-http: the same composition behind
# another listener). Core instances include the adapter modules wasmtime generates between composed
# components, which the .wasm does not show; memories and tables are what its modules define, and pool_needs
# compares those with the build, so a changed app fails the check until this is measured again.
POOL_MEASURED = {
    "order-app": {"memories": 6, "core_instances": 23, "tables": 12},
    "order-app-mqtt": {"memories": 5, "core_instances": 18, "tables": 10},
    "order-app-redis": {"memories": 5, "core_instances": 18, "tables": 10},
    "fulfilment-mqtt": {"memories": 3, "core_instances": 11, "tables": 6},
    "fulfilment-redis": {"memories": 3, "core_instances": 11, "tables": 6},
}
COMPOSED = Path(os.environ.get("NANO_COMPOSED_DIR", Path(__file__).resolve().parents[2] / "target/composed"))


def _leb(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _name(data: bytes, pos: int) -> int:
    length, pos = _leb(data, pos)
    return pos + length


def _sections(data: bytes):
    pos = 8
    while pos < len(data):
        sid = data[pos]
        size, pos = _leb(data, pos + 1)
        yield sid, data[pos:pos + size]
        pos += size


def _module_slots(module: bytes) -> tuple[int, int, int]:
    """(core instances, defined memories, defined tables) of one instantiation of a core module."""
    counts = {sid: _leb(body, 0)[0] for sid, body in _sections(module) if sid in (4, 5)}
    return 1, counts.get(5, 0), counts.get(4, 0)


def _extern_name(body: bytes, pos: int) -> int:
    """The position after a component import's or export's name (plain, or with a version suffix)."""
    versioned = body[pos] == 0x01
    pos = _name(body, pos + 1)
    return _name(body, pos) if versioned else pos


def _sort_index(body: bytes, pos: int) -> int:
    """The position after a component sort (two bytes for a core sort) and its index."""
    pos += 2 if body[pos] == 0x00 else 1
    return _leb(body, pos)[1]


def _skip_vec(body: bytes, pos: int, item) -> int:
    """The position after a vector whose items `item(body, pos)` steps over."""
    count, pos = _leb(body, pos)
    for _ in range(count):
        pos = item(body, pos)
    return pos


def _defined(body: bytes, pos: int, defined: list, what: str):
    """The item an instantiation names (an index into `defined`) and the position after that index; one
    that is not defined in this component (imported, or out of range) is a DeployError."""
    index, pos = _leb(body, pos)
    if index >= len(defined) or defined[index] is None:
        raise DeployError(f"{what} {index}, which is not defined in the component")
    return defined[index], pos


def _component_slots(data: bytes, outer: tuple = ()) -> tuple[int, int, int]:
    """What one instantiation of a component takes from wasmtime's pool: every core module instantiation
    (nested components included) is a core instance, with the memories and tables its module defines;
    imported ones and `from exports` bundles take nothing. Index spaces follow the component binary format."""
    modules: list = []
    components: list = []
    total = [0, 0, 0]
    for sid, body in _sections(data):
        if sid == 1:
            modules.append(_module_slots(body))
        elif sid == 4:
            components.append(body)
        elif sid == 6:  # aliases: only outer aliases of modules or components are followed
            count, pos = _leb(body, 0)
            for _ in range(count):
                sort = body[pos]
                pos += 1
                core_sort = body[pos] if sort == 0x00 else None
                pos += 1 if sort == 0x00 else 0
                target = body[pos]
                pos += 1
                if target == 0x02:
                    depth, pos = _leb(body, pos)
                    index, pos = _leb(body, pos)
                    scope = outer[len(outer) - depth] if 0 < depth <= len(outer) else None
                else:
                    _, pos = _leb(body, pos)
                    pos = _name(body, pos)
                    scope = index = None
                if core_sort == 0x11:
                    modules.append(scope[0][index] if scope else None)
                elif sort == 0x04:
                    components.append(scope[1][index] if scope else None)
        elif sid == 10:  # imports: an imported module or component takes an index, and is no slot of ours
            count, pos = _leb(body, 0)
            for _ in range(count):
                pos = _extern_name(body, pos)
                desc = body[pos]
                pos += 2 if desc == 0x00 else 1
                if desc in (0x02, 0x03) and body[pos] == 0x01 and desc == 0x03:
                    pos += 1  # (sub resource)
                else:
                    pos += 1 if desc in (0x02, 0x03) else 0
                    _, pos = _leb(body, pos)
                if desc == 0x00:
                    modules.append(None)
                elif desc == 0x04:
                    components.append(None)
        elif sid == 2:  # core instances: args and inline exports are both (name, sort, index)
            count, pos = _leb(body, 0)
            for _ in range(count):
                kind, pos = body[pos], pos + 1
                if kind == 0x00:
                    module, pos = _defined(body, pos, modules, "core instance of module")
                    total = [t + s for t, s in zip(total, module)]
                pos = _skip_vec(body, pos, lambda b, p: _leb(b, _name(b, p) + 1)[1])
        elif sid == 5:  # component instances
            count, pos = _leb(body, 0)
            for _ in range(count):
                kind, pos = body[pos], pos + 1
                if kind == 0x00:
                    component, pos = _defined(body, pos, components, "instance of component")
                    nested = _component_slots(component, (*outer, (modules, components)))
                    total = [t + s for t, s in zip(total, nested)]
                    pos = _skip_vec(body, pos, lambda b, p: _sort_index(b, _name(b, p)))
                else:
                    pos = _skip_vec(body, pos, lambda b, p: _sort_index(b, _extern_name(b, p)))
    return tuple(total)


def wasm_slots(path: Path) -> dict[str, int]:
    """memories, core_instances and tables one instance of the component at `path` takes from the pool."""
    data = path.read_bytes()
    if data[:4] != b"\0asm" or data[4:8] != b"\x0d\x00\x01\x00":
        raise DeployError(f"{path} is not a WebAssembly component")
    cores, memories, tables = _component_slots(data)
    return {"memories": memories, "core_instances": cores, "tables": tables}


def pool_needs(app: str) -> dict[str, int]:
    """Pool env variable -> slots one instance of the app's largest component needs (each kind's maximum over
    the app's components, since any mix of them may be in flight): POOL_MEASURED, once the built
    target/composed agrees with it (the same memories and tables, no more core modules than core instances)."""
    (entry,) = [a for a in APPS if a.name == app]
    manifest = tomllib.loads((ROOT / entry.manifest).read_text())
    built: dict[str, int] = {}
    for component in manifest.get("component", {}).values():
        wasm = COMPOSED / Path(component["source"]).name
        if not wasm.is_file():
            raise DeployError(f"{wasm} is not built: `cargo xtask build` (cargo xtask test builds it first)")
        for kind, count in wasm_slots(wasm).items():
            built[kind] = max(built.get(kind, 0), count)
    measured = POOL_MEASURED.get(app)
    if not measured or any(measured[k] != built[k] for k in ("memories", "tables")) \
            or measured["core_instances"] < built["core_instances"]:
        raise DeployError(f"{app}: the build defines {built}, deploytree.POOL_MEASURED says {measured}: measure "
                          "again with deploy/tools/measure_pool.py and size the Deployment's pool for it")
    return {env: measured[kind] for env, kind in POOL_ENV.items() if kind}
