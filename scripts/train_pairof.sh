#!/usr/bin/env bash
# Pretrain PairOF. Usage: scripts/train_pairof.sh [config.yaml] [key.sub=value ...]
# e.g. scripts/train_pairof.sh configs/pairof/default.yaml device=cuda      (the long schedule, on a GPU)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python; [ -x "$PY" ] || PY=python3
exec "$PY" -m pairof.train --config "${1:-configs/pairof/demo.yaml}" "${@:2}"
