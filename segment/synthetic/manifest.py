"""What a synthetic capture writes besides its images: the InterHand2.6M annotation files of a split, the capture's
manifest (capture.json: settings, model, sequences, cameras, ground-truth trees, software versions), the paths of
a frame's image files and the preview picture; and `read_manifest`, which reads a manifest back.

`settings` below is the capture's `segment.synthetic.capture.CaptureSettings` (not imported here: the capture
imports this module).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
from PIL import Image

from smplx import MANO
from smplx.utils.cli import UserError
from segment.interhand import (DATA_FOLDER, IMAGE_TREE, MANO_TO_INTERHAND, MASK_TREE, hand_joints, image_file_name,
                               tree_path)
from segment.synthetic.raytrace import PinholeCamera

__all__ = ["SyntheticCaptureError", "PosedFrame", "frame_paths", "annotation_files", "capture_manifest",
           "read_manifest", "preview_picture", "FORMAT_VERSION", "SEQUENCES", "GROUND_TRUTH_TREES",
           "DEPTH_UNIT_MM"]

FORMAT_VERSION = 1
SEQUENCES = (("ROM04_RT_Occlusion", "train"), ("ROM03_RT_No_Occlusion", "eval"))
GROUND_TRUTH_TREES = ("albedo", "shading", "depth")  # plus "specular" when the specular term is on
DEPTH_UNIT_MM = 0.1  # depth PNGs: uint16, camera z in units of 0.1 mm, 0 = background


class SyntheticCaptureError(UserError):
    """A setting or the output folder makes the capture impossible; raised before any rendering starts."""


@dataclass
class PosedFrame:
    """One frame of a capture's motion, as the annotations record it."""

    seq_name: str
    frame_idx: int
    vertices: np.ndarray  # (V, 3) world mm, sealed
    joints: np.ndarray  # (21, 3) world mm, MANO order with fingertips
    global_orient: np.ndarray  # (3,)
    hand_pose: np.ndarray  # (45,) relative to the model's hands_mean, as NeuralAnnot stores it
    trans: np.ndarray  # (3,) metres


def frame_paths(root: Path, settings, file_name: str) -> dict[str, Path]:
    """Where a frame's files go under the capture `root`: 'image', 'mask' and each ground-truth tree's PNG."""
    trees = GROUND_TRUTH_TREES + (("specular",) if settings.specular > 0 else ())
    paths = {"image": tree_path(root, IMAGE_TREE, settings.split, file_name),
             "mask": tree_path(root, MASK_TREE, settings.split, file_name, ".png")}
    paths.update({tree: tree_path(root, tree, settings.split, file_name, ".png") for tree in trees})
    return paths


def _bbox(vertices: np.ndarray, cam: PinholeCamera) -> list[float]:
    """[x, y, w, h] px of the projected mesh."""
    uv, _ = cam.project(vertices)
    (x0, y0), (x1, y1) = uv.min(0), uv.max(0)
    return [round(float(v), 4) for v in (x0, y0, x1 - x0, y1 - y0)]


def _rounded(array, digits: int = 6) -> list:
    return np.round(np.asarray(array, dtype=float), digits).tolist()


def annotation_files(settings, frames: list[PosedFrame], cameras, betas) -> dict[str, dict]:
    """The four annotation files of the split, as InterHand2.6M writes them."""
    hand = settings.hand
    valid = np.zeros(42, dtype=int)
    valid[hand_joints(hand)] = 1
    images, annotations, joint_3d, mano = [], [], {}, {}
    for f in frames:
        for cam_id, cam in cameras:
            index = len(images)
            images.append({"id": index, "file_name": image_file_name(settings.capture, f.seq_name, cam_id,
                                                                     f.frame_idx),
                           "width": settings.width, "height": settings.height, "capture": settings.capture,
                           "subject": settings.capture, "seq_name": f.seq_name, "camera": cam_id,
                           "frame_idx": f.frame_idx})
            annotations.append({"id": index, "image_id": index, "bbox": _bbox(f.vertices, cam),
                                "joint_valid": [[int(v)] for v in valid], "hand_type": hand, "hand_type_valid": 1})
        world = np.zeros((42, 3))
        world[hand_joints(hand)] = f.joints[list(MANO_TO_INTERHAND)]
        joint_3d[str(f.frame_idx)] = {"world_coord": _rounded(world, 4), "joint_valid": [[bool(v)] for v in valid],
                                      "hand_type": hand, "hand_type_valid": True}
        params = {"pose": _rounded(np.concatenate([f.global_orient, f.hand_pose]), 7), "shape": _rounded(betas, 7),
                  "trans": _rounded(f.trans, 7)}
        mano[str(f.frame_idx)] = {h: (params if h == hand else None) for h in ("right", "left")}
    capture = str(settings.capture)
    cams = {"campos": {}, "camrot": {}, "focal": {}, "princpt": {}}
    for cam_id, cam in cameras:
        cams["campos"][cam_id] = _rounded(cam.campos, 4)
        cams["camrot"][cam_id] = _rounded(cam.camrot, 8)
        cams["focal"][cam_id] = _rounded(cam.K[[0, 1], [0, 1]], 4)
        cams["princpt"][cam_id] = _rounded(cam.K[[0, 1], [2, 2]], 4)
    return {"data": {"images": images, "annotations": annotations}, "camera": {capture: cams},
            "joint_3d": {capture: joint_3d}, "MANO_NeuralAnnot": {capture: mano}}


