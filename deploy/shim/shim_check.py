#!/usr/bin/env python3
"""Run every shape's image on containerd with the real containerd-shim-spin, as a k3d node would.

    bash deploy/shim/check.sh            (`cargo xtask test` runs it after deploy/check.sh)

No Kubernetes API server can run here, but the part of a node that runs our apps can: containerd with
containerd-shim-spin v0.24.0 (the shim of the k3d node image in deploy/config.env). This script

1. reads what a cluster would run from the manifests themselves, through deploy/tools/deploytree.py
   (`kubectl kustomize`): images, the runtime config Secret, the `SPIN_VARIABLE_*` environment, the probe
   path, the sweep CronJob's request. That deploy/k8s, deploy/spinkube, shapes.toml, config.env and the apps'
   spin.toml agree on them, and with what the shim fixes (runtime config path, port 80), is checked
   offline by deploy/check.sh, which `cargo xtask test` runs first;
2. starts a private containerd (CRI disabled; root, state and socket in its own directory), Redis and
   Mosquitto on loopback (their settings taken from deploy/k8s/base), all on free ports;
3. builds each app's image with the packaging deploy/up.sh uses (deploy/oci/stage.py + Dockerfile), with
   buildah instead of docker, and imports it into containerd under the name the manifests pull;
4. runs each shape on the shim (`ctr run --net-host --runtime io.containerd.spin.v2`), with the
   manifests' environment (cluster addresses mapped to the loopback brokers) and the runtime config
   mounted where the manifests mount it, and checks the wire contract, a bounded load (counting the
   orders lost) and the sweep CronJob's request; the MQTT shape also restarts Mosquitto to show what the
   trigger does, then the recovery deploy/README.md documents;
5. stops everything it started, by its own ids, also on failure.

Where the machine does not allow it (not root, not Linux x86_64, no shim binary, containerd / runc /
buildah / brokers missing and not installable with apt-get) it prints `shim check SKIPPED: <reason>` and
exits 0. NANO_SHIM_CHECK=skip skips it on purpose. NANO_SHIM_ORDERS sets the load (default 300 orders).

The wire contract is testing/contract/cases.toml, shared with host/tests/order_app.rs and the benchmark;
`shim_check.py contract PORT [SQLITE_DB]` checks only it, against an app already serving on PORT.
"""
from __future__ import annotations

import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
sys.path.insert(0, str(DEPLOY / "tools"))
from deploytree import (APPS, CONFIG, SHIM_HTTP_PORT, SHIM_RUNTIME_CONFIG_PATH, DeployError,  # noqa: E402
                        container_argv, container_env, env_of, of_kind, pods, pool_needs, probe_paths, render_with,
                        runtime_config, secrets_generator, sweep_request)
SHIM_UNPACK = ROOT.parent / "shared/tools/containerd-shim-spin/unpack"
RUNTIME = "io.containerd.spin.v2"
NAMESPACE = "nano-shim-check"
ORDERS = int(os.environ.get("NANO_SHIM_ORDERS", "300"))
CONCURRENCY = 8
FULFIL_DEADLINE_S = 60.0
START_DEADLINE_S = 60.0
RUN_LIMIT_S = 600


class Skip(Exception):
    """The machine cannot run the check; not a failure."""


class Failure(Exception):
    """Something the check verifies did not hold."""


def log(msg: str) -> None:
    print(f"shim: {msg}", flush=True)


# --------------------------------------------------------------------------------------------------
# What the manifests say
# --------------------------------------------------------------------------------------------------

@dataclass
class App:
    shape: str
    name: str
    manifest: Path  # the app's spin.toml
    http: bool
    image: str
    env: dict[str, str]  # the container's environment, Secret-backed values resolved
    probe_path: str | None  # HTTP apps: the path the kubelet probes
    sweep: tuple[str, str, dict[str, str]] | None  # (method, path, headers) the shape's CronJob sends this HTTP app


@dataclass
class Cluster:
    namespace: str
    runtime_config: str  # the Secret's runtime-config.toml
    services: dict[str, int]  # Service name -> port, of the brokers in deploy/k8s/base
    mosquitto_conf: str
    mosquitto_init: tuple[list[str], dict[str, str], str]  # the password file's init container: argv, env, mount
    redis_args: list[str]  # expanded as the kubelet does: the password is in them
    secrets: dict[str, str]  # the values generated for this run (deploy/secrets/generate.py)
    apps: dict[str, list[App]]  # shape -> apps


def read_cluster() -> Cluster:
    """What deploy/k8s would run, with Secrets filled in as deploy/up.sh fills them (random values of this
    run). That it agrees with deploy/spinkube, shapes.toml, config.env and the apps' spin.toml is deploy/check.sh's
    part (`cargo xtask test` runs it first); this only reads."""
    try:
        values = secrets_generator().values()
        base = render_with("k8s/base", values)
        shapes: dict[str, list[App]] = {}
        for a in APPS:
            objects = render_with(f"k8s/overlays/{a.shape}", values)
            images = [c["image"] for o, spec, _ in pods(objects) if o["metadata"]["name"] == a.name
                      for c in spec["containers"]]
            request = sweep_request(objects) if a.http else None
            sweep = (request[0], urllib.parse.urlsplit(request[1]).path, request[2]) if request else None
            shapes.setdefault(a.shape, []).append(App(
                a.shape, a.name, ROOT / a.manifest, a.http, images[0], container_env(objects, a.name),
                next(iter(probe_paths(objects, a.name))) if a.http else None, sweep))
        (init,) = of_kind(base, "Deployment")["mosquitto"]["spec"]["template"]["spec"]["initContainers"]
        return Cluster(
            CONFIG["NAMESPACE"], runtime_config(base),
            {svc: of_kind(base, "Service")[svc]["spec"]["ports"][0]["port"] for svc in ("redis", "mosquitto")},
            of_kind(base, "ConfigMap")["mosquitto-config"]["data"]["mosquitto.conf"],
            ([*init.get("command", []), *init.get("args", [])], env_of(init, base, "mosquitto"),
             init["volumeMounts"][0]["mountPath"]),
            container_argv(base, "Deployment", "redis"), values, shapes)
    except (DeployError, KeyError, IndexError, ValueError) as err:
        raise Failure(f"cannot read deploy/k8s ({err!r}); deploy/check.sh says what is wrong") from err


# --------------------------------------------------------------------------------------------------
# Processes this check starts, and stops
# --------------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, deadline_s: float = 10.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise Failure(f"nothing listens on 127.0.0.1:{port} after {deadline_s:.0f} s")


def which(binary: str) -> str | None:
    # Debian puts mosquitto and runc in /usr/sbin, which a non-root PATH may lack.
    return shutil.which(binary, path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/local/sbin")


class Proc:
    """A long-running process of ours, stopped by its own pid."""

    def __init__(self, name: str, cmd: list[str], logfile: Path, env: dict[str, str] | None = None):
        self.name, self.cmd, self.logfile, self.env = name, cmd, logfile, env
        self.popen: subprocess.Popen | None = None

    def start(self) -> "Proc":
        out = self.logfile.open("ab")
        self.popen = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env=self.env, start_new_session=True)
        out.close()
        return self

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


