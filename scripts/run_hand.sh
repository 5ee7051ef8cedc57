#!/usr/bin/env bash
# Render a trained avatar: test views, free view, free pose, T-pose or a driving motion (handavatar/run.py).
# Usage: scripts/run_hand.sh [config.yaml] [key.sub=value ...]
#        scripts/run_hand.sh export --checkpoint .../latest.tar --out avatar.glb [--viewer DIR]  (handavatar.export)
# e.g. scripts/run_hand.sh configs/synthetic/demo.yaml run.mode=freeview run.views=12
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python; [ -x "$PY" ] || PY=python3
if [[ "${1:-}" == export ]]; then shift; exec "$PY" -m handavatar.export "$@"; fi
if [[ "${1:-}" == *.yaml ]]; then CONFIG="$1"; shift; else CONFIG=configs/synthetic/demo.yaml; fi
exec "$PY" -m handavatar.run --config "$CONFIG" "$@"
