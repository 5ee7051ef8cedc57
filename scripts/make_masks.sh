#!/usr/bin/env bash
# Hand masks for InterHand2.6M-layout images from the projected hand model (python -m segment.masks --help).
# Usage: scripts/make_masks.sh [--root DIR] [--split test] [--capture 0] [--seq NAME ...] [--overwrite] [...]
# Without --seq: the paper's two sequences, ROM04_RT_Occlusion (training) and ROM03_RT_No_Occlusion (evaluation).
# e.g. scripts/make_masks.sh --root data/InterHand/5 --split val --capture 0
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python; [ -x "$PY" ] || PY=python3
case " $* " in
  *" --seq "*) exec "$PY" -m segment.masks "$@" ;;
  *) exec "$PY" -m segment.masks --seq ROM04_RT_Occlusion --seq ROM03_RT_No_Occlusion "$@" ;;
esac