class Containerd:
    def __init__(self, work: Path, shim_dir: Path):
        self.work = work
        self.sock = str(work / "containerd.sock")
        config = work / "containerd.toml"
        # Our own containerd beside any other: its own root, state and sockets; no CRI plugin (no
        # kubelet talks to it), so it needs no CNI either. Tasks run with --net-host.
        config.write_text(
            "version = 2\n"
            f'root = "{work}/root"\n'
            f'state = "{work}/state"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{self.sock}"\n'
            f'[ttrpc]\n  address = "{self.sock}.ttrpc"\n'
            '[debug]\n  address = ""\n'
        )
        env = dict(os.environ, PATH=f"{shim_dir}:{os.environ.get('PATH', '')}:/usr/sbin")
        self.proc = Proc("containerd", [which("containerd") or "containerd", "--config", str(config)],
                         work / "logs/containerd.log", env)
        self.containers: list[str] = []

    def ctr(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [which("ctr") or "ctr", "--address", self.sock, "--namespace", NAMESPACE, *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise Failure(f"{' '.join(cmd[5:])} failed: {done.stderr.strip() or done.stdout.strip()}")
        return done

    def start(self) -> None:
        self.proc.start()
        end = time.monotonic() + 20
        while time.monotonic() < end:
            if self.proc.popen and self.proc.popen.poll() is not None:
                break
            if self.ctr("version", check=False, timeout=5).returncode == 0:
                return
            time.sleep(0.2)
        tail = (self.work / "logs/containerd.log").read_text(errors="replace")[-1500:]
        raise Failure(f"containerd did not start:\n{tail}")

    def run(self, cid: str, image: str, env: dict[str, str], mounts: dict[str, Path]) -> None:
        # No --log-uri: the shim (runwasi) writes no file for it, so a task's own output is not kept.
        args = ["run", "-d", "--net-host", "--runtime", RUNTIME]
        for key, value in env.items():
            args += ["--env", f"{key}={value}"]
        for dst, src in mounts.items():
            args += ["--mount", f"type=bind,src={src},dst={dst},options=rbind:ro"]
        self.containers.append(cid)
        self.ctr(*args, image, cid, "/")

    def task_status(self, cid: str) -> str:
        for line in self.ctr("tasks", "ls", check=False).stdout.splitlines()[1:]:
            parts = line.split()
            if parts and parts[0] == cid:
                return parts[-1]
        return "ABSENT"

    def remove(self, cid: str) -> None:
        """Stop and delete one container of ours: SIGTERM, then SIGKILL, then the task and container."""
        if self.task_status(cid) == "RUNNING":
            self.ctr("tasks", "kill", cid, check=False)
            end = time.monotonic() + 5
            while time.monotonic() < end and self.task_status(cid) == "RUNNING":
                time.sleep(0.2)
            if self.task_status(cid) == "RUNNING":
                self.ctr("tasks", "kill", "--signal", "SIGKILL", cid, check=False)
                time.sleep(0.5)
        self.ctr("tasks", "delete", "--force", cid, check=False)
        self.ctr("containers", "delete", cid, check=False)
        if cid in self.containers:
            self.containers.remove(cid)

    def stop(self) -> None:
        for cid in list(self.containers):
            self.remove(cid)
        self.proc.stop()
        # A shim outlives containerd if its task could not be deleted. Ours carry our socket path on
        # their command line; any left is ended by its pid and reported.
        for pid in shim_pids(self.sock):
            log(f"ending a leftover shim process {pid}")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def shim_pids(sock: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"containerd-shim-spin-v2") and sock.encode() in cmdline:
            pids.append(int(proc.name))
    return pids


# --------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------

def build_image(app: App, work: Path, ctrd: Containerd) -> None:
    """deploy/oci/build.sh's packaging (stage.py + Dockerfile), built with buildah, imported by name."""
    context = work / "oci" / app.name
    staged = subprocess.run([sys.executable, str(DEPLOY / "oci/stage.py"), str(app.manifest), str(context)],
                            capture_output=True, text=True)
    if staged.returncode != 0:
        raise Failure(f"deploy/oci/stage.py {app.name}: {staged.stderr.strip()}")
    storage = ["--root", str(work / "buildah/root"), "--runroot", str(work / "buildah/run"),
               "--storage-driver", "vfs"]
    buildah = which("buildah") or "buildah"
    tag = f"localhost/nano-shim-check/{app.name}:build"
    archive = work / "oci" / f"{app.name}.tar"
    for cmd in (
        [buildah, *storage, "bud", "--isolation", "chroot", "--quiet", "-f", str(DEPLOY / "oci/Dockerfile"),
         "-t", tag, str(context)],
        [buildah, *storage, "push", "--quiet", tag, f"oci-archive:{archive}:{app.image}"],
    ):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise Failure(f"{' '.join(cmd[7:9])} {app.name}: {done.stderr.strip()[-800:]}")
    ctrd.ctr("images", "import", "--all-platforms", str(archive), timeout=120)
    listed = ctrd.ctr("images", "ls", "--quiet").stdout.split()
    if app.image not in listed:
        raise Failure(f"containerd does not list {app.image} after the import (it has {listed})")


# --------------------------------------------------------------------------------------------------
# HTTP: the wire contract and the load
# --------------------------------------------------------------------------------------------------

def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, conn: http.client.HTTPConnection | None = None):
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), resp.read()
    finally:
        if own:
            conn.close()


JSON = {"Content-Type": "application/json"}


def post_order(port: int, details: str, conn=None) -> tuple[int, str | None, bytes]:
    status, headers, body = request(port, "POST", "/order", json.dumps({"details": details}).encode(), JSON, conn)
    return status, headers.get("location"), body


def order_status(port: int, location: str, conn=None) -> str | None:
    status, _, body = request(port, "GET", location, conn=conn)
    return json.loads(body).get("status") if status == 200 else None


def wait_health(port: int, path: str, ctrd: Containerd, cid: str) -> None:
    end = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < end:
        try:
            status, _, _ = request(port, "GET", path)
            if status == 200:
                return
        except OSError:
            pass
        if ctrd.task_status(cid) not in ("RUNNING", "CREATED"):
            break
        time.sleep(0.2)
    raise Failure(f"{cid}: {path} did not answer 200 within {START_DEADLINE_S:.0f} s "
                  f"(task {ctrd.task_status(cid)}); containerd log: {tail_log(ctrd.work / 'logs/containerd.log', 600)}")


