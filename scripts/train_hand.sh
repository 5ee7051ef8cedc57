#!/usr/bin/env bash
# Train the hand avatar. Usage: scripts/train_hand.sh [config.yaml] [key.sub=value ...]
# e.g. scripts/train_hand.sh configs/synthetic/demo.yaml train.maxiter=50
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python; [ -x "$PY" ] || PY=python3
exec "$PY" -m handavatar.train --config "${1:-configs/synthetic/demo.yaml}" "${@:2}"
