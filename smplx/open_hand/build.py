"""Assemble the open hand: subdivide the cage, open the wrist, and derive every MANO-format array."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from smplx.hand_pose import build_pose_prior, joint_frames
from smplx.joint_names import NUM_JOINTS
from smplx.model_file import HandModelData
from smplx.open_hand.cage import HandShapeParams, build_cage
from smplx.open_hand.subdivision import catmull_clark, triangulate_quads

__all__ = ["build_open_hand", "SHAPE_COMPONENTS", "OPEN_HAND_LICENSE"]

OPEN_HAND_LICENSE = ("CC0-1.0: the HandAvatar open hand, generated procedurally by smplx.open_hand (no third-party "
                     "asset); dedicated to the public domain")

SHAPE_COMPONENTS = (  # (HandShapeParams field, relative change for beta = 1), in shapedirs order
    ("size", 0.06), ("palm_width", 0.05), ("finger_length", 0.05), ("thickness", 0.08), ("finger_girth", 0.07),
    ("thumb_length", 0.06), ("palm_length", 0.05), ("pinky_length", 0.06), ("index_ring_ratio", 0.04),
    ("thenar", 0.10),
)


@dataclass
class _Surface:
    vertices: np.ndarray  # (V, 3) metres
    faces: np.ndarray  # (F, 3)
    weights: np.ndarray  # (V, 16)
    j_regressor: np.ndarray  # (16, V)
    tips: np.ndarray  # (5,) index, middle, pinky, ring, thumb


def _surface(shape: HandShapeParams) -> _Surface:
    """One Catmull-Clark step of the cage, wrist opened, quads split into triangles."""
    cage = build_cage(shape)
    cc = catmull_clark(np.concatenate([cage.positions, cage.weights], 1), cage.quads)
    keep_quads = np.ones(len(cc.quads), dtype=bool)
    for f in cage.wrist_faces:
        keep_quads[4 * f:4 * f + 4] = False
    quads = cc.quads[keep_quads]
    used = np.unique(quads)
    new_id = np.full(len(cc.values), -1)
    new_id[used] = np.arange(len(used))
    values = cc.values[used]
    vertices = values[:, :3]

    j_regressor = np.zeros((NUM_JOINTS, len(used)))
    for joint, cage_vertices in cage.joint_vertices.items():
        members = list(cage_vertices) + [cc.edge_point(a, b) for a, b in cage.joint_edges[joint]]
        j_regressor[joint, new_id[members]] = 1.0 / len(members)
    tips = []
    for name in ("index", "middle", "pinky", "ring", "thumb"):
        first, second = (set(cage.quads[f].tolist()) for f in cage.tip_faces[name])
        a, b = sorted(first & second)  # the diagonal shared by the two cap quads: its edge point is the tip
        tips.append(new_id[cc.edge_point(a, b)])
    return _Surface(vertices, triangulate_quads(new_id[quads], vertices), values[:, 3:], j_regressor,
                    np.asarray(tips))


def build_open_hand(is_rhand: bool = True) -> HandModelData:
    """The open hand in the MANO format (deterministic; about a second).

    The mean shape is the subdivided cage; shapedirs are the derivatives of the surface with respect to the
    proportions in SHAPE_COMPONENTS (central differences), scaled so that beta = 1 is one typical deviation; posedirs
    are zero; the pose prior is built from the named poses of smplx.hand_pose. The left hand is the right hand
    mirrored in x.
    """
    mean = HandShapeParams()
    base = _surface(mean)
    shapedirs = np.zeros((len(base.vertices), 3, len(SHAPE_COMPONENTS)))
    for i, (name, std) in enumerate(SHAPE_COMPONENTS):
        value = getattr(mean, name)
        plus = _surface(dataclasses.replace(mean, **{name: value * (1 + std / 2)})).vertices
        minus = _surface(dataclasses.replace(mean, **{name: value * (1 - std / 2)})).vertices
        shapedirs[:, :, i] = plus - minus
    data = HandModelData(
        v_template=base.vertices,
        faces=base.faces,
        shapedirs=shapedirs,
        posedirs=np.zeros((len(base.vertices), 3, 9 * (NUM_JOINTS - 1))),
        j_regressor=base.j_regressor,
        lbs_weights=base.weights,
        fingertip_vertex_ids=base.tips,
        left_shapedirs_ok=True,
    )
    if not is_rhand:
        flip = np.array([-1.0, 1.0, 1.0])
        data = dataclasses.replace(data, v_template=data.v_template * flip, faces=data.faces[:, [0, 2, 1]],
                                   shapedirs=data.shapedirs * flip[None, :, None])
    frames = joint_frames(data.j_regressor @ data.v_template, is_rhand=is_rhand)
    components, hands_mean, coeffs = build_pose_prior(frames)
    return dataclasses.replace(data, hands_components=components, hands_mean=hands_mean, hands_coeffs=coeffs)
