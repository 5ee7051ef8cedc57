"""Reading PairOF checkpoints (pairof.ckpt) for a MANO-HD layer, with the checks that keep field and hand matched."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from smplx import MANO
from smplx.utils.cli import InputError, MissingFileError
from smplx.utils.torchfile import read_torch_file
from pairof.model import PairOF

__all__ = ["load_pairof", "weights_fingerprint"]


def weights_fingerprint(layer: MANO) -> str:
    """sha256 of the skinning weights a field's partition is built from (float32 bytes)."""
    return hashlib.sha256(layer.lbs_weights.detach().float().cpu().numpy().tobytes()).hexdigest()


def load_pairof(path: str | Path, layer: MANO) -> PairOF:
    """A field from a pairof.ckpt (ours) for a MANO-HD layer carrying the skinning weights it was trained with.

    Raises:
        MissingFileError: no file (says how to make one).
        InputError: the file cannot be read, holds NaN or infinite values, or was trained for other skinning weights
            or another mesh.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"PairOF checkpoint {path} does not exist; pretrain one with scripts/train_pairof.sh")
    saved = read_torch_file(path, what="a PairOF checkpoint", remedy="pretrain it again with scripts/train_pairof.sh")
    if not isinstance(saved, dict) or "field" not in saved or "lbs_weights_sha256" not in saved:
        raise InputError(f"{path} is not a checkpoint of this project's pairof.train (no field settings); retrain")
    trained_rhand = saved.get("model", {}).get("is_rhand") if isinstance(saved.get("model"), dict) else None
    if trained_rhand is not None and bool(trained_rhand) != layer.is_rhand:
        side, other = ("right", "left") if layer.is_rhand else ("left", "right")
        raise InputError(f"{path} was pretrained for the {other} hand, but this hand is the {side} one (data.hand); "
                         f"pretrain the skinning weights and PairOF for the {side} hand and point smpl_cfg.lbs_weights "
                         f"and smpl_cfg.pairof at them (scripts/video_to_avatar.sh --hand {side} does it): "
                         f"scripts/train_lbs.sh CONFIG model.is_rhand={str(layer.is_rhand).lower()} name=NAME "
                         "publish=false, then scripts/train_pairof.sh CONFIG with the same model.is_rhand and "
                         "model.lbs_weights=smplx/out/NAME/lbs_weights.pth")
    if saved["lbs_weights_sha256"] != weights_fingerprint(layer):
        raise InputError(f"{path} was trained on a MANO-HD with other skinning weights ({saved['lbs_weights']}); "
                         "load the same lbs_weights.pth into the layer, or retrain PairOF for these weights")
    field = PairOF.from_layer(layer, **saved["field"])
    faces = saved["state_dict"].get("faces")
    if faces is not None and (faces.shape != field.faces.shape or not torch.equal(faces.to(field.faces), field.faces)):
        raise InputError(f"{path} was trained on another mesh than this MANO-HD (its triangles differ: another hand "
                         "model, the other hand or another subdivision level); retrain PairOF for this one")
    field.load_state_dict(saved["state_dict"])
    return field
