"""A side-by-side picture of held-out frames: truth | textured-mesh baseline | avatar, one row per frame.

    python -m bench.texture_baseline --config configs/synthetic/demo.yaml --strip docs/appearance_strip.png

The baseline's per-vertex colours come from its colours.npz (written by `texture_baseline`, which runs first); the
avatar is the run's latest.tar (`handavatar.checkpoint.load_avatar`, checked against the config).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from smplx.utils.fileio import to_uint8, write_png
from handavatar.baseline.evaluate import posed_vertices
from handavatar.baseline.texture import hand_layer, render_vertex_colours
from handavatar.data import InterHandDataset, to_tensors

__all__ = ["comparison_strip", "strip_frames"]


def strip_frames(count: int, frames: int) -> list[int]:
    """`frames` indices spread evenly over `count` frames (all of them when there are fewer), first and last
    included."""
    if frames >= count:
        return list(range(count))
    return np.linspace(0, count - 1, frames).round().astype(int).tolist()


def comparison_strip(config, avatar, dataset: InterHandDataset, colours: Path, out: Path, *, frames: int = 4,
                     supersample: int = 2, device: torch.device | None = None) -> Path:
    """Render `frames` evaluation frames with the baseline and the avatar and write truth | baseline | avatar rows.

    Args:
        config: the AvatarConfig (data, smpl_cfg, chunk).
        avatar: the trained HandAvatar.
        dataset: the evaluation frames, whole crops on black (`handavatar.validate.evaluation_dataset`).
        colours: the baseline's colours.npz ('colours': (V, 3) in [0, 1], 'faces': (F, 3)).
        out: the PNG to write; frames: rows; supersample: the baseline's s x s rays per pixel.

    Returns:
        out.
    """
    if not colours.is_file():
        raise FileNotFoundError(f"{colours} does not exist: run the texture baseline first (python -m "
                                "bench.texture_baseline with the same config)")
    table = np.load(colours)
    d, cfg = config.data, config.smpl_cfg
    layer = hand_layer(d.root, cfg.model_path, hand=d.hand, levels=cfg.levels, lbs_weights=cfg.lbs_weights)
    rows = []
    avatar.eval()
    with torch.no_grad():
        for index in strip_frames(len(dataset), frames):
            sample = dataset[index]
            shot = render_vertex_colours(posed_vertices(layer, sample), table["faces"], table["colours"], sample["rays_o"],
                                         sample["K"], d.resolution, sample["bgcolor"], supersample=supersample)
            rendered = avatar.render(to_tensors(sample, device or "cpu"), chunk=config.chunk)["rgb"][0].float().cpu()
            rows.append(torch.cat([torch.from_numpy(sample["target_rgb"][0]).float(),
                                   torch.from_numpy(shot.rgb).float(), rendered], 1))
    return write_png(out, to_uint8(torch.cat(rows, 0).numpy()))
