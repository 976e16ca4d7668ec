"""Placement from one manifest on SpinKube (issue 21 item 3): the SpinApps of spinkube/placements/* run the one
image of apps/placements/spin.toml, each keeping some of its components with `spec.components` (spin-operator
v0.6.1 hands them to the shim as SPIN_COMPONENTS_TO_RETAIN, which containerd-shim-spin v0.24.0 applies with
Spin's retain_components). The general checks (CRD schema, admission, Services, addresses, Secrets) run on
these kustomizations as on every other; these cases add what only a placement has. Nothing here starts the
operator or the shim."""
import sys
import tomllib
from urllib.parse import urlsplit

import pytest

from conftest import KUSTOMIZATIONS, nanohost_check, render, runtime_config, sweep_request, variables
from deploytree import CONFIG, DEPLOY, ROOT, image_ref, of_kind
from test_manifests import address_problem, services

sys.path.insert(0, str(DEPLOY / "oci"))
import stage  # noqa: E402

MANIFEST = ROOT / "apps/placements/spin.toml"
PLACEMENT_DIRS = [d for d in KUSTOMIZATIONS if d.startswith("spinkube/placements/")]
# The placements docs/spin-dependencies.md documents and host/tests/spin_native.rs runs on nanohost and Spin:
# directory -> the component ids of each SpinApp.
PLACEMENTS = {
    "spinkube/placements/together": [{"order-app", "sweeper"}],
    "spinkube/placements/apart": [{"order-http", "sweeper-http"}, {"fulfilment-http"}],
}
# What a client and the sweep CronJob reach: each served by exactly one SpinApp of a placement.
ORDER_ROUTES = {"/order", "/order/...", "/sweep"}


def manifest() -> dict:
    return tomllib.loads(MANIFEST.read_text())


def kept(spinapp: dict) -> set[str]:
    return set(spinapp["spec"].get("components", []))


def routes_of(components: set[str]) -> set[str]:
    """The HTTP routes the kept components' triggers declare (only those run once the rest is dropped)."""
    return {t["route"] for t in manifest()["trigger"].get("http", []) if t["component"] in components}


def test_every_placement_is_a_kustomization():
    assert sorted(PLACEMENTS) == PLACEMENT_DIRS


@pytest.mark.parametrize("directory", PLACEMENT_DIRS)
def test_spinapps_keep_existing_components_of_one_image(directory):
    spinapps, ids = of_kind(render(directory), "SpinApp"), set(manifest()["component"])
    problems = [f"{n}: image {a['spec']['image']}, not {image_ref(manifest()['application']['name'])}"
                for n, a in spinapps.items() if a["spec"]["image"] != image_ref(manifest()["application"]["name"])]
    # Without spec.components the shim runs every component, and /order is then declared twice.
    problems += [f"{n}: keeps {sorted(kept(a))}; unknown ids {sorted(kept(a) - ids)} or none kept"
                 for n, a in spinapps.items() if not kept(a) or kept(a) - ids]
    assert not problems
    assert sorted(map(sorted, (kept(a) for a in spinapps.values()))) == sorted(map(sorted, PLACEMENTS[directory]))


@pytest.mark.parametrize("directory", PLACEMENT_DIRS)
def test_each_order_route_has_one_spinapp(directory):
    spinapps = of_kind(render(directory), "SpinApp")
    served = {n: routes_of(kept(a)) for n, a in spinapps.items()}
    for route in ORDER_ROUTES:
        assert len([n for n, r in served.items() if route in r]) == 1, f"{route}: served by {served}"
    for n, a in spinapps.items():
        routes = [t["route"] for t in manifest()["trigger"]["http"] if t["component"] in kept(a)]
        assert len(routes) == len(set(routes)), f"{n}: a route is declared twice among {sorted(kept(a))}"
        assert a["spec"].get("checks", {}).get("readiness", {}).get("httpGet"), f"{n}: an HTTP app without a probe"


@pytest.mark.parametrize("directory", PLACEMENT_DIRS)
def test_sweep_and_ingress_reach_the_order_side(directory):
    """The Ingress and the sweep CronJob of components/http-edge name the SpinApp that keeps the sweeper."""
    objects = render(directory)
    (owner,) = [n for n, a in of_kind(objects, "SpinApp").items() if "/sweep" in routes_of(kept(a))]
    url = urlsplit(sweep_request(objects)[1])
    assert (url.hostname, url.path) == (f"{owner}.{CONFIG['NAMESPACE']}.svc.cluster.local", "/sweep")
    backends = {p["backend"]["service"]["name"] for i in of_kind(objects, "Ingress").values()
                for r in i["spec"]["rules"] for p in r["http"]["paths"]}
    assert backends == {owner}


@pytest.mark.parametrize("directory", PLACEMENT_DIRS)
def test_kept_components_reach_what_they_call(directory, tmp_path):
    """With the variables Kubernetes hands each SpinApp: every URL a kept component calls is allowed, names a
    Service here, and (the HTTP placement) the Service of the SpinApp that keeps the component routing its
    path; every store a kept component opens is in the runtime config."""
    objects = render(directory)
    (tmp_path / "runtime-config.toml").write_text(runtime_config(objects))
    spinapps, known, problems = of_kind(objects, "SpinApp"), services(objects), []
    for name, app in spinapps.items():
        report = nanohost_check(MANIFEST, variables(objects, name), tmp_path / "runtime-config.toml")
        for cid in sorted(kept(app)):
            component = report["components"][cid]
            for u in component["urls"]:
                where = f"{name}/{cid}: {u['variable']}={u['url']}"
                if not u["allowed"]:
                    problems.append(f"{where}: not in allowed_outbound_hosts {component['allowed_outbound_hosts']}")
                if p := address_problem(u["url"], known):
                    problems.append(f"{where}: {p}")
                    continue
                url = urlsplit(u["url"])
                target = spinapps.get(url.hostname.split(".")[0])
                if target is None or url.path not in routes_of(kept(target)):
                    problems.append(f"{where}: no SpinApp here keeps a component routing {url.path}")
            problems += [f"{name}/{cid}: key-value store {s!r} is not in the runtime config"
                         for s in component["key_value_stores"] if s not in report["runtime_config_stores"]]
    assert not problems


def test_the_image_packs_every_component(tmp_path):
    """The one image the SpinApps pull packs the whole manifest, staged as deploy/oci packs every app: each
    SpinApp drops what it does not keep at load, so every component's .wasm must be in it."""
    sources = stage.stage(MANIFEST, tmp_path, allow_missing=True)
    staged = tomllib.loads((tmp_path / "spin.toml").read_text())
    assert set(staged["component"]) == set(manifest()["component"])
    assert {c["source"] for c in staged["component"].values()} == set(sources)
    assert all(s.startswith("target/composed/") for s in sources), sources
