"""The deploy keeps orders and holds its secrets (issue 18): Redis persists and is bounded, the brokers refuse
anonymous clients, every secret an app needs comes from a Secret, the sweep CronJobs authenticate, and Spin's
instance pool is sized for the app it runs. One case per (render, rule); test_breakage.py breaks each."""
import re
import tomllib
from urllib.parse import urlsplit

import pytest

from conftest import KUSTOMIZATIONS, SHAPE_DIRS, render, sweep_request, variables
from deploytree import (APPS, DEPLOY, POOL_ENV, ROOT, SPIN_DEFAULT_KEEP_RESIDENT, DeployError, container_argv, env_of, of_kind, pods,
                        pool_needs, secrets)

DEPLOYS = [d for d in KUSTOMIZATIONS if "/base" not in d]
NETWORKED = [(s, d) for s, d in SHAPE_DIRS if any(a.shape == s and not a.http for a in APPS)]
CLUSTER_APPS = [(d, a) for a in APPS for s, d in SHAPE_DIRS if s == a.shape]
K8S_APPS = [(d, a) for d, a in CLUSTER_APPS if d.startswith("k8s/")]
# The MQTT clients of Spin 3.6.3 and nanohost (rumqttc) take packets up to 10 KiB: a broker limit above that
# would let through a message no trigger can read.
RUMQTTC_MAX_PACKET = 10 * 1024
REDIS_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}
K8S_UNITS = {"": 1, "k": 1000, "M": 1000**2, "G": 1000**3, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}


