#!/usr/bin/env bash
# Deploy nano-orders to a local k3d cluster whose node runs containerd-shim-spin, and smoke-test it.
#
#   deploy/up.sh [composed|mqtt|redis] [--spinkube] [--spin] [--no-smoke]
#
#   composed (default)  one Spin app, fulfilment in-process
#   mqtt | redis        order app + fulfilment app, connected through Mosquitto / Redis pub/sub
#   --spinkube          deploy SpinApps (deploy/spinkube/<shape>) instead of plain Deployments; needs the
#                       SpinKube operator installed in the cluster first (see deploy/README.md)
#   --spin              package with `spin registry push` instead of docker-built FROM scratch images
#   --no-smoke          skip the smoke test
#
# Steps: check tools, create the cluster (deploy/k3d/config.yaml) unless it exists, `cargo xtask build`,
# build and push the app images to the cluster's registry, apply the Secrets (passwords, the message key and
# the sweep token: kept from the cluster, generated at random where absent; deploy/secrets), apply the
# manifests, wait for readiness, POST an order and poll until it is fulfilled. Run it again to redeploy;
# deploy/down.sh deletes everything.
set -euo pipefail
# shellcheck source=lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

shape=composed
spinkube=0
build_args=()
smoke=1
for arg in "$@"; do
  case "$arg" in
    --spinkube) spinkube=1 ;;
    --spin) build_args+=(--spin) ;;
    --no-smoke) smoke=0 ;;
    -h|--help) usage "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) die "unknown option $arg (try --help)" ;;
    *) valid_shape "$arg"; shape="$arg" ;;
  esac
done

# --- tools -------------------------------------------------------------------------------------------------
need_tool docker "Install Docker (https://docs.docker.com/get-docker/); k3d runs the cluster in it."
docker info >/dev/null 2>&1 || die "docker is installed but its engine is not reachable (is the Docker daemon running?)"
need_tool k3d "Install k3d v5 (https://k3d.io/#installation)."
need_tool kubectl "Install kubectl 1.27+ (https://kubernetes.io/docs/tasks/tools/); it applies the kustomizations."
need_tool cargo "Install Rust (https://rustup.rs); \`cargo xtask build\` builds the composed components."
need_tool python3 "Install Python 3 (stages each app's manifest and .wasm for its image)."
need_tool curl "Install curl (the smoke test uses it)."
if [ "${#build_args[@]}" -gt 0 ]; then
  need_tool spin "Install Spin 3.x (https://spinframework.dev/install) or drop --spin."
fi

# --- cluster -----------------------------------------------------------------------------------------------
if k3d cluster get "$CLUSTER_NAME" >/dev/null 2>&1; then
  say "k3d cluster $CLUSTER_NAME exists; starting it if it is stopped"
  k3d cluster start "$CLUSTER_NAME" >/dev/null
else
  say "creating k3d cluster $CLUSTER_NAME (node image $K3D_NODE_IMAGE)"
  k3d cluster create --config "$DEPLOY_DIR/k3d/config.yaml"
fi
kc cluster-info >/dev/null || die "kubectl cannot reach the cluster through context $KUBE_CONTEXT"

# --- build and package -------------------------------------------------------------------------------------
say "cargo xtask build"
(cd "$ROOT" && cargo xtask build)
# (the ${a[@]+...} form keeps bash 3.2, macOS' /bin/bash, happy with an empty array under set -u)
"$DEPLOY_DIR/oci/build.sh" ${build_args[@]+"${build_args[@]}"} "$shape"

# --- secrets -----------------------------------------------------------------------------------------------
# Not in the kustomizations, so no password is in git and `kubectl apply -k` never resets one: the values the
# cluster's Secrets hold are kept (a redeploy changes no password under running brokers), absent ones are
# generated at random (deploy/secrets/generate.py), and the filled-in Secrets applied before anything reads them.
kc apply -f "$DEPLOY_DIR/k8s/base/namespace.yaml" >/dev/null
say "Secrets broker-credentials, app-secrets, spin-runtime-config (kept, or generated where absent)"
kc -n "$NAMESPACE" get secret broker-credentials app-secrets --ignore-not-found -o json |
  python3 "$DEPLOY_DIR/secrets/generate.py" | kc apply -f - >/dev/null

# --- apply -------------------------------------------------------------------------------------------------
has_spinkube=0
if kc get crd spinapps.core.spinkube.dev >/dev/null 2>&1; then has_spinkube=1; fi
if [ "$spinkube" = 1 ]; then
  [ "$has_spinkube" = 1 ] || die "the SpinKube CRDs are not installed in $KUBE_CONTEXT; install the SpinKube operator first (deploy/README.md, 'SpinKube'), or deploy without --spinkube"
  manifests="$DEPLOY_DIR/spinkube/$shape"
  # Plain Deployments of an earlier run would clash with the operator's, which have the same names.
  kc -n "$NAMESPACE" delete deployment,service -l nano-orders/shape --ignore-not-found >/dev/null
  kc -n "$NAMESPACE" delete spinapps,cronjobs -l "nano-orders/shape,nano-orders/shape!=$shape" --ignore-not-found >/dev/null
else
  manifests="$DEPLOY_DIR/k8s/overlays/$shape"
  if [ "$has_spinkube" = 1 ]; then
    kc -n "$NAMESPACE" delete spinapps -l nano-orders/shape --ignore-not-found >/dev/null
  fi
  # One shape at a time: remove the Spin apps and sweep jobs of the other shapes (Redis and Mosquitto stay).
  kc -n "$NAMESPACE" delete deployment,service,cronjob -l "nano-orders/shape,nano-orders/shape!=$shape" --ignore-not-found >/dev/null
fi
say "kubectl apply -k ${manifests#"$ROOT"/}"
kc apply -k "$manifests"

# --- wait --------------------------------------------------------------------------------------------------
wait_rollout() { kc -n "$NAMESPACE" rollout status "deployment/$1" --timeout=240s; }
wait_rollout redis
wait_rollout mosquitto
while read -r app _manifest _http; do
  if [ "$spinkube" = 1 ]; then
    # The operator creates the Deployment; wait for it to appear first.
    for _ in $(seq 1 60); do
      kc -n "$NAMESPACE" get "deployment/$app" >/dev/null 2>&1 && break
      sleep 2
    done
  else
    # Same image tag as the last run: restart so that the pods pull what was just pushed.
    kc -n "$NAMESPACE" rollout restart "deployment/$app" >/dev/null
  fi
  wait_rollout "$app"
done < <(apps_for_shape "$shape")

# --- smoke test --------------------------------------------------------------------------------------------
url="http://localhost:$HTTP_PORT"
if [ "$smoke" = 1 ]; then
  SMOKE_TIMEOUT="${SMOKE_TIMEOUT:-120}" "$DEPLOY_DIR/smoke.sh" "$url"
fi

cat <<MSG

nano-orders ($shape shape) is running in k3d cluster $CLUSTER_NAME, namespace $NAMESPACE.
  curl -i -X POST $url/order -H 'Content-Type: application/json' -d '{"details": "two espressos"}'
  curl -s $url/order/<id from the Location header>
  kubectl --context $KUBE_CONTEXT -n $NAMESPACE get pods
Tear down with: deploy/down.sh
MSG
