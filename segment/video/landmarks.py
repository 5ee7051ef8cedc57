"""mediapipe's landmarks as points of the hand model: a layer whose extra vertices are the 21 landmarks, and the
measurement of where those points lie (their offsets from MANO's joints) on a synthetic capture.

Each landmark l is a virtual vertex at rest position anchor_l + offset_l, where anchor_l is the model joint that
MEDIAPIPE_TO_MANO pairs it with (a MANO joint centre or a fingertip vertex) and offset_l a fixed vector in the
rest-pose frame of the right hand (mirrored in x for a left hand). The vertex takes the skinning weights, shape and
pose blend shapes of its nearest template vertices (inverse-distance weighted), so it moves with the skin around it.

    python -m segment.video.landmarks --truth data/synthetic_calib

measures the offsets on a synthetic capture from mediapipe's landmarks and the true hand (a linear least-squares
fit of the projected virtual vertices to the landmarks, twice, re-choosing the neighbours), and prints them.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import smplx
from smplx import MANO
from smplx.utils.cli import cli_main
from segment.video.correspondence import LANDMARK_OFFSETS_MM, MEDIAPIPE_NAMES, MEDIAPIPE_TO_MANO

__all__ = ["landmark_layer", "rest_anchors", "measure_offsets"]

NEIGHBOURS = 8


def rest_anchors(model: MANO) -> np.ndarray:
    """(21, 3) m: the rest-pose model joints (with fingertips) in mediapipe order."""
    data = model.to_model_data()
    joints = np.concatenate([data.j_regressor @ data.v_template, data.v_template[data.fingertip_vertex_ids]])
    return joints[list(MEDIAPIPE_TO_MANO)]


def landmark_layer(model: MANO, offsets_mm: np.ndarray | None = None) -> MANO:
    """A layer like `model` (unsealed, no fingertip joints, same betas and dtype) with the landmarks appended as its
    last 21 output vertices.

    Args:
        model: the hand layer (output in metres, no centring or scaling).
        offsets_mm: (21, 3) mm, rest frame of the right hand; default LANDMARK_OFFSETS_MM.
    """
    offsets = np.asarray(LANDMARK_OFFSETS_MM if offsets_mm is None else offsets_mm, dtype=float) / 1000
    data = model.to_model_data()
    mirror = np.array([1.0, 1.0, 1.0]) if model.is_rhand else np.array([-1.0, 1.0, 1.0])
    points = rest_anchors(model) + offsets * mirror
    distance = np.linalg.norm(points[:, None] - data.v_template[None], axis=-1)
    nearest = np.argsort(distance, axis=1)[:, :NEIGHBOURS]
    weights = 1 / (np.take_along_axis(distance, nearest, 1) + 1e-4)
    weights /= weights.sum(1, keepdims=True)

    def blend(per_vertex):
        return np.einsum("lk,lk...->l...", weights, per_vertex[nearest])

    skin = blend(data.lbs_weights)
    extended = replace(
        data, v_template=np.concatenate([data.v_template, points]),
        shapedirs=np.concatenate([data.shapedirs, blend(data.shapedirs)]),
        posedirs=np.concatenate([data.posedirs, blend(data.posedirs)]),
        j_regressor=np.concatenate([data.j_regressor, np.zeros((len(data.j_regressor), 21))], 1),
        lbs_weights=np.concatenate([data.lbs_weights, skin / skin.sum(1, keepdims=True)]), left_shapedirs_ok=True)
    return MANO(extended, is_rhand=model.is_rhand, num_betas=model.num_betas, dtype=model.v_template.dtype)


def measure_offsets(model: MANO, betas: np.ndarray, global_orient: np.ndarray, hand_pose: np.ndarray,
                    transl_cam: np.ndarray, camrot: np.ndarray, uv: np.ndarray, K: np.ndarray, *,
                    rounds: int = 2) -> np.ndarray:
    """(21, 3) mm offsets that best explain observed landmarks of a hand whose true pose is known.

    Args:
        model: hand layer (float64 recommended).
        betas: (NB,) true shape.
        global_orient: (N, 3) camera-frame global rotation, rad; hand_pose: (N, 45) full pose, rad.
        transl_cam: (N, 3) m, added after rotating the model output into the camera: x_cam = camrot x + transl_cam.
        camrot: (3, 3) world-to-camera rotation the global rotation already includes (identity if camera frame).
        uv: (N, 21, 2) px observed landmarks (NaN rows are ignored); K: (3, 3) intrinsics.
    """
    offsets = np.zeros((21, 3))
    valid = ~np.isnan(uv).any(-1)
    n = len(uv)
    for _ in range(rounds):
        probes = [np.zeros((21, 3)), *(np.tile(10 * e, (21, 1)) for e in np.eye(3))]  # mm
        posed = []
        dtype = model.v_template.dtype
        for probe in probes:
            layer = landmark_layer(model, offsets + probe)
            with torch.no_grad():
                out = layer(betas=torch.as_tensor(np.tile(betas, (n, 1)), dtype=dtype),
                            global_orient=torch.as_tensor(global_orient, dtype=dtype),
                            hand_pose=torch.as_tensor(hand_pose, dtype=dtype))
            posed.append(out.vertices[:, -21:].double().numpy() @ camrot.T + transl_cam[:, None])
        base = posed[0]  # (N, 21, 3) m at the current offsets
        columns = np.stack([(p - base) / 10 for p in posed[1:]], -1)  # (N, 21, 3, 3): m per mm of offset
        du = (uv[..., 0] - K[0, 2]) / K[0, 0]
        dv = (uv[..., 1] - K[1, 2]) / K[1, 1]
        for l in range(21):
            rows, rhs = [], []
            for d, axis in ((du, 0), (dv, 1)):
                ok = valid[:, l]
                rows.append(d[ok, l, None] * columns[ok, l, 2] - columns[ok, l, axis])
                rhs.append(base[ok, l, axis] - d[ok, l] * base[ok, l, 2])
            offsets[l] += np.linalg.lstsq(np.concatenate(rows), np.concatenate(rhs), rcond=None)[0]
    return offsets


@cli_main
def main(argv: list[str] | None = None) -> int:
    from segment.annotations import SplitAnnotations, Subject
    from segment.interhand import tree_path
    from segment.synthetic import read_manifest
    from segment.video.keypoints import detect_keypoints
    parser = argparse.ArgumentParser(prog="python -m segment.video.landmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--truth", type=Path, required=True, help="a synthetic capture (not the one you evaluate on)")
    parser.add_argument("--seq", default="ROM04_RT_Occlusion", help="sequence to measure on")
    args = parser.parse_args(argv)
    manifest = read_manifest(args.truth)
    camera, hand = manifest["cameras"][0], manifest["settings"]["hand"]
    records, _ = SplitAnnotations(args.truth, "test").frames(Subject("test", 0, args.seq, camera), hand)
    keypoints = detect_keypoints([tree_path(args.truth, "images", "test", r.file_name) for r in records],
                                 args.truth / "video" / f"keypoints_{args.seq}_{camera}.npz")
    model = smplx.create(manifest["model"]["source"], is_rhand=hand == "right", dtype=torch.float64)
    data = model.to_model_data()
    pose = np.stack([r.pose for r in records])
    hand_pose = pose[:, 3:] + (np.zeros(45) if data.hands_mean is None else data.hands_mean)
    betas = records[0].shape[:model.num_betas]
    with torch.no_grad():
        wrist = model(betas=torch.as_tensor(np.tile(betas, (len(records), 1))),
                      global_orient=torch.as_tensor(pose[:, :3]), hand_pose=torch.as_tensor(hand_pose)).joints[:, 0]
    trans = np.stack([r.world_joints[20] for r in records]) / 1000 - wrist.numpy()  # InterHand row 20: the wrist
    camrot, campos = records[0].camrot, records[0].campos
    uv = np.where((keypoints.found & (keypoints.handedness == hand))[:, None, None], keypoints.uv, np.nan)
    offsets = measure_offsets(model, betas, pose[:, :3], hand_pose, (trans - campos / 1000) @ camrot.T, camrot, uv,
                              records[0].K)
    print(f"offsets from {len(records)} frames of {args.truth} ({int((~np.isnan(uv[:, 0, 0])).sum())} with "
          "landmarks), mm, rest frame of the right hand:")
    for name, row in zip(MEDIAPIPE_NAMES, offsets):
        print(f"    ({row[0]:6.1f}, {row[1]:6.1f}, {row[2]:6.1f}),  # {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
