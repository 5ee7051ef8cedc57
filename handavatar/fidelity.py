"""What `fidelity: published` cannot set: inputs made by other programs (the masks, the skinning weights, PairOF) and
the LPIPS weights. A published avatar run reads how its inputs were made where those programs record it and warns
once per input that says it was made otherwise, naming the file and the command that remakes it the published way.

    for message in unpublished_inputs(config): ...     # [] unless config.fidelity == 'published'
    warn_unpublished_inputs(config)                    # the same, as warnings (build_avatar calls it)

What is recorded, and by whom: `segment.masks` writes its --fill into every mask PNG (`mask_fill`);
`smplx.manohd.train_lbs` writes `lbs_weights.json` beside the weights (`read_weights_record`; believed only while its
sha256 matches the weights); `pairof.train` writes its fidelity, pose draw, loss and precision into pairof.ckpt, and
`handavatar.authors` marks the files it imports from the authors' (`imported_from`). An input without a record (the
authors' lbs_weights.pth, weights made before the record existed) cannot be told apart and is not warned about.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from smplx.manohd.skinning import read_weights_record
from smplx.utils.cli import InputError
from smplx.utils.torchfile import read_torch_file
from segment.annotations import Subject
from segment.interhand import MASK_TREE, tree_path
from segment.masks import mask_fill
from handavatar.config import AvatarConfig

__all__ = ["unpublished_inputs", "warn_unpublished_inputs"]

_LBS_COMMAND = "scripts/train_lbs.sh configs/lbs/mano.yaml"
_PAIROF_COMMAND = "scripts/train_pairof.sh configs/pairof/mano.yaml"
# what pairof.train records (key of pairof.ckpt, then within it) -> its published value (pairof.train.PUBLISHED_PAIROF)
_PAIROF_PUBLISHED = {("poses", "mix"): "published", ("field", "input_scale"): 1.0, ("loss",): "mse",
                     ("precision",): "float32"}


def _masks(config: AvatarConfig) -> list[str]:
    """Messages for the subjects' mask folders whose PNGs say they were not filled the published way (one mask per
    camera folder is read: a folder is written by one command)."""
    messages = []
    for text in dict.fromkeys((config.data.subject, config.data.eval_subject)):
        subject = Subject.parse(text)
        folder = tree_path(config.data.root, MASK_TREE, subject.split, f"Capture{subject.capture}/{subject.seq_name}")
        cameras = [folder / f"cam{subject.camera}"] if subject.camera else sorted(folder.glob("cam*"))
        fills: dict[str | None, int] = {}
        for camera in cameras:
            first = next(iter(sorted(camera.glob("*.png"))), None)
            if first is not None:
                fill = mask_fill(first)
                fills[fill] = fills.get(fill, 0) + 1
        other = {fill: n for fill, n in fills.items() if fill != "published"}
        if other:
            said = ", ".join(f"{n} camera folder(s) {'filled ' + fill if fill else 'not saying how they were filled'}"
                             for fill, n in other.items())
            where = f"--split {subject.split} --capture {subject.capture} --seq {subject.seq_name}"
            messages.append(f"fidelity: published, but the masks of {subject} in {folder} are not the published "
                            f"ones ({said}); remake them with scripts/make_masks.sh --root {config.data.root} "
                            f"{where} --fill published --overwrite")
    return messages


def _skinning_weights(config: AvatarConfig) -> list[str]:
    path = config.smpl_cfg.lbs_weights
    if not path:
        return [f"fidelity: published, but smpl_cfg.lbs_weights is '' (the averaged MANO-HD weights); the published "
                f"avatar uses pretrained ones: {_LBS_COMMAND} (then PairOF: {_PAIROF_COMMAND})"]
    record = read_weights_record(path)
    if record is None or (record.get("poses.mix"), record.get("candidates")) == ("published", "all"):
        return []
    return [f"fidelity: published, but {path} was made with poses.mix={record.get('poses.mix')} and "
            f"candidates={record.get('candidates')} ({Path(path).with_suffix('.json')}); remake the weights with "
            f"{_LBS_COMMAND}, then PairOF with {_PAIROF_COMMAND}"]


def _pairof(config: AvatarConfig) -> list[str]:
    path = Path(config.smpl_cfg.pairof)
    try:
        saved = read_torch_file(path, what="a PairOF checkpoint", remedy="pretrain it again")
    except (OSError, InputError):
        return []  # build_avatar's load_pairof reports a missing or unreadable file
    if not isinstance(saved, dict) or "imported_from" in saved:
        return []  # the authors' file, imported by handavatar.authors
    if "poses" not in saved:
        return [f"fidelity: published, but {path} does not record its pose draw (made before pairof.train recorded "
                f"it); remake it with {_PAIROF_COMMAND}"]
    differ = []
    for keys, published in _PAIROF_PUBLISHED.items():
        value = saved
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if value != published:
            differ.append(f"{'.'.join(keys)}={value} (published: {published})")
    if not differ:
        return []
    return [f"fidelity: published, but {path} was trained with {', '.join(differ)}; remake it with {_PAIROF_COMMAND}"]


def unpublished_inputs(config: AvatarConfig) -> list[str]:
    """Why a `fidelity: published` run is not the published recipe in what its config cannot set: one message per
    input that records it was made otherwise, and one for ST-LPIPS standing in for LPIPS-VGG. Empty for
    `fidelity: ours`."""
    if config.fidelity != "published":
        return []
    messages = _masks(config) + _skinning_weights(config) + _pairof(config)
    if not (config.lpips.vgg and config.lpips.heads):
        messages.append("fidelity: published, but lpips.vgg and lpips.heads are empty: loss and metric are ST-LPIPS, "
                        "not the paper's LPIPS-VGG (docs/fidelity.md, 'LPIPS-VGG, as the paper')")
    return messages


def warn_unpublished_inputs(config: AvatarConfig) -> None:
    """`unpublished_inputs` as warnings (each shown once per process by Python's default warning filter)."""
    for message in unpublished_inputs(config):
        warnings.warn(message, stacklevel=2)
