#!/usr/bin/env bash
# From a video of one hand to an avatar, every stage in turn; resumable: a stage whose output exists is skipped,
# so run it again after an interruption (delete a stage's output to redo it; training resumes from its checkpoint).
# Usage: scripts/video_to_avatar.sh VIDEO|IMAGE_DIR --out data/mine [--name mine] [--hand right|left]
#        [--fov DEG | --focal PX] [--every N] [--max-frames N] [key.sub=value ...]
# Stages: prepare (scripts/prepare_video.sh), the shared pretraining of `make demo` (open hand, LBS weights,
# PairOF: python -m handavatar.demo --only ...; for --hand left the left hand's own, with the demo's settings, in
# smplx/out/demo_lbs_left and pairof/out/demo_left), the annotation cache, avatar training and validation on the
# held-out end of the video, free-pose and free-view videos (configs/synthetic/demo.yaml; key.sub=value overrides it).
# Outputs: <out>/ (the capture) and handavatar/out/handavatar/<name>/ (checkpoint, val/, freepose/, freeview/).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
[ $# -ge 1 ] || { sed -n '2,9p' "$0"; exit 2; }
SOURCE="$(realpath -m "$1")"; shift
OUT="" NAME="" HAND=right PREPARE=() OVERRIDES=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$(realpath -m "$2")"; shift 2 ;;
    --name) NAME="$2"; shift 2 ;;
    --hand) HAND="$2"; PREPARE+=("$1" "$2"); shift 2 ;;
    --fov|--focal|--every|--max-frames|--max-side|--eval-fraction|--model) PREPARE+=("$1" "$2"); shift 2 ;;
    *=*) OVERRIDES+=("$1"); shift ;;
    *) echo "error: unknown option $1 (see the usage at the top of $0)" >&2; exit 2 ;;
  esac
done
[ -n "$OUT" ] || { echo "error: --out DIR is required (where the capture goes, e.g. data/mine)" >&2; exit 2; }
NAME="${NAME:-$(basename "$OUT")}"
cd "$ROOT"
PY=.venv/bin/python; [ -x "$PY" ] || PY=python3
CONFIG=configs/synthetic/demo.yaml
EXPERIMENT="handavatar/out/handavatar/$NAME"
SEQ=test/Capture0

stage() {  # stage NAME OUTPUT COMMAND...: run COMMAND unless OUTPUT exists
  local name="$1" output="$2"; shift 2
  if [ -e "$output" ]; then echo "== $name: done ($output)"; return; fi
  echo "== $name: $*"
  "$@"
}

stage prepare "$OUT/video/prepare.json" scripts/prepare_video.sh "$SOURCE" --out "$OUT" "${PREPARE[@]}"
PRETRAINED=()
if [ "$HAND" = right ]; then
  for shared in open_hand lbs pairof; do  # the demo's own up-to-date checks decide whether they run
    echo "== $shared (shared with make demo)"; "$PY" -m handavatar.demo --only "$shared"
  done
else  # the demo pretrains for the right hand: the left hand gets its own skinning weights and PairOF
  echo "== open_hand (shared with make demo)"; "$PY" -m handavatar.demo --only open_hand
  LBS_LEFT=smplx/out/demo_lbs_left/lbs_weights.pth PAIROF_LEFT=pairof/out/demo_left/pairof.ckpt
  stage "lbs (left hand)" "$LBS_LEFT" scripts/train_lbs.sh configs/lbs/demo.yaml model.is_rhand=false \
    name=demo_lbs_left publish=false
  stage "pairof (left hand)" "$PAIROF_LEFT" scripts/train_pairof.sh configs/pairof/demo.yaml model.is_rhand=false \
    "model.lbs_weights=$LBS_LEFT" name=demo_left publish=false
  PRETRAINED=("smpl_cfg.lbs_weights=$LBS_LEFT" "smpl_cfg.pairof=$PAIROF_LEFT")
fi
SETTINGS=("data.root=$OUT" "data.hand=$HAND" "experiment=$NAME" "${PRETRAINED[@]}" "${OVERRIDES[@]}")
stage cache "$OUT/InterHand2.6M_5fps_batch1/preprocess/$SEQ/ROM03_RT_No_Occlusion/anno_$HAND.npz" \
  "$PY" -m segment.preprocess --root "$OUT" --subject "$SEQ/ROM04_RT_Occlusion" \
  --subject "$SEQ/ROM03_RT_No_Occlusion" --hand "$HAND"
echo "== avatar: training resumes from $EXPERIMENT/latest.tar when there is one"
scripts/train_hand.sh "$CONFIG" "${SETTINGS[@]}"
stage val "$EXPERIMENT/val/summary.json" scripts/train_hand.sh "$CONFIG" "${SETTINGS[@]}" phase=val
for mode in freepose freeview; do
  stage "$mode" "$EXPERIMENT/$mode/$mode.mp4" scripts/run_hand.sh "$CONFIG" "${SETTINGS[@]}" "run.mode=$mode"
done
echo "avatar: $EXPERIMENT/ (val/summary.json, freepose/freepose.mp4, freeview/freeview.mp4)"
