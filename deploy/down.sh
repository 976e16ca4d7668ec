#!/usr/bin/env bash
# Tear down what deploy/up.sh made.
#
#   deploy/down.sh                   delete the k3d cluster (and the registry created with it)
#   deploy/down.sh --namespace-only  keep the cluster; delete only the nano-orders namespace
set -euo pipefail
# shellcheck source=lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

namespace_only=0
for arg in "$@"; do
  case "$arg" in
    --namespace-only) namespace_only=1 ;;
    -h|--help) usage "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown argument $arg (try --help)" ;;
  esac
done

if [ "$namespace_only" = 1 ]; then
  need_tool kubectl "Install kubectl (https://kubernetes.io/docs/tasks/tools/)."
  say "deleting namespace $NAMESPACE in $KUBE_CONTEXT"
  kc delete namespace "$NAMESPACE" --ignore-not-found --wait=true
  exit 0
fi

need_tool k3d "Install k3d v5 (https://k3d.io/#installation)."
if k3d cluster get "$CLUSTER_NAME" >/dev/null 2>&1; then
  say "deleting k3d cluster $CLUSTER_NAME"
  k3d cluster delete "$CLUSTER_NAME"
else
  say "no k3d cluster named $CLUSTER_NAME"
fi
# k3d deletes a registry created with the cluster unless another network uses it; make sure it is gone.
if k3d registry get "$REGISTRY_NAME" >/dev/null 2>&1; then
  say "deleting registry $REGISTRY_NAME"
  k3d registry delete "$REGISTRY_NAME"
fi
rm -rf "$ROOT/target/deploy-oci"
say "done"