def redis_bytes(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([a-zA-Z]*)", value).groups()
    return int(number) * REDIS_UNITS[unit.lower()]


def k8s_bytes(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([a-zA-Z]*)", str(value)).groups()
    return int(number) * K8S_UNITS[unit]


def options(argv: list[str]) -> dict[str, str]:
    """redis-server's `--name value` arguments."""
    return {a[2:]: argv[i + 1] for i, a in enumerate(argv[:-1]) if a.startswith("--")}


def deployment(objects: list[dict], name: str) -> tuple[dict, dict]:
    """(Deployment `name`, its pod spec)."""
    found = [(o, spec) for o, spec, _ in pods(objects) if o["metadata"]["name"] == name]
    if len(found) != 1:
        pytest.fail(f"no Deployment {name}")
    return found[0]


def variable_sources(objects: list[dict], app: str) -> dict[str, dict]:
    """Spin variable -> how Kubernetes sets it (the env entry or the SpinApp's spec.variables entry)."""
    env = {e["name"].removeprefix("SPIN_VARIABLE_").lower(): e for o, spec, _ in pods(objects)
           if o["metadata"]["name"] == app for c in spec["containers"] for e in c.get("env", [])
           if e["name"].startswith("SPIN_VARIABLE_")}
    spinapp = of_kind(objects, "SpinApp").get(app, {"spec": {}})
    return env | {v["name"]: v for v in spinapp["spec"].get("variables", [])}


def declared(app) -> dict[str, dict]:
    return tomllib.loads((ROOT / app.manifest).read_text()).get("variables", {})


@pytest.mark.parametrize("directory", DEPLOYS)
def test_redis_is_durable_and_bounded(directory):
    """AOF fsynced (always or everysec) on a PersistentVolumeClaim of this render; maxmemory at most half the
    container's limit (an AOF rewrite forks) with noeviction, so a full store refuses writes (the apps answer
    503) instead of evicting orders or being OOM-killed."""
    objects = render(directory)
    redis, spec = deployment(objects, "redis")
    (container,) = spec["containers"]
    opts, problems = options(container_argv(objects, "Deployment", "redis")), []
    if opts.get("appendonly") != "yes" or opts.get("appendfsync") not in ("always", "everysec"):
        problems.append(f"no AOF fsynced at least every second: {opts}")
    limit = container.get("resources", {}).get("limits", {}).get("memory")
    if not limit or "maxmemory" not in opts or redis_bytes(opts["maxmemory"]) * 2 > k8s_bytes(limit):
        problems.append(f"maxmemory {opts.get('maxmemory')} is not at most half the memory limit {limit}")
    if opts.get("maxmemory-policy") != "noeviction":
        problems.append(f"maxmemory-policy {opts.get('maxmemory-policy')}, not noeviction")
    mounts = {m["mountPath"].rstrip("/"): m["name"] for m in container.get("volumeMounts", [])}
    volume = {v["name"]: v for v in spec.get("volumes", [])}.get(mounts.get(opts.get("dir", "").rstrip("/")), {})
    claim = volume.get("persistentVolumeClaim", {}).get("claimName")
    if claim not in of_kind(objects, "PersistentVolumeClaim"):
        problems.append(f"--dir {opts.get('dir')} is not on a PersistentVolumeClaim of this render ({volume})")
    if redis["spec"].get("replicas", 1) != 1 or redis["spec"].get("strategy", {}).get("type") != "Recreate":
        problems.append("Redis must run one replica with strategy Recreate: two processes must never share one AOF")
    assert not problems


@pytest.mark.parametrize("directory", DEPLOYS)
def test_brokers_refuse_anonymous_clients(directory):
    """Redis needs the password the apps are given; Mosquitto allows no anonymous client, its password file is
    built from the Secret keys the MQTT apps read, and it refuses a publish larger than the triggers can read."""
    objects, problems = render(directory), []
    password = options(container_argv(objects, "Deployment", "redis")).get("requirepass")
    if not password:
        problems.append("Redis has no --requirepass")
    conf = of_kind(objects, "ConfigMap")["mosquitto-config"]["data"]["mosquitto.conf"]
    settings = dict((ln.split(None, 1) + [""])[:2] for ln in conf.splitlines() if ln.strip() and ln[0] != "#")
    if settings.get("allow_anonymous") != "false" or not settings.get("password_file"):
        problems.append(f"mosquitto.conf allows anonymous clients or names no password_file: {settings}")
    limit = int(settings.get("message_size_limit", "0"))
    if not 0 < limit <= RUMQTTC_MAX_PACKET:
        problems.append(f"message_size_limit {limit}: want 1..{RUMQTTC_MAX_PACKET} (0 means no limit)")
    _, spec = deployment(objects, "mosquitto")
    folder = settings.get("password_file", "").rsplit("/", 1)[0]
    writers = [c for c in spec.get("initContainers", [])
               if any(m["mountPath"].rstrip("/") == folder for m in c.get("volumeMounts", []))]
    given = {v for c in writers for v in env_of(c, objects, "mosquitto").values()}
    for app in (a for a in APPS if a.shape == "mqtt" and f"/{a.shape}" in directory):
        wanted = {v for k, v in variables(objects, app.name).items() if k in ("mqtt_username", "mqtt_password")}
        if len(wanted) != 2 or not wanted <= given:
            problems.append(f"{app.name}'s mqtt_username/mqtt_password are not what the init container writes "
                            f"into {folder} (from the Secret)")
    if not writers:
        problems.append(f"no init container writes the password file's folder {folder}")
    assert not problems


@pytest.mark.parametrize("directory,app", CLUSTER_APPS, ids=[f"{d}:{a.manifest}" for d, a in CLUSTER_APPS])
def test_secret_variables_come_from_secrets(directory, app):
    """Every variable the app declares `secret = true` comes from a Secret key (never a plain value), and
    every `required = true` one is set; the Secrets give each a non-empty value."""
    objects = render(directory)
    sources, values, problems = variable_sources(objects, app.name), variables(objects, app.name), []
    for name, decl in declared(app).items():
        if decl.get("secret") and "secretKeyRef" not in sources.get(name, {}).get("valueFrom", {}):
            problems.append(f"{name} (secret = true) is not set from a Secret: {sources.get(name)}")
        if (decl.get("secret") or decl.get("required")) and name in sources and not values.get(name):
            problems.append(f"{name} is set to an empty value")
        if decl.get("required") and name not in sources:
            problems.append(f"{name} (required = true) is not set")
    assert not problems


@pytest.mark.parametrize("shape,directory", NETWORKED, ids=[d for _, d in NETWORKED])
def test_message_key_is_one_secret_for_the_shape(shape, directory):
    """The order app signs the "order placed" message and the fulfilment app checks it: both get message_key
    from the same Secret key."""
    objects = render(directory)
    refs = {a.name: variable_sources(objects, a.name).get("message_key", {}).get("valueFrom", {}).get("secretKeyRef")
            for a in APPS if a.shape == shape}
    assert None not in refs.values() and len({(r["name"], r["key"]) for r in refs.values()}) == 1, refs


@pytest.mark.parametrize("directory", DEPLOYS)
def test_sweep_cronjob_sends_the_token(directory):
    """POST /sweep fails closed without the token: the CronJob sends `Authorization: Bearer <sweep_token>`
    from the same Secret key as the app's variable."""
    objects = render(directory)
    request = sweep_request(objects)
    assert request, "no sweep CronJob"
    # A shape's HTTP app, or in a placement (spinkube/placements) the SpinApp the sweep calls, which
    # test_placements checks keeps the component routing /sweep.
    apps = [a.name for a in APPS if a.http and directory.endswith(f"/{a.shape}")]
    (app,) = apps or [urlsplit(request[1]).hostname.split(".")[0]]
    token = variables(objects, app).get("sweep_token")
    assert token and request[2].get("Authorization") == f"Bearer {token}", request


@pytest.mark.parametrize("directory,app", K8S_APPS, ids=[f"{d}:{a.name}" for d, a in K8S_APPS])
def test_spin_pool_sized_for_the_app(directory, app):
    """Spin's pooling allocator (crates/core, v3.6.3) counts component instances, linear memories and core
    instances separately; by default (1,000 / 1,000 / 4,000) the memories run out first for a composed app,
    at ~166 requests for 6 memories per instance, and Spin answers an empty 500. Each Deployment sets the
    instance count and sizes the other totals for that many instances of its largest component."""
    objects = render(directory)
    env = {k: v for o, spec, _ in pods(objects) if o["metadata"]["name"] == app.name
           for c in spec["containers"] for k, v in env_of(c, objects, app.name).items()}
    missing = [k for k in POOL_ENV if k not in env]
    assert not missing, f"not set: {missing}"
    try:
        need = pool_needs(app.name)
    except DeployError as err:
        pytest.fail(str(err))
    instances = int(env["SPIN_MAX_INSTANCE_COUNT"])
    short = {k: (int(env[k]), instances * per) for k, per in need.items() if int(env[k]) < instances * per}
    assert instances > 0 and not short, f"{instances} instances need more: {short}"
    # A released slot stays resident up to keep-resident bytes: every memory slot of the pool may, after a burst.
    keep = int(env.get("SPIN_WASMTIME_LINEAR_MEMORY_KEEP_RESIDENT", SPIN_DEFAULT_KEEP_RESIDENT))
    (limit,) = {c["resources"]["limits"]["memory"] for o, spec, _ in pods(objects)
                if o["metadata"]["name"] == app.name for c in spec["containers"]}
    assert keep * int(env["SPIN_WASMTIME_TOTAL_MEMORIES"]) <= k8s_bytes(limit) / 2, \
        f"{env['SPIN_WASMTIME_TOTAL_MEMORIES']} memory slots x {keep} bytes kept resident exceed half the limit {limit}"


def test_generated_secrets_are_random_and_kept():
    """deploy/secrets/generate.py: every value non-empty and distinct, new on each run, and a value the
    cluster already holds is kept (a redeploy never changes a password under the running brokers)."""
    generate = __import__("deploytree").secrets_generator()
    first, second = generate.values(), generate.values()
    own = [k for k in first if k not in ("namespace", "mqtt_username")]
    assert all(first[k] and first[k] != second[k] for k in own)
    assert len({first[k] for k in own}) == len(own)
    kept = generate.values({"redis_password": "kept-one"})
    rendered = {o["metadata"]["name"]: o["stringData"] for o in secrets(kept)}
    assert rendered["broker-credentials"]["redis-password"] == "kept-one"
    assert ":kept-one@" in rendered["spin-runtime-config"]["runtime-config.toml"]
    assert ":kept-one@" in rendered["broker-credentials"]["redis-trigger-address"]
    with pytest.raises(generate.SecretsError):
        generate.values({"mqtt_password": "--not-an-option"})


def test_no_secret_value_in_git():
    """No kustomization holds a Secret: its values would be applied by `kubectl apply -k` as they are in git."""
    in_git = [(d, o["metadata"]["name"]) for d in KUSTOMIZATIONS for o in __import__("deploytree").kustomize(d)
              if o["kind"] == "Secret"]
    assert in_git == []
    assert "${" in (DEPLOY / "secrets/secrets.yaml").read_text(), "deploy/secrets/secrets.yaml is not a template"
