#!/usr/bin/env bash
# Package the Spin apps of one shape as OCI images and push them to the k3d registry.
#
#   deploy/oci/build.sh [--spin] [--no-push] composed|mqtt|redis
#
# Default: a FROM scratch image per app (deploy/oci/Dockerfile: /spin.toml + its composed .wasm) built with
# docker. --spin: `spin registry push` instead (a Spin OCI artifact; needs the Spin CLI). Either way the
# image is pushed as localhost:$REGISTRY_PORT/<app>:$IMAGE_TAG and the manifests pull it as
# $REGISTRY_NAME:$REGISTRY_PORT/<app>:$IMAGE_TAG (deploy/config.env). Run `cargo xtask build` first.
set -euo pipefail
# shellcheck source=../lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/lib.sh"

use_spin=0
push=1
shape=""
for arg in "$@"; do
  case "$arg" in
    --spin) use_spin=1 ;;
    --no-push) push=0 ;;
    -h|--help) usage "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) die "unknown option $arg" ;;
    *) shape="$arg" ;;
  esac
done
[ -n "$shape" ] || die "usage: deploy/oci/build.sh [--spin] [--no-push] composed|mqtt|redis"
valid_shape "$shape"

if [ "$use_spin" = 1 ]; then
  need_tool spin "Install Spin 3.x (https://spinframework.dev/install) or drop --spin to build with docker."
  [ "$push" = 1 ] || die "--spin pushes straight to the registry; it cannot be combined with --no-push"
else
  need_tool docker "Install Docker (https://docs.docker.com/get-docker/)."
  need_tool python3 "Install Python 3 (used to stage the manifest and the .wasm for the image)."
fi

while read -r app manifest _http; do
  [ -f "$ROOT/$manifest" ] || die "$manifest does not exist (app $app of shape $shape)"
  if [ "$use_spin" = 1 ]; then
    say "spin registry push $app -> $(push_ref "$app")"
    spin registry push --insecure --from "$ROOT/$manifest" "$(push_ref "$app")"
    continue
  fi
  context="$ROOT/target/deploy-oci/$app"
  say "staging $manifest -> $context"
  python3 "$DEPLOY_DIR/oci/stage.py" "$ROOT/$manifest" "$context" >/dev/null
  say "docker build $(image_ref "$app")"
  docker build --quiet -f "$DEPLOY_DIR/oci/Dockerfile" \
    -t "$(push_ref "$app")" -t "$(image_ref "$app")" "$context" >/dev/null
  if [ "$push" = 1 ]; then
    say "docker push $(push_ref "$app")"
    docker push --quiet "$(push_ref "$app")" >/dev/null
  fi
done < <(apps_for_shape "$shape")
