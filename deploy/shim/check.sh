#!/usr/bin/env bash
# Run every shape's image on containerd with the real containerd-shim-spin (deploy/shim/shim_check.py says
# how). `cargo xtask test` runs this after deploy/check.sh. Prints `shim check SKIPPED: <reason>` and exits 0
# where the machine cannot run it (no root, no shim binary, tools not installable).
#
#   bash deploy/shim/check.sh        from any directory
set -euo pipefail

SHIM_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SHIM_DIR/../.." && pwd)"
export PYTHONDONTWRITEBYTECODE=1  # keep deploy/ free of __pycache__

# The script reads the manifests with PyYAML: deploy/check.sh's virtualenv has it pinned; a system
# Python with PyYAML does as well.
for python in "$ROOT/target/deploy-venv/bin/python" python3; do
  if command -v "$python" >/dev/null 2>&1 &&
    "$python" -c 'import sys, yaml; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    exec "$python" "$SHIM_DIR/shim_check.py" "$@"
  fi
done
echo "shim check SKIPPED: no Python 3.11+ with PyYAML (bash deploy/check.sh sets up target/deploy-venv)"
