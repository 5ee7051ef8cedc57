"""The avatar's dataset over one subject of an InterHand2.6M-layout root (real, or a synthetic capture).

Each sample is one frame of one camera: the masked image composited on a background, cropped to a square of
`crop_scale` x the hand box and resized to `resolution`, with its rays in the model frame M (origin -Th, directions
K'^-1 (u, v, 1), so t is camera depth in dm) and near/far where they cross the posed hand's 3D box.

Both modes return pixel grids of the same keys, shaped (P, h, w): 'patch' mode (training) P = n_patches patches of
patch_size^2 pixels, each centred on a hand pixel with probability sample_subject_ratio and otherwise on a box pixel
off the hand; 'image' mode (evaluation) P = 1 grid of the whole crop. Only pixels with `ray_mask` need rendering.
'world_rotation' is the frame camera's world-to-camera rotation, which turns the capture's world frame into M's
orientation (the learned lights of `network.lights` live in the world frame).
Targets are the masked image composited on the background and resampled; off the thresholded hand mask
(`target_alpha` = 0) they are exactly the background colour (`target: masked`), or, as published, the resampled
composite as it is, which blends hand and background along the outline (`target: composite`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from smplx.utils.cli import InputError, MissingFileError
from segment.annotations import Subject
from segment.interhand import IMAGE_TREE, MASK_TREE, FrameFileError, read_rgb, tree_path
from segment.preprocess import AnnotationCache, load_cache, load_caches
from handavatar.data.crop import crop_intrinsics, crop_transform, warp
from handavatar.data.rays import box_hit_mask, pixel_directions, ray_box_intersection

__all__ = ["DataConfig", "InterHandDataset", "prepare_caches", "to_tensors"]

_log = logging.getLogger(__name__)


@dataclass
class DataConfig:
    root: str = "data/synthetic"  # dataset root: data/InterHand/5, or a synthetic capture
    subject: str = "test/Capture0/ROM04_RT_Occlusion"  # '<split>/Capture<N>/<sequence>[/cam<id>]'
    hand: str = "right"
    model: str | None = None  # hand model; None: the capture's (synthetic) or mano/
    mode: str = "patch"  # 'patch' (training) or 'image' (evaluation)
    resolution: int = 256  # crop size, px
    crop_scale: float = 1.3  # crop side / hand box side
    bbox_offset: float = 0.01  # margin of the posed mesh's 3D box, dm (stored in the annotation cache)
    box_padding: float = 0.01  # further margin for the ray/box test, dm
    n_patches: int = 2
    patch_size: int = 32
    sample_subject_ratio: float = 0.8  # chance that a patch is centred on the hand
    background: str = "random"  # 'random' (a colour per sample), 'black' or 'white'
    skip: int = 1  # keep every skip-th frame
    order: str = "sorted"  # before skip: 'sorted' by (capture, frame, camera), or 'published': data.json's annotation
    # order, as the published loader (the same frames when data.json lists them frame by frame)
    max_frames: int = -1  # keep at most this many frames (-1: all)
    layers: bool = False  # also the albedo and shading ground truth of a synthetic capture ('target_albedo', ...)
    target: str = "masked"  # 'masked': off the thresholded warped mask the target is exactly the background (ours);
    # 'composite': the warped composite as it is, blended at the outline (published)


def prepare_caches(*configs: DataConfig) -> None:
    """Bring the annotation caches of these datasets' subjects up to date before the datasets are made (each then
    reads its own), reading each split's annotation files once for all of them: a dataset builds a missing or stale
    cache alone, reading the whole split for its one subject (`segment.preprocess.load_caches`)."""
    groups: dict[tuple, list[str]] = {}
    for config in configs:
        groups.setdefault((config.root, config.hand, config.model, config.bbox_offset), []).append(config.subject)
    for (root, hand, model, bbox_offset), subjects in groups.items():
        load_caches(root, subjects, hand=hand, model=model, bbox_offset=bbox_offset)


class InterHandDataset(Dataset):
    """Samples of one subject (see the module docstring). Works with DataLoader workers and DistributedSampler.

    Args:
        config: the data settings.
        cache: an annotation cache to use instead of loading (or building) the subject's.
    """

    def __init__(self, config: DataConfig, cache: AnnotationCache | None = None):
        if config.mode not in ("patch", "image"):
            raise ValueError(f"data mode {config.mode!r} is not 'patch' or 'image'")
        if config.background not in ("random", "black", "white"):
            raise ValueError(f"background {config.background!r} is not 'random', 'black' or 'white'")
        if config.target not in ("masked", "composite"):
            raise ValueError(f"target {config.target!r} is not 'masked' or 'composite'")
        if config.order not in ("sorted", "published"):
            raise ValueError(f"frame order {config.order!r} is not 'sorted' or 'published'")
        if config.mode == "patch" and config.patch_size > config.resolution:
            raise InputError(f"patch_size {config.patch_size} is larger than the crop ({config.resolution})")
        self.config = config
        self.subject = Subject.parse(config.subject)
        cache = cache if cache is not None else load_cache(config.root, self.subject, hand=config.hand,
                                                           model=config.model, bbox_offset=config.bbox_offset)
        if config.order == "published":
            cache = cache.select(np.argsort(cache.annotation_order, kind="stable"))
        cache = cache.select(slice(None, None, max(config.skip, 1)))
        self.cache = cache.select(slice(None, config.max_frames if config.max_frames >= 0 else None))
        if len(self.cache) == 0:
            raise InputError(f"subject {config.subject} has no frames left after skip={config.skip}, "
                             f"max_frames={config.max_frames}")
        self._warned: set[str] = set()

    def __len__(self) -> int:
        return len(self.cache)

    def _background(self) -> np.ndarray:
        if self.config.background == "random":
            return torch.rand(3).numpy().astype(np.float32)
        return np.full(3, 0.0 if self.config.background == "black" else 1.0, np.float32)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        split, file_name = str(self.cache.keys[index]).split("/", 1)
        root = self.config.root
        rgb = read_rgb(tree_path(root, IMAGE_TREE, split, file_name))
        mask = read_rgb(tree_path(root, MASK_TREE, split, file_name, ".png"), what="mask")[..., 0]
        return rgb, mask

    def __getitem__(self, index: int) -> dict:
        for attempt in range(len(self)):
            i = (index + attempt) % len(self)
            try:
                rgb, mask = self._load(i)
            except FrameFileError as error:  # a file vanished or broke after the cache was built: use the next frame
                if str(error.path) not in self._warned:
                    self._warned.add(str(error.path))
                    _log.warning("skipping frame %s: %s", self.cache.keys[i], error)
                continue
            return self._sample(i, rgb, mask)
        raise InputError(f"no frame of {self.config.subject} could be read (see the warnings above): its images or "
                         "masks are missing or damaged: restore them, or rebuild the cache with segment.preprocess, "
                         "which leaves unreadable frames out")

    def _sample(self, i: int, rgb: np.ndarray, mask: np.ndarray) -> dict:
        cfg, cache = self.config, self.cache
        size = cfg.resolution
        bg = self._background()
        alpha = (mask > 127).astype(np.float32)[..., None]
        composite = alpha * (rgb.astype(np.float32) / 255) + (1 - alpha) * bg
        transform = crop_transform(cache.bbox[i], scale=cfg.crop_scale, size=size)
        hand = warp(mask, transform, size) > 150
        image = warp(composite, transform, size, border=bg)
        if cfg.target == "masked":  # off the (thresholded) hand exactly the background, as a render's empty pixels
            image = np.where(hand[..., None], image, bg)
        K = crop_intrinsics(cache.K[i], transform)
        layers = self._layers(i, transform, hand) if cfg.layers else {}

        origin = -cache.Th[i]
        box_min, box_max = cache.box_min[i] - cfg.box_padding, cache.box_max[i] + cfg.box_padding
        if cfg.mode == "image":
            corners = np.zeros((1, 2), int)
            h = w = size
        else:
            corners = self._patch_corners(hand, box_hit_mask(K, origin, box_min, box_max, size, size))
            h = w = cfg.patch_size
        grid_y = corners[:, 0, None, None] + np.arange(h)[None, :, None]  # (P, h, 1)
        grid_x = corners[:, 1, None, None] + np.arange(w)[None, None, :]  # (P, 1, w)
        grid_y, grid_x = np.broadcast_arrays(grid_y, grid_x)
        directions = pixel_directions(K, grid_x.astype(float), grid_y.astype(float))
        near, far, ray_mask = ray_box_intersection(origin, directions, box_min, box_max)
        f32 = np.float32
        return {
            "rays_o": origin.astype(f32), "rays_d": directions.astype(f32), "near": near.astype(f32),
            "far": far.astype(f32), "ray_mask": ray_mask, "pixels": np.stack([grid_x, grid_y], -1).astype(np.int64),
            "target_rgb": image[grid_y, grid_x].astype(f32), "target_alpha": hand[grid_y, grid_x].astype(f32),
            "alpha_image": hand.astype(f32),
            "bgcolor": bg, "K": K.astype(f32), "Th": cache.Th[i].astype(f32),
            "world_rotation": cache.camrot[i].astype(f32),
            "global_orient": cache.global_orient[i].astype(f32), "hand_pose": cache.hand_pose[i].astype(f32),
            "betas": cache.betas[i].astype(f32), "joints": cache.joints[i].astype(f32),
            "joints_cam": cache.joints_cam[i].astype(f32), "joint_valid": cache.joint_valid[i],
            "box_min": box_min.astype(f32), "box_max": box_max.astype(f32), "key": str(cache.keys[i]),
            "index": i, **{name: layer[grid_y, grid_x] for name, layer in layers.items()},
        }

    def _layers(self, i: int, transform: np.ndarray, hand: np.ndarray) -> dict[str, np.ndarray]:
        """The crop's ground-truth 'target_albedo' (size, size, 3) and 'target_shading' (size, size, 1) in [0, 1],
        zero off the hand, from a synthetic capture's albedo/ and shading/ trees."""
        split, file_name = str(self.cache.keys[i]).split("/", 1)
        out = {}
        for name, channels in (("albedo", 3), ("shading", 1)):
            path = tree_path(self.config.root, name, split, file_name, ".png")
            if not path.is_file():
                raise MissingFileError(f"{path} does not exist: ground-truth {name} images exist only in synthetic "
                                        "captures (python -m segment.synthetic); set layers off for real data")
            layer = read_rgb(path, what=name)[..., :channels].astype(np.float32) / 255
            warped = warp(layer, transform, self.config.resolution).reshape(*hand.shape, channels)
            out[f"target_{name}"] = np.where(hand[..., None], warped, 0.0).astype(np.float32)
        return out

    def _patch_corners(self, hand: np.ndarray, on_box: np.ndarray) -> np.ndarray:
        """(P, 2) top-left (row, column) of each patch, kept inside the crop."""
        cfg = self.config
        rng = np.random.default_rng(int(torch.randint(2 ** 62, ()).item()))  # follows torch's per-worker seeding
        pools = (np.argwhere(hand), np.argwhere(on_box & ~hand))
        corners = []
        for _ in range(cfg.n_patches):
            pool = pools[0] if rng.random() < cfg.sample_subject_ratio or len(pools[1]) == 0 else pools[1]
            centre = pool[rng.integers(len(pool))] if len(pool) else np.array([cfg.resolution // 2] * 2)
            corners.append(np.clip(centre - cfg.patch_size // 2, 0, cfg.resolution - cfg.patch_size))
        return np.stack(corners)


def to_tensors(sample: dict, device: torch.device | str = "cpu") -> dict:
    """A sample of InterHandDataset as tensors on `device` (strings such as the frame key stay as they are)."""
    return {k: v if isinstance(v, str) else torch.as_tensor(v).to(device) for k, v in sample.items()}
