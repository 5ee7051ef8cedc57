"""MANO-HD skinning weights: the objective of the LBS-weight pretraining, its evaluation, and loading weight files.

The pretraining (reference section 2.4) learns weights W (V_hd, 16) such that the posed MANO-HD mesh follows the posed
base mesh and stays smooth. Units are those of the layers passed in (decimetres with `scale=10`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trimesh
from scipy.spatial import cKDTree
from torch import Tensor

from smplx.body_models import MANO
from smplx.utils.cli import InputError, MissingFileError
from smplx.hand_pose import MIXES, prior_poses, sample_prior, slerp_prior
from smplx.mesh import face_normals
from smplx.utils.fileio import atomic_write
from smplx.utils.torchfile import read_torch_file
from smplx.mesh_losses import (face_adjacency, faces_to_all_points_sq, laplacian_smoothing, mesh_to_points_sq,
                               normal_consistency, point_triangle_distance_sq, points_to_all_faces_sq,
                               points_to_mesh_sq, uniform_laplacian)

__all__ = ["normalize_weights", "SkinningObjective", "PoseSampler", "surface_distances", "evaluate_weights",
           "load_lbs_weights", "write_weights_record", "read_weights_record"]


def normalize_weights(raw: Tensor) -> Tensor:
    """Skinning weights from free parameters: clamp to [0, 1], then divide each row by its sum (reference 2.4).

    Args:
        raw: (V, J) parameters.

    Returns:
        (V, J) non-negative weights, rows summing to 1.
    """
    clamped = raw.clamp(0, 1)
    return clamped / clamped.sum(1, keepdim=True).clamp_min(1e-8)


@dataclass
class LossTerms:
    laplacian: Tensor  # mean |L v| of the posed HD mesh
    surface: Tensor  # mean squared HD-vertex-to-base-surface plus base-face-to-HD-vertex distance
    normal: Tensor  # mean 1 - cos between normals of adjacent HD faces
    sparsity: Tensor  # mean of 1 - exp(-k w): a smooth count of non-zero weights


class SkinningObjective:
    """The loss terms of the weight fit, with the per-model constants computed once.

    The point-to-surface distance pairs each HD vertex with the `candidates` base faces nearest to it at rest, and
    each base face with the `candidates` HD vertices nearest to its centroid at rest: a distance to the local surface
    (the published code searches all faces, so where fingers touch it pulls skin towards the wrong finger), computed
    exactly within those candidates, in O(V K) instead of O(V F). `candidates=None` searches every face and every
    vertex, as the published code (pytorch3d's point_mesh_face_distance).
    """

    def __init__(self, base: MANO, hd: MANO, *, candidates: int | None, sparsity_sharpness: float):
        with torch.no_grad():
            rest_base, rest_hd = base().vertices[0], hd().vertices[0]
        base_faces, hd_faces = base.faces, hd.faces
        centroids = rest_base[base_faces].mean(1).cpu().numpy()
        hd_points = rest_hd.cpu().numpy()
        device = hd.v_template.device
        self.candidates = candidates
        if candidates is not None:
            k_faces, k_points = min(candidates, len(centroids)), min(candidates, len(hd_points))
            near_faces = cKDTree(centroids).query(hd_points, k_faces)[1].reshape(len(hd_points), k_faces)
            near_points = cKDTree(hd_points).query(centroids, k_points)[1].reshape(len(centroids), k_points)
            self.hd_to_base = torch.as_tensor(near_faces, device=device)  # (V_hd, K); k=1 gave (V_hd,) before
            self.base_to_hd = torch.as_tensor(near_points, device=device)  # (F, K)
        self.laplacian = uniform_laplacian(hd_faces, hd.v_template.shape[0])
        self.adjacency = face_adjacency(hd_faces)
        self.base_faces, self.hd_faces = base_faces, hd_faces
        self.sparsity_sharpness = sparsity_sharpness

    def __call__(self, hd_vertices: Tensor, base_vertices: Tensor, weights: Tensor) -> LossTerms:
        """Loss terms for posed meshes.

        Args:
            hd_vertices: (B, V_hd, 3) posed MANO-HD vertices (with the weights being fitted).
            base_vertices: (B, V, 3) the same poses of the base mesh.
            weights: (V_hd, J) the normalised weights.
        """
        if self.candidates is None:
            to_base = points_to_all_faces_sq(hd_vertices, base_vertices, self.base_faces).mean()
            to_hd = faces_to_all_points_sq(base_vertices, self.base_faces, hd_vertices).mean()
        else:
            to_base = points_to_mesh_sq(hd_vertices, base_vertices, self.base_faces, self.hd_to_base).mean()
            to_hd = mesh_to_points_sq(base_vertices, self.base_faces, hd_vertices, self.base_to_hd).mean()
        return LossTerms(
            laplacian=laplacian_smoothing(hd_vertices, self.laplacian),
            surface=to_base + to_hd,
            normal=normal_consistency(hd_vertices, self.hd_faces, self.adjacency),
            sparsity=(1 - torch.exp(-self.sparsity_sharpness * weights)).mean(),
        )


class PoseSampler:
    """Random training poses: hand poses mixed from the model's pose prior (digit by digit: `mix` 'anatomical',
    angles interpolated within the joint limits; 'published', joints slerped, unclipped, as the published
    pretraining), uniformly random global rotations, and Gaussian shapes. Batches are a function of (seed, step)
    alone, so a resumed run draws what an uninterrupted one would."""

    def __init__(self, base: MANO, *, pool: int, shape_std: float, global_rotation: bool, seed: int,
                 mix: str = "anatomical"):
        data = base.to_model_data()
        if data.hands_coeffs is None or data.hands_components is None or data.hands_mean is None:
            raise InputError("the hand model has no pose prior (hands_components, hands_mean, hands_coeffs); "
                             "the LBS-weight pretraining samples its poses from it")
        prior = prior_poses(data.hands_mean, data.hands_coeffs, data.hands_components)
        if mix not in MIXES:
            raise InputError(f"poses.mix {mix!r} is not one of {MIXES}")
        rng = np.random.default_rng(seed)
        poses = sample_prior(prior, base.pose_frames(), pool, rng) if mix == "anatomical" else \
            slerp_prior(prior, pool, rng)
        self.pool = torch.as_tensor(poses, dtype=base.v_template.dtype)
        self.num_betas, self.shape_std, self.global_rotation, self.seed = (
            base.num_betas, shape_std, global_rotation, seed)

    def batch(self, step: int, size: int) -> tuple[Tensor, Tensor, Tensor]:
        """(betas (B, NB), global_orient (B, 3), hand_pose (B, 45)) on the CPU, for training step `step`."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        hand_pose = self.pool[torch.randint(len(self.pool), (size,), generator=g)]
        betas = self.shape_std * torch.randn(size, self.num_betas, generator=g, dtype=hand_pose.dtype)
        orient = torch.zeros(size, 3, dtype=hand_pose.dtype)
        if self.global_rotation:  # uniform on SO(3): a uniform axis, and an angle with density (1 - cos t) / pi
            axis = torch.nn.functional.normalize(torch.randn(size, 3, generator=g, dtype=hand_pose.dtype), dim=1)
            angle = _uniform_rotation_angle(torch.rand(size, generator=g, dtype=hand_pose.dtype))
            orient = axis * angle[:, None]
        return betas, orient, hand_pose