def tail_log(path: Path, chars: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def wait_fulfilled(port: int, locations: list[str], deadline_s: float) -> set[str]:
    """Poll until every order is fulfilled or the deadline passes; return the fulfilled ones."""
    done: set[str] = set()
    end = time.monotonic() + deadline_s
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        while True:
            for loc in locations:
                try:
                    if loc not in done and order_status(port, loc, conn) == "fulfilled":
                        done.add(loc)
                except (OSError, http.client.HTTPException, ValueError):
                    conn.close()  # reopened by the next request; the order is asked again next round
            if len(done) == len(locations) or time.monotonic() > end:
                return done
            time.sleep(0.3)
    finally:
        conn.close()


CONTRACT = ROOT / "testing/contract/cases.toml"
EVENTUALLY_S = 20.0


def fill(text: str, names: dict[str, str]) -> str:
    """`{name}`, `{name:upper}` and `{c*N}` filled in, as testing/contract/src/lib.rs does; other braces
    (JSON's own) are left alone."""
    def one(match: re.Match) -> str:
        inner = match.group(1)
        repeat = re.fullmatch(r"(.)\*(\d+)", inner)
        if repeat:
            return repeat.group(1) * int(repeat.group(2))
        name, _, upper = inner.partition(":")
        if name in names and upper in ("", "upper"):
            return names[name].upper() if upper else names[name]
        return match.group(0)
    return re.sub(r"\{([^{}]*)\}", one, text)


def is_order_id(value: object) -> bool:
    try:
        parsed = uuid.UUID(str(value))
    except ValueError:
        return False
    return parsed.version == 4 and str(parsed) == value


def check_step(step: dict, names: dict[str, str], status: int, headers: dict[str, str], body: bytes) -> str | None:
    """What in the answer breaks the step (None if nothing); takes the step's captures into `names`."""
    want = step["expect"]
    what = f"{step['request']['method']} {fill(step['request']['path'], names)} -> {status} {body[:200]!r}"
    if status != want["status"]:
        return f"{what}: want status {want['status']}"
    document = None
    if want.get("empty_body"):
        if body:
            return f"{what}: want no body"
    else:
        if headers.get("content-type") != "application/json":
            return f"{what}: content-type {headers.get('content-type')!r}, want application/json"
        try:
            document = json.loads(body)
        except ValueError as error:
            return f"{what}: not JSON: {error}"

    def at(pointer: str):
        value = document
        for part in pointer.split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(value, dict) and part in value:
                value = value[part]
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                return None
        return value

    for name, pointer in step.get("capture", {}).items():
        if not is_order_id(at(pointer)):
            return f"{what}: {pointer} {at(pointer)!r} is not a lowercase UUID v4"
        names[name] = at(pointer)
    for name, value in want.get("headers", {}).items():
        if headers.get(name.lower()) != fill(value, names):
            return f"{what}: header {name} {headers.get(name.lower())!r}, want {fill(value, names)!r}"
    if "error" in want:
        message = at("/error")
        if not isinstance(message, str) or want["error"].lower() not in message.lower():
            return f"{what}: want an error that mentions {want['error']!r}"
    for pointer, value in want.get("body", {}).items():
        expected = fill(value, names) if isinstance(value, str) else value
        if at(pointer) != expected:
            return f"{what}: {pointer} want {expected!r}"
    return None


def contract(port: int, label: str, networked: bool = False, count_keys=None) -> list[str]:
    """Every case of testing/contract/cases.toml (the wire contract the end-to-end suite and the benchmark
    check too). A networked shape fulfils after the 202, so its `eventually` steps are retried for up to
    EVENTUALLY_S. `count_keys` counts every key of the app's store: the cases that must store nothing are
    checked with it; None where the store cannot be looked into (the embedded store inside the container)."""
    problems = []
    with CONTRACT.open("rb") as f:
        cases = tomllib.load(f)["case"]
    key = f"shim-{os.getpid()}-{time.time_ns()}"
    placed: list[str] = []
    for case in cases:
        names = {"key": key}
        if networked and placed and case.get("stores_nothing"):
            # The orders placed so far are fulfilled first: what fulfilment writes is not this case's.
            wait_fulfilled(port, placed, EVENTUALLY_S)
            placed = []
        before = count_keys() if count_keys and case.get("stores_nothing") else None
        for step in case["step"]:
            r = step["request"]
            deadline = time.monotonic() + (EVENTUALLY_S if networked and step.get("eventually") else 0)
            while True:
                headers = {n: fill(v, names) for n, v in r.get("headers", {}).items()}
                body = fill(r["body"], names).encode() if "body" in r else None
                if body is None and r["method"] not in ("GET", "DELETE"):
                    body = b""
                try:
                    status, got_headers, got = request(port, r["method"], fill(r["path"], names), body, headers)
                    broken = check_step(step, names, status, got_headers, got)
                except (OSError, http.client.HTTPException) as error:
                    broken = f"{r['method']} {r['path']}: {type(error).__name__}: {error}"
                if broken is None or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            if broken:
                problems.append(f"{case['name']}: {broken}")
                break
            placed += [f"/order/{names[name]}" for name in step.get("capture", {})]
        if before is not None and count_keys() != before:
            problems.append(f"{case['name']}: the store went from {before} to {count_keys()} keys")
    log(f"{label}: wire contract ({len(cases)} cases) {'holds' if not problems else 'BROKEN'}"
        f"{'' if count_keys else ', keys not counted (the store is inside the container)'}")
    return problems


def load(port: int, label: str, orders: int = ORDERS) -> tuple[list[str], list[str]]:
    """POST `orders` orders from CONCURRENCY keep-alive connections; poll until each is fulfilled."""
    started = time.monotonic()
    locations: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        try:
            for i in range(n, orders, CONCURRENCY):
                try:
                    status, location, body = post_order(port, f"shim load {label} #{i}", conn)
                except (OSError, http.client.HTTPException) as err:
                    conn.close()
                    with lock:
                        errors.append(f"#{i}: {err}")
                    continue
                with lock:
                    if status == 202 and location:
                        locations.append(location)
                    else:
                        errors.append(f"#{i}: {status} {body[:120]!r}")
        finally:
            conn.close()

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(worker, range(CONCURRENCY)))
    posted = time.monotonic() - started
    fulfilled = wait_fulfilled(port, locations, FULFIL_DEADLINE_S)
    lost = len(locations) - len(fulfilled)
    log(f"{label}: sent {orders}, accepted {len(locations)}, fulfilled {len(fulfilled)}, lost {lost}, "
        f"refused {len(errors)} (POSTs took {posted:.1f} s, all fulfilled after "
        f"{time.monotonic() - started:.1f} s)")
    problems = []
    if errors:
        problems.append(f"{label}: {len(errors)} of {orders} POSTs not accepted, e.g. {errors[:3]}")
    if lost:
        problems.append(f"{label}: {lost} accepted orders not fulfilled within {FULFIL_DEADLINE_S:.0f} s")
    return problems, locations


# --------------------------------------------------------------------------------------------------
# MQTT 3.1.1 on a socket: just enough to see what Mosquitto lets in and what it delivers
# --------------------------------------------------------------------------------------------------

def _mqtt_packet(kind: int, body: bytes) -> bytes:
    size, length = len(body), b""
    while True:
        byte, size = size % 128, size // 128
        length += bytes([byte | (0x80 if size else 0)])
        if not size:
            return bytes([kind]) + length + body


def _mqtt_str(value: str) -> bytes:
    return len(value.encode()).to_bytes(2, "big") + value.encode()


