#!/usr/bin/env bash
# Pretrain MANO-HD skinning weights. Usage: scripts/train_lbs.sh [config.yaml] [key.sub=value ...]
# e.g. scripts/train_lbs.sh configs/lbs/mano.yaml device=cuda       (published scale, on a GPU)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python; [ -x "$PY" ] || PY=python3
exec "$PY" -m smplx.manohd.train_lbs --config "${1:-configs/lbs/demo.yaml}" "${@:2}"
