"""What limits the avatar's appearance, measured without training an avatar: how well the published albedo field and
a per-vertex albedo can hold the synthetic subject's true albedo, and how often the avatar's training sees each code.

    python -m bench.appearance_ceiling [--config configs/synthetic/demo.yaml] [--anchors 4096,16384] [--steps 2000]
                                       [--batch 4096] [--levels 2,3] [key.sub=value ...]

Needs a synthetic capture (its albedo/ tree). Every figure is on the validation frames (data.eval_subject every
data.eval_skip-th frame, whole crops) against their true albedo, with validation's albedo error (mean absolute
error on hand pixels after a least-squares scale per channel) and the albedo's PSNR on the hand pixels:

- **per-vertex albedo** at each of --levels MANO-HD subdivision levels: the true albedo of the training crops
  unprojected onto the vertices (the textured-mesh baseline's unprojection), ray-cast on the validation frames; and
  the same of the training images' colours (the baseline's texture, its shading baked in) as an albedo;
- **the albedo field** (handavatar.model.AlbedoField: a code per surface anchor, blended over the 4 nearest posed
  anchors by inverse distance, an MLP) with each of --anchors anchors, fitted by Adam (the config's learning rates of
  the codebook and the MLP, L1) directly to the true albedo of the training crops' hand pixels at the posed mesh's
  surface: --steps steps of --batch random pixels (its capacity), and train.maxiter steps of the pixels of the
  config's patches per image (the supervision the avatar's training gives, without the renderer and SelF);
- **anchor coverage**: over train.maxiter iterations of the config's patches (frames in random order, epoch after
  epoch, as the trainer), in how many iterations each of the field's anchors is among the 4 nearest anchors of a
  patch pixel's surface point.

The posed mesh is MANO-HD (smpl_cfg) with the annotated pose and shape, as the baseline. Prints a table and writes
summary.json to --out (default <out_root>/<experiment>/appearance_ceiling/).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from smplx.utils.config import ConfigError, load_config
from smplx.utils.raycast import EmbreeMesh
from pairof import PairOF
from handavatar.baseline import fit_vertex_colours, hand_layer, pose_meshes, render_vertex_colours, training_crops
from handavatar.data import InterHandDataset
from handavatar.lpips import load_lpips
from handavatar.metrics import frame_metrics, psnr
from handavatar.model.albedo import AlbedoField
from handavatar.render.anchors import AnchorIndex
from handavatar.config import DEFAULTS, AvatarConfig, data_config
from handavatar.validate import evaluation_dataset, layer_errors

_LPIPS = load_lpips("", "")  # ST-LPIPS, as the demo's validation

def _surface(layer, sample: dict, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The posed mesh's first hits (N, 3) (model frame, dm) of a sample's rays at (N, 3) grid indices (patch, row,
    column), and (N,) whether each ray hit."""
    vertices = pose_meshes(layer, sample["global_orient"][None], sample["hand_pose"][None], sample["betas"][None])[0]
    directions = sample["rays_d"][tuple(pixels.T)].astype(float)
    origin = sample["rays_o"].astype(float)
    face, _, t = EmbreeMesh(vertices, layer.output_faces.numpy()).intersect(np.broadcast_to(origin, directions.shape),
                                                                           directions)
    return origin + t[:, None] * directions, face >= 0


