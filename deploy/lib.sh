# shellcheck shell=bash
# Helpers shared by deploy/*.sh. Source it; it sets DEPLOY_DIR and ROOT and loads deploy/config.env.

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC2034 # used by the scripts that source this file
ROOT="$(cd "$DEPLOY_DIR/.." && pwd)"
# shellcheck source=config.env
. "$DEPLOY_DIR/config.env"
KUBE_CONTEXT="k3d-$CLUSTER_NAME"

say() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# from_shapes_toml shapes | apps SHAPE: read the repository's one list of shapes and apps (shapes.toml) with
# Python's tomllib: the deployed shapes (space-separated), or "app manifest http" per app of SHAPE.
from_shapes_toml() {
  python3 -c '
import sys, tomllib
shapes = tomllib.load(open(sys.argv[1], "rb"))["shape"]
if sys.argv[2] == "shapes":
    print(" ".join(s["name"] for s in shapes if s["deployed"]))
else:
    for s in shapes:
        if s["name"] == sys.argv[3]:
            for a in s["apps"]:
                print(a["name"], a["manifest"], "yes" if a["http"] else "no")
' "$ROOT/shapes.toml" "$@"
}
SHAPES="$(from_shapes_toml shapes)" || die "cannot read $ROOT/shapes.toml (needs python3 3.11+)"

# need_tool NAME HINT: stop with a clear message when a command is not installed.
need_tool() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed or not on PATH. $2"
}

# valid_shape SHAPE: stop unless SHAPE is one of $SHAPES.
valid_shape() {
  case " $SHAPES " in
    *" $1 "*) ;;
    *) die "unknown shape '$1' (expected one of: $SHAPES)" ;;
  esac
}

# apps_for_shape SHAPE: print "app manifest http" for each Spin app of the shape (from shapes.toml).
apps_for_shape() { from_shapes_toml apps "$1"; }

# image_ref APP: the reference the manifests use (pulled inside the cluster through the k3d registry).
image_ref() { printf '%s:%s/%s:%s\n' "$REGISTRY_NAME" "$REGISTRY_PORT" "$1" "$IMAGE_TAG"; }
# push_ref APP: the same image, as pushed from the host (k3d maps the registry to localhost:REGISTRY_PORT).
push_ref() { printf 'localhost:%s/%s:%s\n' "$REGISTRY_PORT" "$1" "$IMAGE_TAG"; }

kc() { kubectl --context "$KUBE_CONTEXT" "$@"; }

# usage SCRIPT: print the comment block at the top of SCRIPT (its help text).
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$1"; }
