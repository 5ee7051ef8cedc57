"""The textured-mesh baseline scored as validation scores the avatar: colours unprojected from the training subject's
crops, renders of the evaluation frames (whole crop on black, the paper protocol) and their PSNR, SSIM and LPIPS
(`handavatar.metrics.frame_metrics`). Command line: `python -m bench.texture_baseline`; validation (`phase: val`)
reports it beside the avatar.

Writes, in its output folder: summary.json (means, per-frame metrics, settings and a fingerprint of every input),
colours.npz (the per-vertex colours and how many frames saw each vertex) and frames.png (up to 8 evaluation frames:
target | baseline). A later call with the same inputs reads summary.json instead of computing it again.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from smplx.utils.fileio import atomic_write, to_uint8, write_json, write_png
from handavatar.baseline.texture import VertexColours, hand_layer, pose_meshes, render_vertex_colours
from handavatar.config import data_config
from handavatar.data import InterHandDataset, to_tensors
from handavatar.lpips import LPIPS
from handavatar.metrics import frame_metrics

__all__ = ["texture_baseline", "fit_vertex_colours", "image_colours", "baseline_layer", "training_crops",
           "posed_vertices", "BASELINE_VERSION", "BASELINE_METRICS"]

BASELINE_VERSION = 1  # part of the fingerprint: raise it when the method changes
BASELINE_METRICS = ("psnr", "ssim", "psnr_masked", "ssim_masked", "lpips")  # the means its summary reports


def training_crops(config, *, layers: bool = False) -> InterHandDataset:
    """The training subject's frames (`data.skip`, `data.max_frames`) as whole crops on black, as the avatar's
    patches are cut from them; with `layers`, also a synthetic capture's ground-truth albedo and shading."""
    return InterHandDataset(data_config(config, "train", mode="image", background="black", layers=layers))


def posed_vertices(layer, sample: dict) -> np.ndarray:
    """(V, 3) the posed mesh of a dataset sample (its 'global_orient', 'hand_pose' and 'betas'), model frame, dm."""
    return pose_meshes(layer, sample["global_orient"][None], sample["hand_pose"][None], sample["betas"][None])[0]


def fit_vertex_colours(layer, dataset: InterHandDataset, *, target: str = "target_rgb", progress: bool = True
                       ) -> VertexColours:
    """Unproject every frame of `dataset` (whole crops) onto the layer's posed mesh: its `target` image
    ('target_rgb', or 'target_albedo' with ground-truth layers) where the crop's hand mask is."""
    faces = layer.output_faces.numpy()
    colours = VertexColours.empty(layer.num_vertices)
    for index in tqdm(range(len(dataset)), desc="texture baseline: unprojecting", unit="frame", disable=not progress):
        sample = dataset[index]
        colours.add_frame(posed_vertices(layer, sample), faces, sample["Th"], sample["K"], sample[target][0],
                          sample["target_alpha"][0] > 0)
    return colours


def baseline_layer(config):
    """MANO-HD of the config (`smpl_cfg`) for the capture's annotations (`data.root`, `data.hand`), float64."""
    cfg, d = config.smpl_cfg, config.data
    return hand_layer(d.root, cfg.model_path, hand=d.hand, levels=cfg.levels, lbs_weights=cfg.lbs_weights)


def image_colours(config, *, progress: bool = True) -> np.ndarray:
    """(V, 3) the baseline's texture: the training crops unprojected onto the posed MANO-HD, one colour per vertex
    (vertices no frame saw take their neighbours'); the avatar's `network.texture_init: images`."""
    layer = baseline_layer(config)
    return fit_vertex_colours(layer, training_crops(config), progress=progress).filled(layer.output_faces.numpy())


def _fingerprint(config, train: InterHandDataset, evaluation: InterHandDataset, supersample: int, lpips: LPIPS
                 ) -> str:
    """A hash of what the baseline's figures depend on."""
    weights = Path(config.smpl_cfg.lbs_weights) if config.smpl_cfg.lbs_weights else None
    stat = weights.stat() if weights is not None and weights.is_file() else None
    parts = [BASELINE_VERSION, vars(config.data), config.smpl_cfg.model_path, config.smpl_cfg.levels,
             str(weights), stat and (stat.st_size, stat.st_mtime_ns), train.cache.fingerprint,
             evaluation.cache.fingerprint, len(evaluation), supersample, lpips.name]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def texture_baseline(config, dataset: InterHandDataset, lpips: LPIPS, out_dir: Path, *, supersample: int = 2,
                     progress: bool = True) -> dict:
    """Fit the baseline on the training subject and score it on `dataset`, or read the scores written earlier for
    the same inputs.

    Args:
        config: the AvatarConfig (data, smpl_cfg).
        dataset: the evaluation frames, whole crops on black (`handavatar.validate.evaluation_dataset`).
        lpips: the perceptual metric.
        out_dir: where summary.json, colours.npz and frames.png go.
        supersample: s x s rays per pixel.

    Returns:
        The summary dict: 'psnr', 'ssim', 'psnr_masked', 'ssim_masked', 'lpips' (means), 'per_frame', settings.
    """
    train = training_crops(config)
    key = _fingerprint(config, train, dataset, supersample, lpips)
    path = out_dir / "summary.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("fingerprint") == key:
            return cached
    d = config.data
    layer = baseline_layer(config)
    faces = layer.output_faces.numpy()
    start = time.perf_counter()
    colours = fit_vertex_colours(layer, train, progress=progress)
    table = colours.filled(faces)
    fit_seconds = time.perf_counter() - start
    rows, tiles = [], []
    for index in tqdm(range(len(dataset)), desc="texture baseline: rendering", unit="frame", disable=not progress):
        sample = dataset[index]
        shot = render_vertex_colours(posed_vertices(layer, sample), faces, table, sample["rays_o"], sample["K"],
                                     d.resolution, sample["bgcolor"], supersample=supersample)
        rgb = torch.from_numpy(shot.rgb).float()
        rows.append({"key": sample["key"], **frame_metrics(rgb[None], to_tensors(sample), lpips)})
        if len(tiles) < 8:
            tiles.append(torch.cat([torch.from_numpy(sample["target_rgb"][0]), rgb], 1))
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "colours.npz", lambda f: np.savez(f, colours=table, count=colours.count, faces=faces))
    write_png(out_dir / "frames.png", to_uint8(torch.cat(tiles, 0).numpy()))
    summary = {"method": "textured mesh: posed MANO-HD (annotated pose and shape), one colour per vertex averaged "
                         "over the training crops where the vertex is front-facing, visible and inside the mask",
               "subject": d.eval_subject, "frames": len(rows), "eval_skip": d.eval_skip,
               "train_subject": d.subject, "train_frames": len(train),
               "protocol": f"paper: whole {d.resolution}x{d.resolution} crop, black background, 8-bit; masked: hand "
                           "pixels only (PSNR, SSIM)",
               "lpips_name": lpips.name, "supersample": supersample, "vertices": len(table),
               "vertices_seen": float((colours.count > 0).mean()), "fit_seconds": round(fit_seconds, 1),
               **{name: float(np.mean([r[name] for r in rows])) for name in BASELINE_METRICS},
               "per_frame": rows, "fingerprint": key}
    write_json(path, summary, indent=2)
    return summary