def _uniform_rotation_angle(u: Tensor) -> Tensor:
    """Inverse-CDF sample of the rotation angle of a uniform random rotation: CDF (t - sin t) / pi on [0, pi]."""
    t = torch.full_like(u, torch.pi / 2)
    for _ in range(30):  # Newton on t - sin t = pi u; the derivative 1 - cos t is positive on (0, pi]
        t = (t - (t - torch.sin(t) - torch.pi * u) / (1 - torch.cos(t)).clamp_min(1e-6)).clamp(1e-6, torch.pi)
    return t


@dataclass
class WeightReport:
    mean_mm: float  # mean distance from posed HD vertices to the posed base surface
    p99_mm: float  # its 99th percentile
    flipped_faces: float  # mean per pose of HD faces facing against the base face they subdivide


def surface_distances(points: Tensor, vertices: Tensor, faces: Tensor, *, search: int = 32) -> tuple[Tensor, Tensor]:
    """Exact distance from points to a mesh surface, and the nearest face, for one pose.

    Each point is first compared with the `search` faces whose centroids are nearest. A face outside them is at
    least (distance to the search-th centroid) - (largest centroid-to-corner radius) away; points whose best
    candidate is not closer than that bound are resolved exactly by trimesh (a bounding-box tree).

    Args:
        points: (P, 3).
        vertices: (V, 3).
        faces: (F, 3).
        search: faces compared first.

    Returns:
        distances: (P,), and face: (P,) int64 index of the nearest face.
    """
    corners = vertices[faces]  # (F, 3, 3)
    centroids = corners.mean(1)
    radius = (corners - centroids[:, None]).norm(dim=-1).max().item()
    k = min(search, len(faces))
    centroid_dist, cand = cKDTree(centroids.cpu().numpy()).query(points.cpu().numpy(), k)
    cand = torch.as_tensor(cand.reshape(len(points), k), device=points.device)
    d2 = point_triangle_distance_sq(points[:, None], corners[cand])  # (P, K)
    best = d2.argmin(1)
    dist = d2.gather(1, best[:, None])[:, 0].clamp_min(0).sqrt()
    face = cand.gather(1, best[:, None])[:, 0]
    bound = torch.as_tensor(centroid_dist.reshape(len(points), k)[:, -1], device=points.device) - radius
    unsure = torch.nonzero(dist > bound).squeeze(1)
    if len(unsure):
        mesh = trimesh.Trimesh(vertices.cpu().numpy(), faces.cpu().numpy(), process=False)
        _, exact, tri = trimesh.proximity.closest_point(mesh, points[unsure].cpu().numpy())
        dist[unsure] = torch.as_tensor(exact, dtype=dist.dtype, device=dist.device)
        face[unsure] = torch.as_tensor(tri, device=face.device)
    return dist, face


