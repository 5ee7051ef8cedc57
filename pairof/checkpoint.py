"""Reading PairOF checkpoints (pairof.ckpt) for a MANO-HD layer, with the checks that keep field and hand matched."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from smplx import MANO
from pairof.model import PairOF

__all__ = ["load_pairof", "weights_fingerprint"]


def weights_fingerprint(layer: MANO) -> str:
    """sha256 of the skinning weights a field's partition is built from (float32 bytes)."""
    return hashlib.sha256(layer.lbs_weights.detach().float().cpu().numpy().tobytes()).hexdigest()


def load_pairof(path: str | Path, layer: MANO) -> PairOF:
    """A field from a pairof.ckpt (ours) for a MANO-HD layer carrying the skinning weights it was trained with.

    Raises:
        FileNotFoundError: no file (says how to make one).
        ValueError: the file was trained for other skinning weights or another mesh.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PairOF checkpoint {path} does not exist; pretrain one with scripts/train_pairof.sh")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if "field" not in saved or "lbs_weights_sha256" not in saved:
        raise ValueError(f"{path} is not a checkpoint of this project's pairof.train (no field settings); retrain")
    if saved["lbs_weights_sha256"] != weights_fingerprint(layer):
        raise ValueError(f"{path} was trained on a MANO-HD with other skinning weights ({saved['lbs_weights']}); "
                         "load the same lbs_weights.pth into the layer, or retrain PairOF for these weights")
    field = PairOF.from_layer(layer, **saved["field"])
    field.load_state_dict(saved["state_dict"])
    return field
