"""Reading PairOF checkpoints (pairof.ckpt) for a MANO-HD layer, with the checks that keep field and hand matched."""

from __future__ import annotations

import hashlib
from pathlib import Path

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
    if saved["lbs_weights_sha256"] != weights_fingerprint(layer):
        raise InputError(f"{path} was trained on a MANO-HD with other skinning weights ({saved['lbs_weights']}); "
                         "load the same lbs_weights.pth into the layer, or retrain PairOF for these weights")
    field = PairOF.from_layer(layer, **saved["field"])
    field.load_state_dict(saved["state_dict"])
    return field