def evaluate_weights(base: MANO, hd: MANO, weights: Tensor, poses: tuple[Tensor, Tensor, Tensor], *,
                     mm_per_unit: float) -> WeightReport:
    """How well the posed HD mesh follows the posed base mesh.

    Distances are exact, from every HD vertex to the base surface. A flipped face is an HD face whose normal points
    against the base face it was subdivided from (subdivision turns base face f into HD faces f 4^L ... (f+1) 4^L - 1).

    Args:
        base, hd: the layers (same options; `hd` subdivided from `base`).
        weights: (V_hd, 16) skinning weights for `hd`.
        poses: (betas, global_orient, hand_pose), batch N, as from `PoseSampler.batch`.
        mm_per_unit: millimetres per model unit (100 for decimetres).
    """
    children, rest = divmod(len(hd.faces), len(base.faces))
    if rest or children & (children - 1) or children.bit_length() % 2 == 0:
        raise ValueError(f"{len(hd.faces)} HD faces are not 4^L times the {len(base.faces)} base faces")
    parent = torch.arange(len(hd.faces), device=hd.faces.device) // children
    device = hd.v_template.device
    poses = tuple(p.to(device) for p in poses)
    with torch.no_grad():
        base_v = base(*poses).vertices
        hd_v = hd(*poses, custom_lbs_weights=weights.to(device)).vertices
        facing = (face_normals(hd_v, hd.faces) * face_normals(base_v, base.faces)[:, parent]).sum(-1)
        d = torch.cat([surface_distances(h, b, base.faces)[0] for b, h in zip(base_v, hd_v)])
    d = d.double().cpu().numpy() * mm_per_unit
    return WeightReport(float(d.mean()), float(np.percentile(d, 99)), float((facing < 0).sum(1).float().mean()))


def load_lbs_weights(path: str | Path, model: MANO, *, levels: int | None = None) -> Tensor:
    """Read a weight file (a plain (V, 16) tensor, as the published lbs_weights.pth) for `model`.

    Args:
        path: the .pth file.
        model: the MANO-HD layer the weights are for.
        levels: its subdivision level, named in the error message.

    Returns:
        (V, 16) weights in the model's dtype and device, to pass as `custom_lbs_weights` or copy into
        `model.lbs_weights`.

    Raises:
        FileNotFoundError: the file is missing (says how to make it).
        ValueError: not a (V, 16) tensor for this model, or not valid weights.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"skinning weights {path} do not exist; train them with scripts/train_lbs.sh")
    weights = read_torch_file(path, what="skinning weights", remedy="retrain them with scripts/train_lbs.sh")
    expected = tuple(model.lbs_weights.shape)
    if not isinstance(weights, Tensor) or tuple(weights.shape) != expected:
        shape = tuple(weights.shape) if isinstance(weights, Tensor) else type(weights).__name__
        level = f" (MANO-HD level {levels})" if levels is not None else ""
        raise InputError(f"{path} holds weights of shape {shape}, but the model{level} has {expected[0]} vertices "
                         f"and needs {expected}; retrain them for this model and level with scripts/train_lbs.sh")
    if not torch.isfinite(weights).all() or weights.min() < 0 or not torch.allclose(
            weights.sum(1), torch.ones(len(weights), dtype=weights.dtype), atol=1e-4):
        raise InputError(f"{path}: weights must be finite, non-negative and sum to 1 per row; retrain them with "
                         "scripts/train_lbs.sh")
    return weights.to(model.lbs_weights)


def _sha256(weights: Tensor) -> str:
    """sha256 of the weights' float32 bytes (as pairof.checkpoint.weights_fingerprint of a layer holding them)."""
    return hashlib.sha256(weights.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()


def write_weights_record(path: str | Path, weights: Tensor, settings: dict) -> Path:
    """Write how a weight file was made beside it (`lbs_weights.pth` -> `lbs_weights.json`): `settings` (e.g. the
    fidelity, poses.mix and candidates of the run) and the sha256 of the weights, so a record left beside another
    file (the authors' weights copied over ours) is not believed. Returns the record's path."""
    record = Path(path).with_suffix(".json")
    text = json.dumps({**settings, "sha256": _sha256(weights)}, indent=2) + "\n"
    return atomic_write(record, lambda f: f.write(text.encode()))


def read_weights_record(path: str | Path) -> dict | None:
    """The record `write_weights_record` left beside a weight file, or None when there is none, it cannot be read,
    or it was written for other weights than the file holds now."""
    path, record = Path(path), Path(path).with_suffix(".json")
    if not path.is_file() or not record.is_file():
        return None
    try:
        settings = json.loads(record.read_text())
        weights = read_torch_file(path, what="skinning weights", remedy="retrain them with scripts/train_lbs.sh")
    except (OSError, ValueError, InputError):
        return None
    if not isinstance(settings, dict) or not isinstance(weights, Tensor) or settings.get("sha256") != _sha256(weights):
        return None
    return settings
