"""PairOF: the pairwise part-occupancy field of a posed hand (reference §3).

    pairof = PairOF.from_layer(mano_hd)                    # partition, anchors and part samples fixed here
    posed = mano_hd(betas, global_orient, hand_pose)       # model frame M (dm), sealed, with fingertips
    encoding = pairof.encode(posed.vertices, posed.joints, posed.full_pose)   # once per pose
    out = pairof.query(points, encoding)                   # points (B, T, 3) M -> out.occupancy (B, T)

Each part k has a bone frame (posed rotation R_k, posed joint J_k; x^k = R_k^T (x - J_k)) and a box around its posed
vertices in that frame, grown by `box_padding`. A part code z_k comes from a PointNet over points and normals sampled
on the part. Each of the 15 parent-child pairs (p, c) sees a query x as two tokens [z_p, x^p] and [z_c, x^c], fused by
the max-pools of a small PointNet and decoded to one occupancy per token. Pairs are evaluated only for points inside
one of their two boxes; token occupancies are pooled by a masked softmax into part occupancies (times the part's own
box) and those into the hand's occupancy.

Unlike the published code, surface samples are fixed at construction (the same pose gives the same field), the
per-pose work (part codes, the parts' share of the first pair layer) is done once in `encode`, the first pair block is
computed once per (part, point) and shared by the pairs of that part, and the nearest-anchor search is chunked.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from smplx import MANO
from smplx.joint_names import NUM_JOINTS, PARENTS
from smplx.lbs import batch_rigid_transform, batch_rodrigues
from pairof.networks import ImplicitNet, ResnetPointnet
from pairof.partition import PAIRS, Partition, partition_mesh, sample_faces

__all__ = ["PairOF", "PairOFEncoding", "PairOFOutput", "masked_softmax_pool", "PART_COLOURS"]

_PAIR_PARENT = torch.tensor([p for p, _ in PAIRS])
_PAIR_CHILD = torch.tensor([c for _, c in PAIRS])
PART_COLOURS = np.array([[0.85, 0.85, 0.85], [0.90, 0.30, 0.30], [0.95, 0.55, 0.45], [1.00, 0.75, 0.65],
                         [0.30, 0.65, 0.30], [0.45, 0.80, 0.45], [0.65, 0.92, 0.65], [0.30, 0.40, 0.90],
                         [0.45, 0.55, 0.95], [0.65, 0.72, 1.00], [0.85, 0.70, 0.20], [0.92, 0.80, 0.40],
                         [0.98, 0.90, 0.62], [0.65, 0.35, 0.80], [0.78, 0.52, 0.90], [0.90, 0.72, 0.97]])
"""(16, 3) RGB of each part, for pictures and meshes."""


def _part_entries() -> tuple[Tensor, Tensor]:
    """(16, 5) indices into the flattened (15 pairs x 2 tokens) occupancies of the tokens that belong to each part,
    and their (16, 5) validity (the wrist is in 5 pairs, the knuckles and middle joints in 2, the tips in 1)."""
    entries = [[2 * c + s for c, pair in enumerate(PAIRS) for s in (0, 1) if pair[s] == k] for k in range(NUM_JOINTS)]
    width = max(len(e) for e in entries)
    index = torch.tensor([e + [0] * (width - len(e)) for e in entries])
    valid = torch.tensor([[True] * len(e) + [False] * (width - len(e)) for e in entries])
    return index, valid


def masked_softmax_pool(values: Tensor, sigma: float, dim: int = -1, mask: Tensor | None = None) -> Tensor:
    """Smooth maximum of the positive entries: sum v m e^(v/s) / (sum m e^(v/s) + 1e-5), m = [v > 0] (and `mask`).
    Returns 0 where no entry is positive. Values are occupancies in [0, 1]."""
    m = values > 0
    if mask is not None:
        m = m & mask
    weights = torch.where(m, torch.exp((values - 1) / sigma), torch.zeros_like(values))  # e^(v/s), scaled by e^(-1/s)
    scale = float(np.exp(-1 / sigma))  # keeps the 1e-5 of the published formula exact after the scaling
    return (values * weights).sum(dim) / (weights.sum(dim) + 1e-5 * scale)


@dataclass
class PairOFEncoding:
    """Per-pose state of the field (B poses)."""

    rotations: Tensor  # (B, 16, 3, 3) posed bone rotations R_k
    joints: Tensor  # (B, 16, 3) posed joints J_k, M frame
    box_centre: Tensor  # (B, 16, 3) part box centres, bone frames
    box_half: Tensor  # (B, 16, 3) half sizes (padded)
    token_bias: Tensor  # (B, 16, 2h) the part code's share of the pair encoder's first layer (+ its bias)
    anchors: Tensor  # (B, A, 3) posed surface anchors, M frame


@dataclass
class PairOFOutput:
    occupancy: Tensor  # (B, T) in [0, 1]; the hand is where it exceeds 0.5
    part_occupancy: Tensor | None = None  # (B, 16, T)
    soft_part_occupancy: Tensor | None = None  # (B, 16, T), token occupancies sigmoid(-soft_beta f)
    soft_occupancy: Tensor | None = None  # (B, T)
    outside: Tensor | None = None  # (B, T) bool: in no part box
    anchor_dists: Tensor | None = None  # (B, T, k) distances to the k nearest posed anchors, >= 1e-4
    anchor_ids: Tensor | None = None  # (B, T, k)


def _tight_selector(parts: list[np.ndarray]) -> Tensor:
    """(16, Vmax) vertex ids of each part, padded by repeating the part's first vertex."""
    width = max(len(p) for p in parts)
    return torch.tensor(np.stack([np.concatenate([p, np.full(width - len(p), p[0])]) for p in parts]))


