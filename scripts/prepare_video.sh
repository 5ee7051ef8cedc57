#!/usr/bin/env bash
# Your own video: a video of one hand (or a folder of its frames) -> a capture in the InterHand2.6M layout
# (python -m segment.video.prepare --help). Needs the keypoint extra: make video-install.
# Usage: scripts/prepare_video.sh VIDEO|IMAGE_DIR --out data/mine [--hand right|left] [--fov DEG | --focal PX]
#        [--every N] [--max-frames N]
# Paths are relative to where you run it. e.g. scripts/prepare_video.sh ~/hand.mp4 --out data/mine --every 2
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="$ROOT/.venv/bin/python"; [ -x "$PY" ] || PY=python3
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" -m segment.video.prepare "$@"