def _anchor_table(layer, anchors: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (A,) faces and (A, 3) barycentrics of the avatar's surface anchors (PairOF's, drawn from its seed)."""
    field = PairOF.from_layer(layer, anchors=anchors)
    return field.faces[field.anchor_faces], field.anchor_bary.double()


def _posed_anchors(layer, sample: dict, table) -> torch.Tensor:
    vertices = torch.from_numpy(pose_meshes(layer, sample["global_orient"][None], sample["hand_pose"][None],
                                            sample["betas"][None])[0])
    corners, bary = table
    return (bary[..., None] * vertices[corners]).sum(-2)


def _hand_pixels(sample: dict) -> np.ndarray:
    """(N, 3) grid indices of the hand pixels of a sample."""
    return np.argwhere(sample["target_alpha"] > 0)


def _lookups(layer, dataset: InterHandDataset, table, *, desc: str) -> dict[str, torch.Tensor]:
    """Every hand pixel of every frame that hits the mesh: its 4 nearest posed anchors ('dists', 'ids'), true albedo
    ('albedo'), frame ('frame') and grid index ('pixel')."""
    parts = []
    for index in tqdm(range(len(dataset)), desc=desc, unit="frame"):
        sample = dataset[index]
        pixels = _hand_pixels(sample)
        points, hit = _surface(layer, sample, pixels)
        dists, ids = AnchorIndex(_posed_anchors(layer, sample, table), 4).query(torch.from_numpy(points[hit]))
        parts.append({"dists": dists.float(), "ids": ids, "albedo": torch.from_numpy(
            sample["target_albedo"][tuple(pixels[hit].T)]), "frame": torch.full((int(hit.sum()),), index),
            "pixel": torch.from_numpy(pixels[hit])})
    return {name: torch.cat([p[name] for p in parts]) for name in parts[0]}


def _scores(dataset: InterHandDataset, images: list[torch.Tensor], hits: list[torch.Tensor]) -> dict[str, float]:
    """Of (1, H, W, 3) albedo images of the frames whose (H, W) `hits` say where the mesh was hit: the mean albedo
    error (validation's), albedo PSNR on the hand pixels and on those the mesh covers, and the validation metrics
    (paper protocol) of albedo x the true shading ('with_true_shading': the true silhouette, only the albedo ours)."""
    errors, hand, covered, frames = [], [], [], []
    for index, (albedo, hit) in enumerate(zip(images, hits)):
        sample = {k: torch.as_tensor(v) for k, v in dataset[index].items() if k != "key"}
        out = {"albedo": albedo, "shading": torch.ones_like(albedo[..., :1])}
        errors.append(layer_errors(out, sample)["albedo_error"])
        mask = sample["target_alpha"][0] > 0
        hand.append(psnr(albedo[0], sample["target_albedo"][0], mask).item())
        covered.append(psnr(albedo[0], sample["target_albedo"][0], mask & hit).item())
        frames.append(frame_metrics(albedo * sample["target_shading"], sample, _LPIPS))
    return {"albedo_error": float(np.mean(errors)), "albedo_psnr_hand": float(np.mean(hand)),
            "albedo_psnr_covered": float(np.mean(covered)),
            "with_true_shading": {name: float(np.mean([f[name] for f in frames])) for name in frames[0]}}


def per_vertex(config, evaluation: InterHandDataset, levels: int, target: str) -> dict[str, float]:
    """A per-vertex colour at MANO-HD `levels` unprojected from the training crops' `target` images."""
    cfg, d = config.smpl_cfg, config.data
    layer = hand_layer(d.root, cfg.model_path, hand=d.hand, levels=levels,
                       lbs_weights=cfg.lbs_weights if levels == cfg.levels else "")
    colours = fit_vertex_colours(layer, training_crops(config, layers=True), target=target)
    table, faces = colours.filled(layer.output_faces.numpy()), layer.output_faces.numpy()
    images, hits = [], []
    for index in range(len(evaluation)):
        sample = evaluation[index]
        vertices = pose_meshes(layer, sample["global_orient"][None], sample["hand_pose"][None],
                               sample["betas"][None])[0]
        shot = render_vertex_colours(vertices, faces, table, sample["rays_o"], sample["K"], d.resolution,
                                     np.zeros(3))
        images.append(torch.from_numpy(shot.rgb).float()[None])
        hits.append(torch.from_numpy(shot.alpha > 0))
    return {"vertices": len(table), **_scores(evaluation, images, hits)}


def fit_field(config, train: dict, evaluation: InterHandDataset, held: dict, anchors: int, steps: int,
              batches, *, seed: int = 0) -> dict[str, float]:
    """Fit an AlbedoField to the training lookups, `steps` steps of the pixel indices `batches(step)` gives."""
    torch.manual_seed(seed)
    field = AlbedoField(anchors=anchors, code_dim=config.network.code_dim)
    mlp = [p for name, p in field.named_parameters() if name != "codes"]
    optimizer = torch.optim.Adam([{"params": [field.codes], "lr": config.train.lr_codes},
                                  {"params": mlp, "lr": config.train.lr}])
    start = time.perf_counter()
    for step in tqdm(range(steps), desc=f"albedo field, {anchors} anchors", unit="step"):
        pick = batches(step)
        loss = (field(train["dists"][pick], train["ids"][pick]) - train["albedo"][pick]).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        predicted = torch.cat([field(d, i) for d, i in zip(held["dists"].split(65536), held["ids"].split(65536))])
    size = config.data.resolution
    images = [torch.zeros(1, size, size, 3) for _ in range(len(evaluation))]
    hits = [torch.zeros(size, size, dtype=torch.bool) for _ in range(len(evaluation))]
    for frame, (image, hit) in enumerate(zip(images, hits)):
        mine = held["frame"] == frame
        image[tuple(held["pixel"][mine].T)] = predicted[mine]
        hit[tuple(held["pixel"][mine, 1:].T)] = True
    return {"steps": steps, "fit_seconds": round(seconds, 1), "train_l1": loss.item(),
            **_scores(evaluation, images, hits)}


def coverage(config, layer, table, anchors: int) -> dict[str, float]:
    """How many of train.maxiter patch iterations see each anchor (see the module docstring)."""
    dataset = InterHandDataset(data_config(config, "train"))
    torch.manual_seed(config.seed)
    order = torch.cat([torch.randperm(len(dataset)) for _ in range(config.train.maxiter // len(dataset) + 1)])
    seen = np.zeros(anchors, np.int64)
    for index in tqdm(order[:config.train.maxiter].tolist(), desc="anchor coverage", unit="iteration"):
        sample = dataset[index]
        pixels = np.argwhere(sample["ray_mask"])
        points, hit = _surface(layer, sample, pixels)
        if hit.any():
            _, ids = AnchorIndex(_posed_anchors(layer, sample, table), 4).query(torch.from_numpy(points[hit]))
            seen[np.unique(ids.numpy())] += 1
    return {"iterations": config.train.maxiter, "never": float((seen == 0).mean()),
            "median": float(np.median(seen)), "p10": float(np.percentile(seen, 10)),
            "p90": float(np.percentile(seen, 90)), "mean": float(seen.mean())}


def synthetic_config(path: Path, overrides: list[str], needs: str) -> AvatarConfig:
    """The avatar config of `path` with `overrides`, whose data.root must be a synthetic capture (ground-truth
    layers); `needs` says what for, in the error.

    Raises:
        ConfigError: a bad config. ValueError: data.root is not a synthetic capture.
    """
    config = load_config(AvatarConfig, [DEFAULTS, path], overrides)
    if not (Path(config.data.root) / "capture.json").is_file():
        raise ValueError(f"data.root={config.data.root} is not a synthetic capture: {needs} "
                         "(python -m segment.synthetic)")
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.appearance_ceiling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("configs/synthetic/demo.yaml"))
    parser.add_argument("--anchors", type=lambda text: [int(a) for a in text.split(",") if a], default=[4096, 16384],
                        help="comma-separated anchor counts of the albedo fields to fit ('': none)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--levels", type=lambda text: [int(a) for a in text.split(",")], default=[2, 3])
    parser.add_argument("--out", type=Path)
    parser.add_argument("overrides", nargs="*", help="key.sub=value")
    args = parser.parse_args(argv)
    try:
        config = synthetic_config(args.config, args.overrides, "the ceilings need its true albedo")
    except (ConfigError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = args.out or Path(config.out_root) / config.experiment / "appearance_ceiling"
    evaluation = evaluation_dataset(config)
    evaluation.config.layers = True
    results = {"per_vertex": {level: per_vertex(config, evaluation, level, "target_albedo") for level in args.levels},
               "baked": {level: per_vertex(config, evaluation, level, "target_rgb") for level in args.levels}}
    cfg, d = config.smpl_cfg, config.data
    layer = hand_layer(d.root, cfg.model_path, hand=d.hand, levels=cfg.levels, lbs_weights=cfg.lbs_weights)
    pixels_per_iteration = config.patch.N_patches * config.patch.size ** 2
    results["field"], results["coverage"] = {}, {}
    for anchors in args.anchors:
        table = _anchor_table(layer, anchors)
        train = _lookups(layer, training_crops(config, layers=True), table, desc=f"training pixels, {anchors} anchors")
        held = _lookups(layer, evaluation, table, desc="validation pixels")
        count = len(train["albedo"])
        generator = torch.Generator().manual_seed(0)
        results["field"][anchors] = {
            "capacity": fit_field(config, train, evaluation, held, anchors, args.steps,
                                  lambda step: torch.randint(count, (args.batch,), generator=generator)),
            "avatar_budget": fit_field(config, train, evaluation, held, anchors, config.train.maxiter,
                                       lambda step: torch.randint(count, (pixels_per_iteration,),
                                                                  generator=generator))}
        results["coverage"][anchors] = coverage(config, layer, table, anchors)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(results, indent=2))
    print("| appearance | albedo error | albedo PSNR: hand / covered by the mesh | x true shading: PSNR / hand PSNR / "
          "SSIM / ST-LPIPS |\n|---|---|---|---|")
    rows = [(f"per-vertex true albedo, MANO-HD level {level} ({r['vertices']} vertices)", r)
            for level, r in results["per_vertex"].items()]
    rows += [(f"per-vertex image colour (shading baked in: the baseline's texture), level {level}", r)
             for level, r in results["baked"].items()]
    rows += [(f"albedo field, {anchors} anchors, {name} ({r['steps']} steps, {r['fit_seconds']} s)", r)
             for anchors, fits in results["field"].items() for name, r in fits.items()]
    for name, r in rows:
        t = r["with_true_shading"]
        print(f"| {name} | {r['albedo_error']:.4f} | {r['albedo_psnr_hand']:.2f} / {r['albedo_psnr_covered']:.2f} | "
              f"{t['psnr']:.2f} / {t['psnr_masked']:.2f} / {t['ssim']:.3f} / {t['lpips']:.3f} |")
    for anchors, r in results["coverage"].items():
        print(f"{anchors} anchors over {r['iterations']} iterations: never seen {100 * r['never']:.1f}%, seen in "
              f"{r['p10']:.0f} / {r['median']:.0f} / {r['p90']:.0f} iterations (10th percentile / median / 90th)")
    print(f"wrote {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
