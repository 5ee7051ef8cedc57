"""The authors' state dicts and ours, key by key (reference §3.1-3.2, §4.1, §5.5; docs/fidelity.md has the table).

    theirs = field_to_authors(field)                      # keys relative to their COAPBodyModel
    field = field_from_authors(theirs, hand, part_samples=256, ...)
    theirs = avatar_to_authors(avatar)                    # their Network.state_dict(): smpl_body.*, color_dict, ...
    ours = avatar_state_from_authors(theirs, avatar)      # our HandAvatar.state_dict(), checked against `avatar`

Conversions are exact: tensors are renamed, reshaped ((1, V, 39) <-> (V, 39), w0/w1/w2 (1, A) <-> (A, 3)), or
re-indexed (faces given by their three vertex ids <-> face ids). The weight-normalised colour MLP keeps its
(weight_g, weight_v) pair: ours is built with torch's weight_norm parametrization, whose original0 / original1 are the
same g (out, 1) and v (out, in). Their part clouds are re-drawn at every pose; ours are drawn once, from their tight and
extended faces, with `seed` (reference §3.4; the only thing an import cannot copy).
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import torch
from torch import Tensor

from smplx import MANO
from smplx.utils.cli import InputError
from smplx.joint_names import NUM_JOINTS, PARENTS
from pairof import PairOF
from pairof.partition import PAIRS, Partition, partition_mesh
from handavatar.model import HandAvatar

__all__ = ["field_to_authors", "field_from_authors", "avatar_to_authors", "avatar_state_from_authors",
           "strip_field_prefix", "FIELD_PREFIXES", "HAND_KEYS"]

FIELD_PREFIXES = ("smpl_body.coap.", "coap.", "")
"""Prefixes a PairOF state dict may carry: the network's, the body model's, or none (COAPBodyModel-relative, what
the published code's `smpl_body.coap.load_state_dict(...)` reads)."""

_FIELD_NETWORKS = ((r"(part_encoder|local_encoder)\.(.+)", "{0}.{1}"),
                   (r"decoder\.layers\.(\d+)\.(weight|bias)", "decoder.lin{0}.{1}"))
_AVATAR_NETWORKS = ((r"albedo\.codes", "color_dict"),
                    (r"albedo\.layers\.(\d+)\.parametrizations\.weight\.original0", "color_network.lin{0}.weight_g"),
                    (r"albedo\.layers\.(\d+)\.parametrizations\.weight\.original1", "color_network.lin{0}.weight_v"),
                    (r"albedo\.layers\.(\d+)\.bias", "color_network.lin{0}.bias"),
                    (r"deformer\.layers\.(\d+)\.(weight|bias)", "deformer.lin{0}.{1}"),
                    (r"deformer\.embedded", "deformer.vert_dict"),
                    (r"shading\.net\.layers\.(\d+)\.(weight|bias)", "shadow_network.lin{0}.{1}"),
                    (r"anchor_embedding", "anchor_embed"))
_AVATAR_PARTS = ("smpl_body.", "color_dict", "color_network.", "deformer.", "shadow_network.", "anchor_embed")
_FIELD_PARTS = ("partitioner.", "connect", "part_encoder.", "local_encoder.", "decoder.")
_UNSQUEEZED = {"deformer.vert_dict"}  # (1, V, 39) there, (V, 39) here
_FROM_OUR_HAND = ("hand.", "deformer.template", "deformer.centre_weights")  # rebuilt from the hand model here

HAND_KEYS = {"v_template": "v_template", "shapedirs": "shapedirs", "posedirs": "posedirs",
             "J_regressor": "j_regressor", "faces_tensor": "faces", "pose_mean": "pose_mean"}
"""Their `smpl_body.<key>` -> our MANO-HD buffer: checked against the hand this config builds, not copied."""


def _rename(key: str, table) -> str | None:
    for pattern, template in table:
        match = re.fullmatch(pattern, key)
        if match:
            return template.format(*match.groups())
    return None


def _take(state: dict, key: str, shape: tuple | None, where: str) -> Tensor:
    """state[key] with its shape checked; the errors name the key, the file and both shapes."""
    if key not in state:
        raise InputError(f"{where} has no key {key!r}: it is not a file of the published HandAvatar code in the "
                         "layout this importer reads (docs/fidelity.md lists the keys)")
    value = state[key]
    if not torch.is_tensor(value):
        raise InputError(f"{where}: {key!r} is a {type(value).__name__}, not a tensor")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise InputError(f"{where}: {key!r} has shape {tuple(value.shape)}, expected {tuple(shape)} (for this hand "
                         "model and these settings; check smpl_cfg.model_path, smpl_cfg.levels and the network keys)")
    return value.detach().cpu()


def strip_field_prefix(state: dict, where: str) -> dict:
    """The PairOF entries of a state dict with the first prefix of FIELD_PREFIXES that its decoder key carries
    removed (so that `decoder.lin0.weight` etc. remain)."""
    for prefix in FIELD_PREFIXES:
        if f"{prefix}decoder.lin0.weight" in state:
            return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    raise InputError(f"{where} has no PairOF decoder (decoder.lin0.weight under any of the prefixes "
                     f"{[p for p in FIELD_PREFIXES if p]} or none): not a PairOF checkpoint of the published code")


# ------------------------------------------------------------------------------------------------------------------
def _padded_faces(faces: np.ndarray, groups: list[np.ndarray]) -> Tensor:
    """(16, max, 3) int32 vertex ids of each group's faces, padded with rows of -1 (their tight/extended tensors)."""
    width = max(len(g) for g in groups)
    out = np.full((len(groups), width, 3), -1, dtype=np.int32)
    for k, g in enumerate(groups):
        out[k, :len(g)] = faces[g]
    return torch.from_numpy(out)


def field_to_authors(field: PairOF, template: Tensor, lbs_weights: Tensor, *, extended_dist: float) -> dict:
    """A field's state dict in the published layout, keys relative to their COAPBodyModel.

    Args:
        field: ours, built for a hand with `template` (V, 3) metres and `lbs_weights` (V, 16).
        extended_dist: the field's setting (metres): their extended faces are recomputed with it (we keep only the
            part samples drawn from them).

    Raises:
        InputError: the field's parts are not those of these skinning weights.
    """
    faces = field.faces.cpu().numpy()
    partition = partition_mesh(template.detach().double().cpu().numpy(), faces, lbs_weights.detach().cpu().numpy(),
                               extended_dist=extended_dist)
    if not np.array_equal(partition.face_part, field.face_part.cpu().numpy()):
        raise InputError("the field's parts are not those of the skinning weights given: export the pairof.ckpt "
                         "with the lbs_weights.pth it was trained for")
    anchors = field.faces[field.anchor_faces].cpu().long()
    out = {"partitioner.parents": torch.tensor(PARENTS, dtype=torch.long),
           "partitioner.joint_mapper": torch.ones(NUM_JOINTS, dtype=torch.bool),
           "partitioner.tight_face_tensor": _padded_faces(faces, partition.tight_faces),
           "partitioner.extended_face_tensor": _padded_faces(faces, partition.extended_faces),
           "partitioner.tight_vert_selector": field.tight_selector.cpu().clone(),
           "partitioner.sample_face_tensor": anchors,
           **{f"partitioner.w{i}": field.anchor_bary[:, i].cpu()[None].clone() for i in range(3)},
           "partitioner.sample_points": field.anchor_canonical.cpu().clone(),
           "connect": torch.tensor(PAIRS, dtype=torch.long).reshape(-1)}
    for key, value in field.state_dict().items():
        theirs = _rename(key, _FIELD_NETWORKS)
        if theirs is not None:
            out[theirs] = value.cpu().clone()
    return out


def _face_ids(faces: np.ndarray, rows: np.ndarray, key: str, where: str) -> np.ndarray:
    """Ids of the faces given as (N, 3) vertex triples (in the faces' own vertex order)."""
    base = int(faces.max()) + 1
    codes = (faces[:, 0] * base + faces[:, 1]) * base + faces[:, 2]
    order = np.argsort(codes)
    wanted = (rows[:, 0].astype(np.int64) * base + rows[:, 1]) * base + rows[:, 2]
    pos = np.clip(np.searchsorted(codes[order], wanted), 0, len(codes) - 1)
    found = codes[order][pos] == wanted
    if not found.all():
        raise InputError(f"{where}: {key!r} names {int((~found).sum())} faces that this hand model does not have "
                         f"(first: {rows[~found][0].tolist()}): the file was made for another MANO-HD (check "
                         "smpl_cfg.model_path and smpl_cfg.levels)")
    return order[pos]


def _partition(state: dict, faces: np.ndarray, vertex_count: int, where: str) -> Partition:
    """Our Partition from their padded tight/extended face tensors and tight vertex selector."""
    groups = {}
    for name in ("tight_face_tensor", "extended_face_tensor"):
        key = f"partitioner.{name}"
        table = _take(state, key, None, where).numpy()
        if table.ndim != 3 or table.shape[0] != NUM_JOINTS or table.shape[2] != 3:
            raise InputError(f"{where}: {key!r} has shape {table.shape}, expected ({NUM_JOINTS}, faces, 3)")
        groups[name] = [_face_ids(faces, rows[rows[:, 0] >= 0], key, where) for rows in table]
    face_part = np.full(len(faces), -1)
    for k, ids in enumerate(groups["tight_face_tensor"]):
        face_part[ids] = np.where(face_part[ids] < 0, k, -2)
    if (face_part < 0).any():
        raise InputError(f"{where}: 'partitioner.tight_face_tensor' does not give every face of the mesh exactly one "
                         f"part ({int((face_part < 0).sum())} faces have none or several)")
    selector = _take(state, "partitioner.tight_vert_selector", None, where).long().numpy()
    if selector.ndim != 2 or selector.shape[0] != NUM_JOINTS:
        raise InputError(f"{where}: 'partitioner.tight_vert_selector' has shape {selector.shape}, expected "
                         f"({NUM_JOINTS}, vertices)")
    tight_vertices = [np.unique(row) for row in selector]
    vertex_part = np.full(vertex_count, -1)
    for k, ids in enumerate(tight_vertices):
        vertex_part[ids] = k
    return Partition(vertex_part, face_part, groups["tight_face_tensor"], groups["extended_face_tensor"],
                     tight_vertices)


def field_from_authors(state: dict, hand: MANO, *, where: str, **settings) -> PairOF:
    """Our PairOF from their state dict (any prefix of FIELD_PREFIXES) for a MANO-HD layer carrying the skinning
    weights the field was made for.

    Args:
        settings: part_samples, neighbours, box_padding, extended_dist, seed, input_scale (what the file does not
            hold; the anchor count comes from the file).

    Raises:
        InputError: a key is missing or of the wrong shape, the pairs or parents are not MANO's, or the parts do
            not follow the layer's skinning weights (each message names the key and the file).
    """
    state = strip_field_prefix(state, where)
    ignored = sorted(k for k in state if not k.startswith(_FIELD_PARTS))
    if ignored:  # the layout of their pairof.ckpt is inferred (reference §3.10): extra entries are named, not fatal
        warnings.warn(f"{where}: ignoring {len(ignored)} entries this importer does not map: {ignored[:4]}",
                      stacklevel=2)
    for key, want in (("connect", torch.tensor(PAIRS).reshape(-1)), ("partitioner.parents", torch.tensor(PARENTS)),
                      ("partitioner.joint_mapper", torch.ones(NUM_JOINTS, dtype=torch.bool))):
        if key in state and not torch.equal(_take(state, key, None, where).reshape(-1).to(want.dtype), want):
            raise InputError(f"{where}: {key!r} is {state[key].reshape(-1).tolist()}, not MANO's {want.tolist()}")
    faces = hand.faces.cpu().numpy()
    partition = _partition(state, faces, hand.v_template.shape[0], where)
    ours = partition_mesh(hand.v_template.detach().double().cpu().numpy(), faces,
                          hand.lbs_weights.detach().cpu().numpy(), extended_dist=settings["extended_dist"])
    if not np.array_equal(ours.face_part, partition.face_part):
        raise InputError(f"{where}: the parts in 'partitioner.tight_face_tensor' are not those of the skinning "
                         f"weights given ({int((ours.face_part != partition.face_part).sum())} faces differ): "
                         "import the lbs_weights.pth this PairOF was trained with")
    anchors = _take(state, "partitioner.sample_points", None, where)
    count = anchors.shape[0]
    centre = hand.j_regressor[4] @ hand.v_template
    field = PairOF(hand.v_template, hand.faces, hand.lbs_weights, anchors=count, centre=centre, partition=partition,
                   **settings)
    expected = field.state_dict()
    loaded = dict(expected)
    sample = _take(state, "partitioner.sample_face_tensor", (count, 3), where).long().numpy()
    loaded["anchor_faces"] = torch.from_numpy(_face_ids(faces, sample, "partitioner.sample_face_tensor", where))
    loaded["anchor_bary"] = torch.cat([_take(state, f"partitioner.w{i}", (1, count), where) for i in range(3)]).T
    loaded["anchor_canonical"] = _take(state, "partitioner.sample_points", (count, 3), where)
    for key, value in expected.items():
        theirs = _rename(key, _FIELD_NETWORKS)
        if theirs is not None:
            loaded[key] = _take(state, theirs, value.shape, where)
    field.load_state_dict({k: v.to(expected[k].dtype) for k, v in loaded.items()})
    return field


# ------------------------------------------------------------------------------------------------------------------
def avatar_to_authors(avatar: HandAvatar, *, extended_dist: float) -> dict:
    """Our avatar's state dict in the published Network layout (`latest.tar`'s 'network')."""
    hand = avatar.hand
    out = {f"smpl_body.{theirs}": getattr(hand, ours).detach().cpu().clone() for theirs, ours in HAND_KEYS.items()}
    out["smpl_body.faces_tensor"] = out["smpl_body.faces_tensor"].int()  # int32 after their subdivision (§10)
    out.update({"smpl_body.parents": torch.tensor(PARENTS, dtype=torch.long),
                "smpl_body.lbs_weights": hand.lbs_weights.detach().cpu().clone(),
                "smpl_body.hand_mean": hand.pose_mean[3:].detach().cpu().clone(),
                "smpl_body.betas": torch.zeros(1, 10), "smpl_body.global_orient": torch.zeros(1, 3),
                "smpl_body.hand_pose": torch.zeros(1, 45), "smpl_body.transl": torch.zeros(1, 3)})
    field = field_to_authors(avatar.field, hand.v_template, hand.lbs_weights, extended_dist=extended_dist)
    out.update({f"smpl_body.coap.{k}": v for k, v in field.items()})
    for key, value in avatar.state_dict().items():
        theirs = _rename(key, _AVATAR_NETWORKS)
        if theirs is not None:
            out[theirs] = value.cpu().clone()[None] if theirs in _UNSQUEEZED else value.cpu().clone()
    return out


def avatar_state_from_authors(state: dict, avatar: HandAvatar, *, where: str, **field_settings) -> dict:
    """Our HandAvatar state dict from their Network state dict, for `avatar`: the avatar built by this config from
    the imported skinning weights (its hand model is kept and checked against theirs: same faces, the other
    buffers within float32 rounding), with its field, networks, anchors and parts replaced by theirs.

    Raises:
        InputError: a key is missing or of the wrong shape, their hand model differs from this config's, or their
            avatar has a branch this config switches off (the message names the key and the config key).
    """
    unknown = sorted(k for k in state if not k.startswith(_AVATAR_PARTS))
    if unknown:
        raise InputError(f"{where} has tensors of a branch this importer does not map: {unknown[:4]} (the published "
                         "configs switch non_rigid_mlp and pose_decoder off; docs/fidelity.md lists the keys)")
    hand = avatar.hand
    for theirs, ours in HAND_KEYS.items():
        key, mine = f"smpl_body.{theirs}", getattr(hand, ours).detach().cpu()
        if key not in state:
            continue
        value = _take(state, key, mine.shape, where)
        same = torch.equal(value.long(), mine) if not mine.is_floating_point() else torch.allclose(
            value.to(mine.dtype), mine, rtol=1e-4, atol=1e-6)
        if not same:
            raise InputError(f"{where}: {key!r} differs from this config's hand model (smpl_cfg.model_path, "
                             "smpl_cfg.levels, data.hand): the avatar was made with another MANO file")
    if "smpl_body.lbs_weights" in state and not torch.allclose(
            _take(state, "smpl_body.lbs_weights", hand.lbs_weights.shape, where).float(),
            hand.lbs_weights.detach().cpu().float(), atol=1e-6):
        raise InputError(f"{where}: 'smpl_body.lbs_weights' is not the lbs_weights.pth given: import the skinning "
                         "weights this avatar was trained with")
    field = field_from_authors(state, hand, where=where, **field_settings)
    expected = avatar.state_dict()
    out = {k: v.detach().cpu() for k, v in expected.items() if k.startswith(_FROM_OUR_HAND)}
    out.update({f"field.{k}": v for k, v in field.state_dict().items()})
    switches = {"deformer.": "network.deformer", "shadow_network.": "network.shading"}
    for key, value in expected.items():
        theirs = _rename(key, _AVATAR_NETWORKS)
        if theirs is None:
            continue
        shape = (1, *value.shape) if theirs in _UNSQUEEZED else value.shape
        got = _take(state, theirs, shape, where)
        out[key] = got[0] if theirs in _UNSQUEEZED else got
    for prefix, switch in switches.items():
        if any(k.startswith(prefix) for k in state) and not any(
                _rename(k, _AVATAR_NETWORKS) and _rename(k, _AVATAR_NETWORKS).startswith(prefix) for k in expected):
            raise InputError(f"{where} has a {prefix.rstrip('.')} but {switch} is false in this config: set "
                             f"{switch}=true")
    missing = sorted(set(expected) - set(out))
    if missing:
        raise InputError(f"this config's avatar has tensors the authors' file cannot fill: {missing[:4]} (their "
                         "network has no such branch; switch it off in the config)")
    return {k: v.to(expected[k].dtype) for k, v in out.items()}