class PairOF(nn.Module):
    """The field over one hand mesh (see the module docstring).

    Args:
        template: (V, 3) rest-pose vertices, metres (MANO-HD's v_template).
        faces: (F, 3) template faces (without the wrist seal).
        lbs_weights: (V, 16) skinning weights (the pretrained ones: the partition follows them).
        part_samples: surface points per part cloud (half on tight faces, half on extended faces).
        anchors: surface anchors for the appearance lookup.
        neighbours: nearest anchors returned by `query`.
        extended_dist: metres, see partition_mesh.
        box_padding: part boxes are this many times the extent of their vertices.
        code_size: part code width; hidden: PointNet width h.
        sigma: masked softmax pooling temperature; soft_beta: slope of the soft occupancies.
        seed: draws the fixed surface samples.
        centre: (3,) rest-pose point the canonical anchors are stored relative to (from_layer: joint 4, as §3.2).
        input_scale: bone-frame coordinates are multiplied by this before the networks see them (1: the published
            decimetres; 10: centimetres, which the networks fit faster).
        partition: the parts to use instead of `partition_mesh(template, faces, lbs_weights)` (an imported field's,
            handavatar.authors); the surface samples are drawn from it the same way.
    """

    def __init__(self, template: Tensor, faces: Tensor, lbs_weights: Tensor, *, part_samples: int = 256,
                 anchors: int = 4096, neighbours: int = 4, extended_dist: float = 0.01, box_padding: float = 2.0,
                 code_size: int = 64, hidden: int = 64, sigma: float = 0.05, soft_beta: float = 0.05, seed: int = 0,
                 centre: Tensor | None = None, input_scale: float = 1.0, partition: Partition | None = None):
        super().__init__()
        vertices = template.detach().double().cpu().numpy()
        faces_np = faces.cpu().numpy()
        if partition is None:
            partition = partition_mesh(vertices, faces_np, lbs_weights.detach().cpu().numpy(),
                                       extended_dist=extended_dist)
        rng = np.random.default_rng(seed)
        sample_face, sample_bary = [], []
        for k in range(NUM_JOINTS):
            for face_set, count in ((partition.tight_faces[k], part_samples // 2),
                                    (partition.extended_faces[k], part_samples - part_samples // 2)):
                f, b = sample_faces(vertices, faces_np, face_set, count, rng)
                sample_face.append(f)
                sample_bary.append(b)
        anchor_face, anchor_bary = sample_faces(vertices, faces_np, np.arange(len(faces_np)), anchors, rng)

        dtype = template.dtype
        self.register_buffer("faces", faces.long().clone())
        self.register_buffer("face_part", torch.tensor(partition.face_part))
        self.register_buffer("tight_selector", _tight_selector(partition.tight_vertices))
        self.register_buffer("part_sample_faces", torch.tensor(np.stack(
            [np.concatenate(sample_face[2 * k:2 * k + 2]) for k in range(NUM_JOINTS)])))  # (16, S)
        self.register_buffer("part_sample_bary", torch.tensor(np.stack(
            [np.concatenate(sample_bary[2 * k:2 * k + 2]) for k in range(NUM_JOINTS)]), dtype=dtype))  # (16, S, 3)
        self.register_buffer("anchor_faces", torch.tensor(anchor_face))
        self.register_buffer("anchor_bary", torch.tensor(anchor_bary, dtype=dtype))
        canonical = (vertices[faces_np[anchor_face]] * anchor_bary[..., None]).sum(1)
        centre = np.zeros(3) if centre is None else centre.detach().double().cpu().numpy()
        self.register_buffer("anchor_canonical", torch.tensor(canonical - centre, dtype=dtype))  # (A, 3) metres
        entries, entry_valid = _part_entries()
        self.register_buffer("part_entries", entries, persistent=False)
        self.register_buffer("part_entry_valid", entry_valid, persistent=False)

        self.part_encoder = ResnetPointnet(6, hidden, code_size, final_pool=True)
        self.local_encoder = ResnetPointnet(code_size + 3, hidden, code_size, final_pool=False)
        self.decoder = ImplicitNet(code_size, 1, (128, 128, 128, 128), (2,))
        self.code_size, self.box_padding, self.neighbours = code_size, box_padding, neighbours
        self.sigma, self.soft_beta = sigma, soft_beta
        self.precision = "float32"  # or "bfloat16": the networks under CPU autocast (see `query`)
        self.input_scale = input_scale

    @classmethod
    def from_layer(cls, layer: MANO, **options) -> PairOF:
        """A field for a MANO(-HD) layer: its template, faces and (current) skinning weights."""
        centre = layer.j_regressor[4] @ layer.v_template
        return cls(layer.v_template, layer.faces, layer.lbs_weights, centre=centre, **options).to(
            layer.v_template.device)

    # ------------------------------------------------------------------------------------------------------------
    def encode(self, vertices: Tensor, joints: Tensor, full_pose: Tensor) -> PairOFEncoding:
        """Per-pose state, once per pose.

        Args:
            vertices: (B, V[+1], 3) posed vertices, M frame (a seal vertex after the template's is ignored).
            joints: (B, >=16, 3) posed joints, M frame.
            full_pose: (B, 48) the pose applied (MANOOutput.full_pose), for the bone rotations.
        """
        batch = vertices.shape[0]
        rot_mats = batch_rodrigues(full_pose.reshape(batch, -1, 3)).to(vertices.dtype)
        rotations = batch_rigid_transform(rot_mats, torch.zeros_like(joints[:, :NUM_JOINTS]), PARENTS)[1][..., :3]
        origin = joints[:, :NUM_JOINTS]

        def to_bone(points: Tensor, part_axis: bool = True) -> Tensor:  # (B, 16, N, 3) -> bone frames
            return torch.einsum("bkji,bknj->bkni", rotations, points - origin[:, :, None] if part_axis else points)

        corners = vertices[:, self.faces]  # (B, F, 3, 3)
        sample_corners = corners[:, self.part_sample_faces]  # (B, 16, S, 3, 3)
        points = (self.part_sample_bary[None, ..., None] * sample_corners).sum(-2)
        normals = torch.linalg.cross(sample_corners[..., 1, :] - sample_corners[..., 0, :],
                                     sample_corners[..., 2, :] - sample_corners[..., 0, :], dim=-1)
        normals = torch.nn.functional.normalize(normals, dim=-1)
        cloud = torch.cat([self.input_scale * to_bone(points), to_bone(normals, part_axis=False)], dim=-1)
        with self._autocast():
            codes = self.part_encoder(cloud).to(vertices.dtype)  # (B, 16, code)
        first = self.local_encoder.fc_pos
        token_bias = codes @ first.weight[:, :self.code_size].T.to(codes.dtype) + first.bias.to(codes.dtype)

        local = to_bone(vertices[:, self.tight_selector])  # (B, 16, Vmax, 3)
        low, high = local.min(2).values, local.max(2).values
        anchors = (self.anchor_bary[None, ..., None] * vertices[:, self.faces[self.anchor_faces]]).sum(-2)
        return PairOFEncoding(rotations=rotations, joints=origin, box_centre=(low + high) / 2,
                              box_half=(high - low) * self.box_padding / 2, token_bias=token_bias, anchors=anchors)

    def _autocast(self):
        if self.precision == "bfloat16":
            return torch.autocast(self.decoder.layers[0].weight.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _pair_networks(self) -> tuple[ResnetPointnet, ImplicitNet]:
        """The pair encoder and decoder to evaluate with: the modules themselves, or, for bfloat16 without
        gradients, bfloat16 copies (made again whenever the weights change), which avoid autocast's per-call
        conversions (~1.5x faster on CPU)."""
        if self.precision != "bfloat16" or torch.is_grad_enabled():
            return self.local_encoder, self.decoder
        version = tuple((p.data_ptr(), p._version) for p in (*self.local_encoder.parameters(),
                                                             *self.decoder.parameters()))
        if getattr(self, "_low_precision", (None,))[0] != version:
            copies = (copy.deepcopy(self.local_encoder).to(torch.bfloat16),
                      copy.deepcopy(self.decoder).to(torch.bfloat16))
            object.__setattr__(self, "_low_precision", (version, copies))  # not a submodule: never saved
        return self._low_precision[1]

    # ------------------------------------------------------------------------------------------------------------
    def query(self, points: Tensor, encoding: PairOFEncoding, *, intermediate: bool = False, soft: bool = False,
              dense: bool = False, anchors: bool = True, chunk: int | None = None,
              boxes: tuple[Tensor, Tensor] | None = None) -> PairOFOutput:
        """Occupancy of points.

        Args:
            points: (B, T, 3) M frame.
            encoding: from `encode` of the same B poses.
            intermediate: also return part occupancies, soft part occupancies, the outside flag and the nearest
                anchors.
            soft: also return the soft occupancy (B, T).
            dense: evaluate every pair for every point, then zero the pairs whose boxes do not hold the point (the
                same result, ~10x slower: for tests and benchmarks).
            anchors: with `intermediate`, also search the nearest anchors (callers that need them for a subset
                of the points call `nearest_anchors` themselves).
            chunk: points per batch element evaluated at once, so that memory stays bounded for any T (default:
                4,096 on the CPU; on CUDA, where each chunk's ~100 kernel launches, not arithmetic, bound the time,
                131,072, and 32,768 for `dense`, which evaluates every pair: ~2-3 GB of float32 either way).
            boxes: `part_boxes(points, encoding)` when the caller has it already (it is not computed again).

        Returns:
            PairOFOutput.
        """
        if chunk is None:
            chunk = (32768 if dense else 131072) if points.device.type == "cuda" else 4096

        def part(s: int):
            given = None if boxes is None else (boxes[0][:, :, s:s + chunk], boxes[1][:, :, s:s + chunk])
            return self._query_chunk(points[:, s:s + chunk], encoding, intermediate or soft, dense, given)

        parts = [part(s) for s in range(0, points.shape[1], chunk)]
        occupancy = torch.cat([p[0] for p in parts], 1)
        out = PairOFOutput(occupancy=occupancy)
        if intermediate or soft:
            part_occ = torch.cat([p[1] for p in parts], 2)
            soft_part = torch.cat([p[2] for p in parts], 2)
            if intermediate:
                out.part_occupancy, out.soft_part_occupancy = part_occ, soft_part
                out.outside = torch.cat([p[3] for p in parts], 1)
                if anchors:
                    out.anchor_dists, out.anchor_ids = self.nearest_anchors(points, encoding)
            if soft:
                out.soft_occupancy = masked_softmax_pool(soft_part, self.sigma, dim=1)
        return out

    @staticmethod
    def part_boxes(points: Tensor, encoding: PairOFEncoding) -> tuple[Tensor, Tensor]:
        """Points in every bone frame, (B, 16, T, 3), and whether they lie in each part's box, (B, 16, T) bool."""
        local = torch.einsum("bkji,bktj->bkti", encoding.rotations, points[:, None] - encoding.joints[:, :, None])
        inside = ((local - encoding.box_centre[:, :, None]).abs() < encoding.box_half[:, :, None]).all(-1)
        return local, inside

    def _query_chunk(self, points: Tensor, enc: PairOFEncoding, with_parts: bool, dense: bool,
                     boxes: tuple[Tensor, Tensor] | None = None):
        batch, count = points.shape[:2]
        local, inside = self.part_boxes(points, enc) if boxes is None else boxes
        parent, child = _PAIR_PARENT.to(points.device), _PAIR_CHILD.to(points.device)
        valid = inside[:, parent] | inside[:, child]  # (B, 15, T)
        evaluate = torch.ones_like(valid) if dense else valid
        uses = torch.zeros(inside.shape, dtype=torch.int32, device=points.device)  # pairs of each part to evaluate
        uses.index_add_(1, parent, evaluate.int())
        uses.index_add_(1, child, evaluate.int())
        needed = uses > 0

        b, k, t = needed.nonzero(as_tuple=True)
        first = self.local_encoder.fc_pos
        pre = enc.token_bias[b, k] + (self.input_scale * local[b, k, t]) @ first.weight[:, self.code_size:].T.to(
            local.dtype)
        row = torch.full(needed.shape, -1, dtype=torch.long, device=points.device)
        row[b, k, t] = torch.arange(len(b), device=points.device)
        pb, pc, pt = evaluate.nonzero(as_tuple=True)
        encoder, decoder = self._pair_networks()
        low = next(decoder.parameters()).dtype != pre.dtype
        with contextlib.nullcontext() if low else self._autocast():
            stems = encoder.stem(pre.to(torch.bfloat16) if low else pre)
            tokens = torch.stack([stems[row[pb, parent[pc], pt]], stems[row[pb, child[pc], pt]]], dim=1)
            if dense:  # every token of every pair, then those of the pairs that do not hold the point are dropped
                written = valid[pb, pc, pt][:, None].expand(-1, 2)
                f = decoder(encoder.head(tokens))[..., 0][written]
            else:  # only the tokens of parts whose box holds the point: the others are zeroed by `_pool_parts`
                written = torch.stack([inside[pb, parent[pc], pt], inside[pb, child[pc], pt]], dim=1)  # (M, 2)
                f = decoder(encoder.head(tokens, written))[..., 0]
        m, side = written.nonzero(as_tuple=True)  # the order of f
        where, f = (pb[m], pt[m], 2 * pc[m] + side), f.to(points.dtype)
        tokens_occ = torch.zeros(batch, count, len(PAIRS) * 2, dtype=points.dtype, device=points.device)
        tokens_soft = torch.zeros_like(tokens_occ)
        tokens_occ = tokens_occ.index_put(where, torch.sigmoid(-f))
        part_occ = self._pool_parts(tokens_occ, inside)
        occupancy = masked_softmax_pool(part_occ, self.sigma, dim=1)
        if not with_parts:
            return (occupancy,)
        tokens_soft = tokens_soft.index_put(where, torch.sigmoid(-self.soft_beta * f))
        return occupancy, part_occ, self._pool_parts(tokens_soft, inside), ~inside.any(1)

    def _pool_parts(self, tokens: Tensor, inside: Tensor) -> Tensor:
        """(B, T, 30) token occupancies -> (B, 16, T) part occupancies (masked softmax, times the part's box)."""
        gathered = tokens[:, :, self.part_entries]  # (B, T, 16, 5)
        pooled = masked_softmax_pool(gathered, self.sigma, dim=-1, mask=self.part_entry_valid)
        return pooled.transpose(1, 2) * inside.to(pooled.dtype)

    def nearest_anchors(self, points: Tensor, encoding: PairOFEncoding, *, chunk: int = 8192) -> tuple[Tensor, Tensor]:
        """(B, T, k) distances (>= 1e-4, differentiable) to the k nearest posed anchors and their (B, T, k) ids;
        searched in chunks of points, so memory stays at chunk x A."""
        ids = [torch.zeros(points.shape[0], 0, self.neighbours, dtype=torch.long, device=points.device)]
        with torch.no_grad():
            for s in range(0, points.shape[1], chunk):
                d = torch.cdist(points[:, s:s + chunk], encoding.anchors)
                ids.append(d.topk(self.neighbours, dim=-1, largest=False).indices)
        ids = torch.cat(ids, 1)
        nearest = encoding.anchors[torch.arange(points.shape[0], device=points.device)[:, None, None], ids]
        return (points[:, :, None] - nearest).norm(dim=-1).clamp_min(1e-4), ids