def _mqtt_read(sock: socket.socket) -> tuple[int, bytes]:
    def exact(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data
    kind = exact(1)[0]
    size = shift = 0
    while True:
        byte = exact(1)[0]
        size |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return kind, exact(size)


def mqtt_connect(port: int, user: str | None, password: str | None) -> tuple[socket.socket, int]:
    """CONNECT (clean session) and the CONNACK return code: 0 accepted, 4 bad user name or password, 5 not
    authorised."""
    flags = 0x02 | (0xC0 if user is not None else 0)
    payload = _mqtt_str(f"shim-check-{uuid.uuid4().hex[:8]}")
    payload += _mqtt_str(user) + _mqtt_str(password) if user is not None else b""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(_mqtt_packet(0x10, _mqtt_str("MQTT") + bytes([4, flags]) + (30).to_bytes(2, "big") + payload))
    try:
        kind, body = _mqtt_read(sock)
    except (ConnectionError, socket.timeout):
        return sock, -1
    return sock, body[1] if kind == 0x20 else -1


def mqtt_deliveries(port: int, user: str, password: str, topic: str, sizes: tuple[int, ...]) -> list[int]:
    """Publish one QoS 0 message of each size, each from its own connection (Mosquitto may drop a client whose
    publish it refuses), then a 1-byte marker; return the sizes a subscriber received before the marker."""
    sub, code = mqtt_connect(port, user, password)
    heard: list[int] = []
    try:
        if code:
            raise Failure(f"Mosquitto refused the Secret's user (CONNACK {code})")
        sub.sendall(_mqtt_packet(0x82, (1).to_bytes(2, "big") + _mqtt_str(topic) + b"\x00"))
        if _mqtt_read(sub)[0] != 0x90:
            raise Failure("no SUBACK from Mosquitto")
        for size in (*sizes, 1):
            pub, code = mqtt_connect(port, user, password)
            try:
                pub.sendall(_mqtt_packet(0x30, _mqtt_str(topic) + b"x" * size) + _mqtt_packet(0xC0, b""))
                _mqtt_read(pub)  # PINGRESP: the broker has handled the publish (or it closed the connection)
            except (OSError, ConnectionError):
                pass
            finally:
                pub.close()
        end = time.monotonic() + 5
        while time.monotonic() < end:
            kind, body = _mqtt_read(sub)
            if kind >> 4 == 3:
                size = len(body) - 2 - int.from_bytes(body[:2], "big")
                if size == 1:
                    return heard
                heard.append(size)
        raise Failure("the marker publish never arrived")
    finally:
        sub.close()


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------

class Run:
    def __init__(self, cluster: Cluster, work: Path, shim_dir: Path):
        self.cluster, self.work = cluster, work
        (work / "logs").mkdir(parents=True)
        self.ctrd = Containerd(work, shim_dir)
        self.redis_port = free_port()
        self.mqtt_port = free_port()
        self.procs: list[Proc] = []
        self.redis_cmd: list[str] = []
        self.redis_proc: Proc | None = None
        self.mosquitto: Proc | None = None
        self.failures: list[str] = []
        self.results: list[str] = []

    # -- brokers, configured as deploy/k8s/base configures them, on loopback ------------------------
    def start_brokers(self) -> None:
        args = [a for a in self.cluster.redis_args if a != "redis-server"]
        if "--dir" in args:  # the PersistentVolumeClaim's mount -> a folder of this run
            (self.work / "redis-data").mkdir()
            args[args.index("--dir") + 1] = str(self.work / "redis-data")
        self.redis_cmd = [which("redis-server") or "redis-server", *args, "--port", str(self.redis_port),
                          "--bind", "127.0.0.1"]
        self.start_redis()
        conf = re.sub(r"^listener\s+\d+\s*$", f"listener {self.mqtt_port} 127.0.0.1",
                      self.cluster.mosquitto_conf, flags=re.MULTILINE)
        if f"listener {self.mqtt_port}" not in conf:
            raise Failure("deploy/k8s/base/mosquitto.yaml: no `listener <port>` line to map to loopback")
        # The password file, written by the init container's own script, with its volume mapped to a folder.
        argv, env, mount = self.cluster.mosquitto_init
        auth = self.work / "mosquitto-auth"
        auth.mkdir()
        done = subprocess.run([a.replace(mount, str(auth)) for a in argv], capture_output=True, text=True,
                              timeout=30, env={"PATH": os.environ.get("PATH", "") + ":/usr/sbin", **env})
        if done.returncode != 0:
            raise Failure(f"the mosquitto init container's script failed: {done.stderr.strip()[-400:]}")
        conf = conf.replace(mount, str(auth))
        # The subscribe lines of the log show when a trigger (re)subscribes.
        conf = conf.replace("log_dest stdout", "log_dest stdout\nlog_type error\nlog_type warning\n"
                            "log_type notice\nlog_type information\nlog_type subscribe")
        if "log_type subscribe" not in conf:
            raise Failure("deploy/k8s/base/mosquitto.yaml: no `log_dest stdout` line to extend")
        (self.work / "mosquitto.conf").write_text(conf)
        self.start_mosquitto()
        wait_port(self.redis_port)

    def brokers_refuse_strangers(self) -> None:
        """What deploy/k8s/base promises of the brokers, on the real ones: Redis and Mosquitto refuse a client
        without the password (and Mosquitto a wrong one), and Mosquitto delivers a publish within
        message_size_limit to a subscriber but never a larger one."""
        label = "brokers"
        problems = []
        anonymous = subprocess.run([which("redis-cli") or "redis-cli", "-p", str(self.redis_port), "SET", "k", "v"],
                                   capture_output=True, text=True, timeout=10, env={"PATH": os.environ["PATH"]})
        if "NOAUTH" not in anonymous.stdout + anonymous.stderr:
            problems.append(f"Redis took a write without the password: {anonymous.stdout.strip()!r}")
        user, password = self.cluster.secrets["mqtt_username"], self.cluster.secrets["mqtt_password"]
        codes = {who: mqtt_connect(self.mqtt_port, *cred)[1]
                 for who, cred in (("anonymous", (None, None)), ("wrong password", (user, password + "x")),
                                   ("the Secret's user", (user, password)))}
        if codes != {"anonymous": 5, "wrong password": 5, "the Secret's user": 0} and \
                codes != {"anonymous": 5, "wrong password": 4, "the Secret's user": 0}:
            problems.append(f"Mosquitto CONNACK codes {codes} (want 5 or 4 refused, 0 for the Secret's user)")
        limit = int(re.search(r"^message_size_limit\s+(\d+)", self.cluster.mosquitto_conf, re.MULTILINE).group(1))
        sizes = (limit, limit + 1, 64 * 1024)
        heard = mqtt_deliveries(self.mqtt_port, user, password, "shim-check/size", sizes)
        log(f"{label}: Redis without the password -> {(anonymous.stdout + anonymous.stderr).strip()[:60]!r}; "
            f"Mosquitto CONNACK {codes}; of publishes of {sizes} bytes (message_size_limit {limit}) a "
            f"subscriber heard {heard}")
        if heard != [limit]:
            problems.append(f"Mosquitto delivered {heard} of {sizes} bytes with message_size_limit {limit}")
        self.record(label, problems)

    def start_redis(self) -> None:
        self.redis_proc = Proc("redis", self.redis_cmd, self.work / "logs/redis.log").start()
        self.procs.append(self.redis_proc)
        wait_port(self.redis_port)

    def start_mosquitto(self) -> None:
        # stdbuf: mosquitto's stdout is a file here, which stdio would flush only at exit.
        self.mosquitto = Proc("mosquitto", ["stdbuf", "-oL", which("mosquitto") or "mosquitto", "-c",
                                            str(self.work / "mosquitto.conf")],
                              self.work / "logs/mosquitto.log").start()
        self.procs.append(self.mosquitto)
        wait_port(self.mqtt_port)

    def redis_cli(self, *args: str) -> str:
        env = {"PATH": os.environ["PATH"], "REDISCLI_AUTH": self.cluster.secrets["redis_password"]}
        return subprocess.run([which("redis-cli") or "redis-cli", "-p", str(self.redis_port), *args],
                              capture_output=True, text=True, timeout=10, check=True, env=env).stdout.strip()

    def mosquitto_log(self) -> str:
        return (self.work / "logs/mosquitto.log").read_text(errors="replace")

    # -- apps ------------------------------------------------------------------------------------------
    def local_address(self, value: str) -> str:
        """A cluster Service address of the manifests -> the loopback broker standing in for it."""
        url = urllib.parse.urlsplit(value)
        for service, port in self.cluster.services.items():
            if url.hostname == f"{service}.{self.cluster.namespace}.svc.cluster.local" and url.port == port:
                local = self.redis_port if service == "redis" else self.mqtt_port
                userinfo = url.netloc.rpartition("@")[0]
                netloc = f"{userinfo}@127.0.0.1:{local}" if userinfo else f"127.0.0.1:{local}"
                return urllib.parse.urlunsplit(url._replace(netloc=netloc))
        if url.hostname and url.hostname.endswith(".svc.cluster.local"):
            raise Failure(f"the manifests name {value}, which is no Service of deploy/k8s/base")
        return value

    def runtime_config(self) -> Path:
        doc = tomllib.loads(self.cluster.runtime_config)
        text = self.cluster.runtime_config
        for store in doc.get("key_value_store", {}).values():
            if "url" in store:
                text = text.replace(store["url"], self.local_address(store["url"]))
        path = self.work / "runtime-config.toml"
        path.write_text(text)
        return path

    def start_app(self, app: App, suffix: str, store: str = "redis") -> tuple[str, int | None]:
        """Run one app on the shim as its Deployment would; return the container id and HTTP port."""
        cid = f"{app.name}-{suffix}"
        env = {k: self.local_address(v) for k, v in app.env.items()}
        port = None
        if app.http:
            port = free_port()
            env["SPIN_HTTP_LISTEN_ADDR"] = f"127.0.0.1:{port}"
        mounts = {SHIM_RUNTIME_CONFIG_PATH: self.runtime_config()} if store == "redis" else {}
        self.ctrd.run(cid, app.image, env, mounts)
        if app.http:
            assert app.probe_path and port
            wait_health(port, app.probe_path, self.ctrd, cid)
        return cid, port

    def wait_subscribed(self, what: str, subscribed, cid: str) -> None:
        """Until `subscribed()` holds; fails at once if the container `cid` stops."""
        end = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < end:
            if subscribed():
                return
            if self.ctrd.task_status(cid) != "RUNNING":
                break
            time.sleep(0.2)
        raise Failure(f"{cid}: {what} (task {self.ctrd.task_status(cid)}); "
                      f"containerd log: {tail_log(self.work / 'logs/containerd.log', 600)}")

    def wait_redis_subscriber(self, channel: str, cid: str) -> None:
        def subscribed() -> bool:
            out = self.redis_cli("PUBSUB", "NUMSUB", channel).split()
            return len(out) == 2 and int(out[1]) >= 1
        self.wait_subscribed(f"no subscriber on Redis channel {channel}", subscribed, cid)

    def mqtt_subscriptions(self, topic: str) -> int:
        return len(re.findall(rf"^\d+: \S+ \d {re.escape(topic)}$", self.mosquitto_log(), re.MULTILINE))

    def wait_mqtt_subscriber(self, topic: str, cid: str, before: int) -> None:
        self.wait_subscribed(f"did not subscribe to MQTT topic {topic}",
                             lambda: self.mqtt_subscriptions(topic) > before, cid)

    def variable(self, app: App, name: str) -> str:
        env = app.env.get("SPIN_VARIABLE_" + name.upper())
        return env or tomllib.loads(app.manifest.read_text())["variables"][name]["default"]

    def record(self, label: str, problems: list[str]) -> None:
        self.failures += [f"{label}: {p}" if not p.startswith(label) else p for p in problems]
        self.results.append(f"{label}: {'PASS' if not problems else 'FAIL'}")

    # -- shapes ------------------------------------------------------------------------------------------
    def composed(self) -> None:
        (app,) = self.cluster.apps["composed"]
        for store in ("redis", "embedded"):
            label = f"composed ({'store in Redis via ' + SHIM_RUNTIME_CONFIG_PATH if store == 'redis' else 'embedded store'})"
            t0 = time.monotonic()
            keys_before = int(self.redis_cli("DBSIZE"))
            cid, port = self.start_app(app, store, store)
            assert port
            dbsize = (lambda: int(self.redis_cli("DBSIZE"))) if store == "redis" else None
            problems = contract(port, label, count_keys=dbsize)
            load_problems, _ = load(port, label)
            problems += load_problems + self.sweep_after_load(app, port, label)
            if store == "redis":
                problems += self.full_store(port, label)
            keys_after = int(self.redis_cli("DBSIZE"))
            if store == "redis" and keys_after - keys_before < ORDERS:
                problems.append(f"Redis holds {keys_after - keys_before} new keys, fewer than the {ORDERS} "
                                "orders: the runtime config did not reach the app")
            if store == "embedded" and keys_after != keys_before:
                problems.append(f"Redis gained {keys_after - keys_before} keys without a runtime config")
            self.ctrd.remove(cid)
            self.record(label, problems)
            log(f"{label}: {time.monotonic() - t0:.1f} s")
        self.record("composed (Spin's pool env)", self.pool_env_reaches_spin(app))

    def full_store(self, port: int, label: str) -> list[str]:
        """Redis full (maxmemory set just under what it holds, noeviction as in k8s/base): a new order is
        refused with a JSON 503 and nothing of it is written; with room again, orders are accepted."""
        limit = self.redis_cli("CONFIG", "GET", "maxmemory").split()[-1]
        policy = self.redis_cli("CONFIG", "GET", "maxmemory-policy").split()[-1]
        keys = int(self.redis_cli("DBSIZE"))
        self.redis_cli("CONFIG", "SET", "maxmemory", "1")
        try:
            status, headers, body = request(port, "POST", "/order", b'{"details": "into a full store"}', JSON)
        finally:
            self.redis_cli("CONFIG", "SET", "maxmemory", limit)
        after = int(self.redis_cli("DBSIZE"))
        again, location, _ = post_order(port, "once the store has room again")
        log(f"{label}: Redis full (maxmemory-policy {policy}): POST /order -> {status} {body[:120]!r}, "
            f"keys {keys} -> {after}; with room again -> {again}")
        try:
            error = json.loads(body).get("error")
        except ValueError:
            error = None
        problems = []
        if status != 503 or "json" not in headers.get("content-type", "") or not error:
            problems.append(f"a full store answered {status} {body[:120]!r} (want 503 with a JSON error)")
        if after != keys:
            problems.append(f"the refused order left {after - keys} keys in Redis")
        if again != 202 or not location:
            problems.append(f"with room again POST /order answered {again}")
        return problems

    def pool_env_reaches_spin(self, app: App) -> list[str]:
        """The Deployment's pool environment reaches Spin's engine inside the shim: with one linear memory
        fewer than one instance needs, the same image answers an empty 500 (Spin cannot instantiate); with the
        Deployment's own values it served the load above."""
        need = pool_needs(app.name)["SPIN_WASMTIME_TOTAL_MEMORIES"]
        short = App(**{**app.__dict__, "env": {**app.env, "SPIN_WASMTIME_TOTAL_MEMORIES": str(need - 1)}})
        cid, port = self.start_app(short, "pool", "embedded")
        assert port
        status, _, body = request(port, "GET", f"/order/{uuid.uuid4()}")
        self.ctrd.remove(cid)
        log(f"composed with SPIN_WASMTIME_TOTAL_MEMORIES={need - 1} (one instance needs {need}): "
            f"GET /order/<id> -> {status} {body[:80]!r}")
        if status != 500 or body:
            return [f"with {need - 1} memories Spin answered {status} {body[:80]!r}: the shim did not read the "
                    "pool's environment (want an empty 500)"]
        return []

    def redis(self) -> None:
        order_app, fulfilment = self.pair("redis")
        label = "redis shape (order-app-redis + fulfilment-redis, Redis trigger)"
        t0 = time.monotonic()
        channel = self.variable(fulfilment, "orders_channel")
        fid, oid, port = self.start_shape(order_app, fulfilment, "run",
                                          lambda cid: self.wait_redis_subscriber(channel, cid))
        problems = contract(port, label, networked=True, count_keys=lambda: int(self.redis_cli("DBSIZE")))
        load_problems, placed = load(port, label)
        problems += load_problems + self.sweep_after_load(order_app, port, label)
        if not problems:
            problems += self.redis_restart(order_app, fulfilment, fid, port, placed)
        self.end_shape(label, t0, oid, fulfilment, problems)

    def start_shape(self, order_app: App, fulfilment: App, run: str, wait_listening) -> tuple[str, str, int]:
        """Starts a networked shape: its fulfilment app (container suffix `run`), which
        `wait_listening(container id)` waits for, then its order app. Both container ids and the
        order app's port."""
        fid, _ = self.start_app(fulfilment, run)
        wait_listening(fid)
        oid, port = self.start_app(order_app, "run")
        assert port
        return fid, oid, port

    def end_shape(self, label: str, t0: float, oid: str, fulfilment: App, problems: list[str]) -> None:
        """Removes a networked shape's containers (every fulfilment container a restart left) and
        records its problems."""
        self.ctrd.remove(oid)
        for cid in [c for c in self.ctrd.containers if c.startswith(fulfilment.name)]:
            self.ctrd.remove(cid)
        self.record(label, problems)
        log(f"{label}: {time.monotonic() - t0:.1f} s")

    def redis_restart(self, order_app: App, fulfilment: App, fid: str, port: int, placed: list[str]) -> list[str]:
        """Restart Redis under the running apps. The store is kept (the AOF of k8s/base, fsynced before
        each write is acknowledged): every order placed before is still there, fulfilled. The Redis trigger
        ends its container, which a kubelet restarts; the sweep then publishes again what was accepted while
        nothing listened."""
        label = "redis restart"
        channel = self.variable(fulfilment, "orders_channel")
        assert self.redis_proc
        keys = int(self.redis_cli("DBSIZE"))
        self.redis_proc.stop()
        self.procs.remove(self.redis_proc)
        self.start_redis()
        wait_port(self.redis_port)
        kept_keys = int(self.redis_cli("DBSIZE"))
        kept = wait_fulfilled(port, placed, 10)
        log(f"{label}: Redis restarted from its AOF: {kept_keys} of {keys} keys; of the {len(placed)} orders "
            f"of the load, {len(kept)} still answered `fulfilled`")
        end = time.monotonic() + 15
        while time.monotonic() < end and self.ctrd.task_status(fid) == "RUNNING":
            time.sleep(0.2)
        status = self.ctrd.task_status(fid)
        log(f"{label}: Redis restarted; the fulfilment container is {status}")
        problems = []
        if kept_keys != keys or len(kept) != len(placed):
            problems.append(f"{label}: Redis came back with {kept_keys} of {keys} keys, {len(kept)} of "
                            f"{len(placed)} orders fulfilled: the store did not persist")
        if status == "RUNNING":
            # Pinned, because deploy/README.md says the kubelet's restart covers this case.
            problems.append(f"{label}: deploy/README.md says the Redis trigger ends its container when Redis "
                            "goes away, and this one kept running; update the README")
        unheard, placed_at = [], time.monotonic()
        for i in range(5):
            status_code, location, _ = post_order(port, f"placed while fulfilment-redis is down #{i}")
            if status_code == 202 and location:
                unheard.append(location)
        # What the kubelet does with a container that ended (restartPolicy Always).
        self.ctrd.remove(fid)
        nid, _ = self.start_app(fulfilment, "run2")
        self.wait_redis_subscriber(channel, nid)
        before = wait_fulfilled(port, unheard, 0)
        sweep = self.sweep(order_app, port, placed_at)
        rescued = wait_fulfilled(port, unheard, 15)
        log(f"{label}: {len(unheard)} of 5 orders accepted while nothing listened; fulfilment container "
            f"restarted ({len(before)} of them fulfilled by then); the CronJob's sweep -> "
            f"{sweep[0] if sweep else 'none'}; {len(rescued)} fulfilled")
        if len(unheard) != 5:
            problems.append(f"{label}: the order app accepted {len(unheard)} of 5 orders after Redis came back")
        if sweep is not None and len(rescued) != len(unheard):
            problems.append(f"{label}: {len(unheard) - len(rescued)} orders still not fulfilled after the "
                            "restart and the sweep")
        return problems

    def mqtt(self) -> None:
        order_app, fulfilment = self.pair("mqtt")
        label = "mqtt shape (order-app-mqtt + fulfilment-mqtt, MQTT trigger v0.7.2 in the shim)"
        t0 = time.monotonic()
        topic = self.variable(fulfilment, "orders_topic")
        problems = self.mqtt_trigger_without_broker(fulfilment)
        fid, oid, port = self.start_shape(order_app, fulfilment, "run1",
                                          lambda cid: self.wait_mqtt_subscriber(topic, cid, 0))
        problems += contract(port, label, networked=True, count_keys=lambda: int(self.redis_cli("DBSIZE")))
        if not problems:
            problems += load(port, label)[0]
            problems += self.sweep_after_load(order_app, port, label)
        if not problems:
            problems += self.mqtt_broker_restart(order_app, fulfilment, fid, port, topic)
        self.end_shape(label, t0, oid, fulfilment, problems)

    def mqtt_trigger_without_broker(self, fulfilment: App) -> list[str]:
        """The trigger started while Mosquitto is down must end its container, so that the kubelet
        restarts it until the broker answers (deploy/README.md relies on that)."""
        label = "mqtt trigger without a broker"
        assert self.mosquitto
        self.mosquitto.stop()
        self.procs.remove(self.mosquitto)
        cid, _ = self.start_app(fulfilment, "nobroker")
        end = time.monotonic() + 20
        while time.monotonic() < end and self.ctrd.task_status(cid) == "RUNNING":
            time.sleep(0.2)
        status = self.ctrd.task_status(cid)
        self.ctrd.remove(cid)
        self.start_mosquitto()
        log(f"{label}: the fulfilment container started with Mosquitto down is {status} "
            f"({'it exits, so a kubelet would restart it' if status != 'RUNNING' else 'still running after 20 s'})")
        return [] if status != "RUNNING" else [f"{label}: the container kept running without a broker"]

    def mqtt_broker_restart(self, order_app: App, fulfilment: App, fid: str, port: int, topic: str) -> list[str]:
        """Restart Mosquitto under the running apps; show what the trigger does, then the recovery."""
        label = "mqtt broker restart"
        subs = self.mqtt_subscriptions(topic)
        assert self.mosquitto
        self.mosquitto.stop()
        self.procs.remove(self.mosquitto)
        log(f"{label}: Mosquitto stopped; starting it again on the same port")
        self.start_mosquitto()
        time.sleep(2)  # room for a trigger that reconnects on its own
        deaf = []
        refused = 0
        placed_at = time.monotonic()
        for i in range(5):
            status, location, _ = post_order(port, f"placed after the broker restart #{i}")
            if status == 202 and location:
                deaf.append(location)
            else:
                refused += 1
        fulfilled = wait_fulfilled(port, deaf, 10)
        resubscribed = self.mqtt_subscriptions(topic) > subs
        running = self.ctrd.task_status(fid)
        log(f"{label}: the fulfilment container is {running}; the trigger "
            f"{'re-subscribed' if resubscribed else 'did not reconnect (no new subscription in the broker log)'}; "
            f"of 5 orders placed after the restart {len(deaf)} accepted ({refused} refused), "
            f"{len(fulfilled)} fulfilled within 10 s")
        problems = []
        if refused:
            problems.append(f"{label}: the order app refused {refused} of 5 orders after the broker came back")
        if resubscribed or fulfilled or running != "RUNNING":
            # Pinned, because deploy/README.md and the mqtt manifests tell operators to restart the pod.
            problems.append(f"{label}: deploy/README.md says the trigger keeps running deaf after a broker "
                            "restart, and this one did not; update the README and the mqtt manifests' comments")
        # The recovery deploy/README.md documents: restart the fulfilment container (the pod, in a cluster).
        self.ctrd.remove(fid)
        nid, _ = self.start_app(fulfilment, "run2")
        self.wait_mqtt_subscriber(topic, nid, self.mqtt_subscriptions(topic))
        log(f"{label}: fulfilment container restarted; it subscribed again")
        stranded = [loc for loc in deaf if loc not in fulfilled]
        sweep = self.sweep(order_app, port, placed_at)
        if sweep is not None:
            log(f"{label}: the CronJob's {' '.join(order_app.sweep[:2]) if order_app.sweep else ''} -> {sweep[0]} {sweep[1][:200]!r}")
        rescued = wait_fulfilled(port, stranded, 15 if sweep is not None else 3)
        log(f"{label}: of the {len(stranded)} orders placed while the trigger was deaf, {len(rescued)} "
            f"fulfilled after the restart{' and the sweep' if sweep is not None else ' (the shape has no sweep CronJob)'}")
        if sweep is not None and (sweep[0] // 100 != 2 or len(rescued) != len(stranded)):
            # With a sweeper, restart + sweep is the whole recovery: nothing may stay behind.
            problems.append(f"{label}: after the restart and the sweep ({sweep[0]}), "
                            f"{len(stranded) - len(rescued)} of {len(stranded)} stranded orders are still not fulfilled")
        after, _ = load(port, f"{label}, after the recovery", 50)
        return problems + after

    def sweep(self, order_app: App, port: int, placed_at: float | None = None) -> tuple[int, bytes] | None:
        """The request of the shape's sweep CronJob (`curl -X POST -H 'Authorization: Bearer <token>'`: no
        body, no content type), once the app's grace period has passed for orders placed at `placed_at`; None
        when the shape has none."""
        if order_app.sweep is None:
            return None
        declared = tomllib.loads(order_app.manifest.read_text()).get("variables", {})
        if placed_at is not None and "sweep_grace_ms" in declared:
            grace_s = int(self.variable(order_app, "sweep_grace_ms")) / 1000
            time.sleep(max(0.0, placed_at + grace_s + 0.5 - time.monotonic()))
        method, path, headers = order_app.sweep
        status, _, body = request(port, method, path, headers=headers)
        return status, body

    def sweep_refused_without_token(self, order_app: App, port: int, label: str) -> list[str]:
        """The same request without the CronJob's Authorization header, or with another token: refused."""
        if order_app.sweep is None:
            return []
        method, path, _ = order_app.sweep
        answers = [request(port, method, path)[0],
                   request(port, method, path, headers={"Authorization": "Bearer not-the-token"})[0]]
        log(f"{label}: {method} {path} without the token -> {answers[0]}, with another token -> {answers[1]}")
        if any(a not in (401, 403) for a in answers):
            return [f"{method} {path} without the CronJob's token answered {answers} (want 401 or 403)"]
        return []

    def sweep_after_load(self, order_app: App, port: int, label: str) -> list[str]:
        """After a load with nothing lost, the CronJob's sweep answers 200 with its JSON report and
        finds nothing to publish again."""
        done = self.sweep(order_app, port)
        if done is None:
            return []
        refused = self.sweep_refused_without_token(order_app, port, label)
        status, body = done
        try:
            report = json.loads(body)
        except ValueError:
            report = {}
        log(f"{label}: the CronJob's {' '.join(order_app.sweep[:2]) if order_app.sweep else ''} -> {status} {body[:200]!r}")
        if status != 200 or not isinstance(report, dict) or report.get("failed") != 0:
            return refused + [f"the CronJob's sweep -> {status} {body[:200]!r} (want 200 and a report with failed 0)"]
        return refused

    def pair(self, shape: str) -> tuple[App, App]:
        apps = self.cluster.apps[shape]
        http_apps = [a for a in apps if a.http]
        others = [a for a in apps if not a.http]
        if len(http_apps) != 1 or len(others) != 1:
            raise Failure(f"shape {shape}: expected one HTTP app and one fulfilment app in shapes.toml")
        return http_apps[0], others[0]

    def stop(self) -> None:
        try:
            self.ctrd.stop()
        finally:
            for proc in reversed(self.procs):
                proc.stop()


def preflight() -> Path:
    """The shim's folder, or Skip with the reason this machine cannot run the check."""
    if os.environ.get("NANO_SHIM_CHECK") == "skip":
        raise Skip("NANO_SHIM_CHECK=skip")
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise Skip(f"needs Linux x86_64 (the shim binary's platform); this is {platform.system()} {platform.machine()}")
    if os.geteuid() != 0:
        raise Skip("needs root (containerd and the shim create namespaces and cgroups)")
    if os.environ.get("NANO_SHIM_DIR"):
        shim_dir = Path(os.environ["NANO_SHIM_DIR"])
    elif SHIM_UNPACK.exists():
        done = subprocess.run(["bash", str(SHIM_UNPACK)], capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise Skip(f"{SHIM_UNPACK} failed: {done.stderr.strip()}")
        shim_dir = Path(done.stdout.strip().splitlines()[-1])
    elif which("containerd-shim-spin-v2"):
        shim_dir = Path(which("containerd-shim-spin-v2") or "").parent
    else:
        raise Skip(f"no containerd-shim-spin-v2 (not at {SHIM_UNPACK}, NANO_SHIM_DIR unset, none on PATH)")
    if not (shim_dir / "containerd-shim-spin-v2").is_file():
        raise Skip(f"{shim_dir} holds no containerd-shim-spin-v2")
    wanted = {"containerd": "containerd", "ctr": "containerd", "runc": "runc", "buildah": "buildah",
              "redis-server": "redis-server", "redis-cli": "redis-server", "mosquitto": "mosquitto"}
    missing = sorted({pkg for binary, pkg in wanted.items() if not which(binary)})
    has_seccomp = "libseccomp.so.2" in subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    if not has_seccomp:
        missing.append("libseccomp2")
    if missing:
        if not which("apt-get"):
            raise Skip(f"{', '.join(missing)} missing and no apt-get to install them")
        log(f"installing {' '.join(missing)} with apt-get")
        try:
            for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
                subprocess.run(cmd, check=True, timeout=600, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        except (subprocess.SubprocessError, OSError) as err:
            raise Skip(f"{', '.join(missing)} missing and apt-get could not install them ({err})")
        still = [b for b in wanted if not which(b)]
        if still:
            raise Skip(f"{', '.join(still)} still missing after apt-get")
    return shim_dir


def contract_only(argv: list[str]) -> int:
    """`shim_check.py contract PORT [SQLITE_DB]`: only the wire contract, against an app already serving on
    127.0.0.1:PORT (e.g. `nanohost up`), counting the keys of its SQLite store if given. No root needed."""
    port = int(argv[0])
    count_keys = None
    if len(argv) > 1:
        import sqlite3
        db = argv[1]

        def count_keys() -> int:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                return conn.execute("SELECT COUNT(*) FROM spin_key_value").fetchone()[0]
    problems = contract(port, f"127.0.0.1:{port}", count_keys=count_keys)
    for problem in problems:
        print(f"  {problem}")
    return 1 if problems else 0


def main() -> int:
    if sys.argv[1:2] == ["contract"]:
        return contract_only(sys.argv[2:])
    t0 = time.monotonic()
    try:
        shim_dir = preflight()
    except Skip as skip:
        print(f"shim check SKIPPED: {skip}", flush=True)
        return 0
    try:
        cluster = read_cluster()
    except Failure as failure:
        print(f"shim check FAILED: {failure}", flush=True)
        return 1
    log(f"read deploy/k8s: {sum(len(a) for a in cluster.apps.values())} apps, runtime config at "
        f"{SHIM_RUNTIME_CONFIG_PATH}")
    runs = ROOT / "target/shim-check"
    runs.mkdir(parents=True, exist_ok=True)
    work = runs / f"{os.getpid()}-{int(time.time())}"
    run = Run(cluster, work, shim_dir)

    def on_signal(signum, _frame):
        raise SystemExit(f"interrupted by signal {signum}")

    def on_alarm(_signum, _frame):
        raise Failure(f"the check ran over its {RUN_LIMIT_S} s limit")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    # Every wait is bounded on its own; this bounds their sum, so the test command cannot hang here.
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(RUN_LIMIT_S)
    started = time.monotonic()
    try:
        run.ctrd.start()
        run.start_brokers()
        log(f"containerd {work}/containerd.sock, shim {shim_dir}, Redis 127.0.0.1:{run.redis_port}, "
            f"Mosquitto 127.0.0.1:{run.mqtt_port}")
        try:
            run.brokers_refuse_strangers()
        except (Failure, OSError, ConnectionError) as failure:
            run.record("brokers", [str(failure)])
        t1 = time.monotonic()
        for apps in cluster.apps.values():
            for app in apps:
                build_image(app, work, run.ctrd)
        log(f"built and imported {sum(len(a) for a in cluster.apps.values())} images with buildah "
            f"({time.monotonic() - t1:.1f} s)")
        for shape in (run.composed, run.redis, run.mqtt):
            if time.monotonic() - started > RUN_LIMIT_S:
                run.record(shape.__name__ + " shape", ["not run: the time limit was reached"])
                continue
            try:
                shape()
            except Failure as failure:
                run.record(shape.__name__ + " shape", [str(failure)])
            except Exception as error:  # a bug of this script still fails the check, and cleans up
                run.record(shape.__name__ + " shape", [f"{type(error).__name__}: {error}"])
    except Failure as failure:
        run.failures.append(str(failure))
    except Exception as error:  # a bug of this script still fails the check, and cleans up
        run.failures.append(f"{type(error).__name__}: {error}")
    finally:
        signal.alarm(0)
        run.stop()
    for line in run.results:
        print(f"shim check {line}")
    elapsed = time.monotonic() - t0
    if run.failures:
        print("shim check FAILED:\n  " + "\n  ".join(run.failures), flush=True)
        remove_run_dir(work, keep_logs=True)
        print(f"shim check: logs kept in {work.relative_to(ROOT)}/logs ({elapsed:.0f} s)", flush=True)
        return 1
    remove_run_dir(work)
    print(f"shim check PASSED in {elapsed:.0f} s", flush=True)
    return 0


def remove_run_dir(work: Path, keep_logs: bool = False) -> None:
    """Delete the run's directory (all but its logs after a failure), unless something is still mounted
    below it; and the directories of earlier runs whose process is gone, but the newest three."""
    mounts = Path("/proc/self/mounts").read_text().split("\n")
    if any(f" {work}/" in m or f" {work} " in m for m in mounts):
        log(f"{work} still has mounts; leaving it in place")
        return
    if keep_logs:
        for child in work.iterdir():
            if child.name != "logs":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    else:
        shutil.rmtree(work, ignore_errors=True)
    earlier = sorted((d for d in work.parent.iterdir() if d.is_dir() and d != work),
                     key=lambda d: d.stat().st_mtime)
    for old in earlier[:-3]:
        pid = old.name.split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists() and not any(f" {old}/" in m for m in mounts):
            shutil.rmtree(old, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
