#!/usr/bin/env python3
"""Measure what one instance of each HTTP-routed component takes from Spin's instance pool, on real Spin.

    SPIN_BIN=../shared/tools/spin/spin python3 deploy/tools/measure_pool.py    (after `cargo xtask build`)

For each (app, route, pool total) it starts `spin up` with SPIN_WASMTIME_POOLING=1, one instance
(SPIN_MAX_INSTANCE_COUNT=1) and that total set to k, every other total generous, and sends one request:
an empty 500 means Spin could not instantiate the component. The smallest k that serves it is the need. Core
instances include the adapter modules wasmtime generates between composed components, which no reading of
the .wasm shows; that is why this runs Spin. Prints one JSON line per component; deploytree.POOL_MEASURED
holds the result and the offline check compares it with what the built .wasm defines.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPIN = os.environ.get("SPIN_BIN", str(ROOT.parent / "shared/tools/spin/spin"))
TOTALS = {"memories": "SPIN_WASMTIME_TOTAL_MEMORIES", "core_instances": "SPIN_WASMTIME_TOTAL_CORE_INSTANCES",
          "tables": "SPIN_WASMTIME_TOTAL_TABLES"}
# (app, manifest, component, method, path): one request that instantiates the component.
PROBES = [
    ("order-app", "spin.toml", "order-app", "GET", f"/order/{uuid.uuid4()}"),
    ("order-app", "spin.toml", "sweeper", "POST", "/sweep"),
    ("order-app-mqtt", "apps/order-app-mqtt/spin.toml", "order-app", "GET", f"/order/{uuid.uuid4()}"),
    ("order-app-mqtt", "apps/order-app-mqtt/spin.toml", "sweeper", "POST", "/sweep"),
    ("order-app-redis", "apps/order-app-redis/spin.toml", "order-app", "GET", f"/order/{uuid.uuid4()}"),
    ("order-app-redis", "apps/order-app-redis/spin.toml", "sweeper", "POST", "/sweep"),
    # The fulfilment of the MQTT and Redis apps is the same composition behind another listener; its HTTP
    # twin is what a request can reach.
    ("fulfilment-http", "apps/fulfilment-http/spin.toml", "fulfilment", "POST", "/fulfil"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serves(manifest: str, method: str, path: str, env: dict[str, str], state: str) -> bool:
    port = free_port()
    proc = subprocess.Popen([SPIN, "up", "-f", str(ROOT / manifest), "--listen", f"127.0.0.1:{port}",
                             "--state-dir", state], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                             data=b"{}" if method == "POST" else None)
                with urllib.request.urlopen(req, timeout=10) as resp:
                    return True
            except urllib.error.HTTPError as err:
                return not (err.code == 500 and not err.read())
            except OSError:
                if proc.poll() is not None:
                    raise SystemExit(f"spin up {manifest} exited {proc.returncode}")
                time.sleep(0.2)
        raise SystemExit(f"spin up {manifest}: no answer in 30 s")
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(10)


def main() -> int:
    results = []
    with tempfile.TemporaryDirectory() as state:
        for app, manifest, component, method, path in PROBES:
            need = {}
            for kind, var in TOTALS.items():
                base = {"SPIN_WASMTIME_POOLING": "1", "SPIN_MAX_INSTANCE_COUNT": "1",
                        **{v: "1000" for v in TOTALS.values()}}
                lo, hi = 0, 200  # lo fails, hi serves
                if not serves(manifest, method, path, {**base, var: str(hi)}, state):
                    raise SystemExit(f"{app} {component}: not served even with {var}={hi}")
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    lo, hi = (lo, mid) if serves(manifest, method, path, {**base, var: str(mid)}, state) else (mid, hi)
                need[kind] = hi
            results.append({"app": app, "component": component, **need})
            print(json.dumps(results[-1]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