def read_manifest(root: str | Path) -> dict:
    """The capture.json of a synthetic capture.

    Raises:
        SyntheticCaptureError: `root` holds no capture.json, or one that is not a capture manifest.
    """
    path = Path(root) / "capture.json"
    if not path.is_file():
        raise SyntheticCaptureError(f"{root} is not a synthetic capture: it has no capture.json; render one with "
                                    "python -m segment.synthetic --out DIR")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SyntheticCaptureError(f"{path} cannot be read ({error}); render the capture again") from error
    if not isinstance(manifest, dict) or not {"settings", "cameras"} <= set(manifest):
        raise SyntheticCaptureError(f"{path} is not a capture manifest (no settings and cameras); render the capture "
                                    "again")
    return manifest


def capture_manifest(settings, model: MANO, frames: list[PosedFrame], cameras, betas,
              complete: bool) -> dict:
    return {
        "format_version": FORMAT_VERSION, "complete": complete, "settings": asdict(settings),
        "model": {"source": model.source, "vertices": model.v_template.shape[0], "faces": len(model.faces)},
        "subject": {"betas": _rounded(betas, 7), "skin": settings.skin},
        "sequences": {name: {"role": role, "frames": [f.frame_idx for f in frames if f.seq_name == name]}
                      for name, role in SEQUENCES},
        "cameras": [cam_id for cam_id, _ in cameras],
        "ground_truth": {"masks": f"{DATA_FOLDER}/{MASK_TREE}/", "trees": [f"{DATA_FOLDER}/{t}/" for t in (
            GROUND_TRUTH_TREES + (("specular",) if settings.specular > 0 else ()))],
            "image_formation": "image = coverage (albedo x shading + specular) + (1 - coverage) background; "
                               "albedo sRGB-like encoded, shading = (ambient AO + diffuse visibility max(0, n.l)) "
                               f"** (1/2.2), {settings.supersample}x{settings.supersample} rays per pixel",
            "depth": f"uint16 PNG, camera z in units of {DEPTH_UNIT_MM} mm, 0 = background",
            "mask": "255 where at least half of a pixel's rays hit the hand"},
        "software": {"generator": "python -m segment.synthetic",
                     **{name: version(name) for name in ("numpy", "embreex", "trimesh", "pillow", "torch")}},
    }


def preview_picture(root: Path, settings, data: dict, rows: int = 4, size: int = 240) -> np.ndarray:
    """A picture of the capture: `rows` training frames of the first camera, each as image | albedo | shading
    cropped to a square around the hand; from each of `rows` equal parts of the sequence, the frame with the most
    shadowed pixels."""
    first_camera = data["images"][0]["camera"]
    candidates = [(i, a) for i, a in zip(data["images"], data["annotations"])
                  if i["seq_name"] == SEQUENCES[0][0] and i["camera"] == first_camera]

    def shadowed(entry) -> int:
        paths = frame_paths(root, settings, entry[0]["file_name"])
        mask = np.asarray(Image.open(paths["mask"]))[..., 0] > 0
        return int((np.asarray(Image.open(paths["shading"]))[mask] < 140).sum())

    parts = np.array_split(np.arange(len(candidates)), min(rows, len(candidates)))
    out = []
    for image, annotation in [candidates[max(part, key=lambda k: shadowed(candidates[k]))] for part in parts]:
        paths = frame_paths(root, settings, image["file_name"])
        x, y, w, h = annotation["bbox"]
        x0, y0 = int(round(x + w / 2)) - size // 2, int(round(y + h / 2)) - size // 2
        tiles = []
        for key in ("image", "albedo", "shading"):
            tile = np.asarray(Image.open(paths[key]).convert("RGB"))
            padded = np.pad(tile, ((size, size), (size, size), (0, 0)))
            tiles.append(padded[y0 + size:y0 + 2 * size, x0 + size:x0 + 2 * size])
        out.append(np.concatenate(tiles, axis=1))
    return np.concatenate(out, axis=0)
