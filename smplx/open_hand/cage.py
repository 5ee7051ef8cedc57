"""The control cage of the open hand: a box-modelled right hand made of quads, with skinning weights.

The cage is a palm slab (a 3 x 11 grid of quads on the back and on the palm, joined by one-quad-high sides) with
five six-sided tubes pulled out of it: four fingers from the knuckle side, the thumb from the corner between the
radial side and the palm (one quad of each). Each tube
has a ring of six vertices at every joint and in the middle of every bone, so that one Catmull-Clark step gives
edge rings that bend cleanly. The wrist is a patch of seven quads of the palm's proximal side, removed after
subdivision to open the wrist. Units are metres; +x runs from the wrist to the fingers, +y is the back of the hand,
the thumb is on the -z side (a right hand).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from smplx.joint_names import NUM_JOINTS

__all__ = ["HandShapeParams", "Cage", "build_cage"]

NODE_ROWS, NODE_COLS = 4, 12  # palm grid nodes: rows from wrist (0) to knuckles (3), columns from thumb side (0)
_FINGERS = ("index", "middle", "ring", "pinky")  # cage order, thumb side first
_FINGER_JOINT = {"index": 1, "middle": 4, "pinky": 7, "ring": 10, "thumb": 13}  # MANO id of each digit's first joint
_FINGER_COL = {"index": 0, "middle": 3, "ring": 6, "pinky": 9}  # first palm node column under each finger
_WRIST_QUADS = range(2, 9)  # proximal-side quads removed to open the wrist
_THUMB_PALM_QUAD = (1, 0)  # (row, column) of the palm quad that, with the radial side quad of row 1, bears the thumb

# Default right hand, metres. Finger: knuckle width, half-thickness at the knuckle, direction in degrees towards the
# pinky side, bone lengths (proximal, middle, distal), girth factor.
_FINGER_TABLE = {
    "index": (0.0185, 0.0110, -5.0, (0.041, 0.025, 0.022), 1.00),
    "middle": (0.0190, 0.0115, 0.0, (0.045, 0.029, 0.024), 1.03),
    "ring": (0.0175, 0.0108, 5.0, (0.042, 0.028, 0.023), 0.96),
    "pinky": (0.0155, 0.0096, 11.0, (0.033, 0.020, 0.020), 0.84),
}
_KNUCKLE_X = {"index": 0.086, "middle": 0.090, "ring": 0.086, "pinky": 0.077}
_GAP = 0.0040
_ROW_X = (-0.010, 0.024, 0.056)  # rows 0-2; row 3 follows the knuckles
_THUMB_SIDE_ROW_X = {0: (0.018, 0.046), 1: (0.021, 0.051)}  # rows 1-2 of the first columns: the thumb's base
_ROW_WIDTH = (0.72, 1.00, 1.04, 1.00)  # row spread relative to the knuckle row
_ROW_HALF_THICKNESS = ((0.013, 0.015), (0.016, 0.021), (0.015, 0.019))  # (back, palm) at rows 0-2, mid-palm

# Tube rings after the base ring: (bone, fraction along it, lateral, dorsal, palmar half-axes in metres for the
# index finger) and the skinning of the ring: {part offset within the digit: weight}.
_FINGER_RINGS = (
    (0, 0.50, 0.0108, 0.0094, 0.0098, {0: 1.0}),
    (0, 1.00, 0.0106, 0.0096, 0.0091, {0: 0.5, 1: 0.5}),
    (1, 0.50, 0.0096, 0.0084, 0.0086, {1: 1.0}),
    (1, 1.00, 0.0091, 0.0082, 0.0079, {1: 0.5, 2: 0.5}),
    (2, 0.50, 0.0089, 0.0072, 0.0082, {2: 1.0}),
    (2, 0.88, 0.0062, 0.0048, 0.0058, {2: 1.0}),
)
_THUMB_RINGS = (
    (0, 0.60, 0.0186, 0.0144, 0.0180, {0: 1.0}),
    (0, 1.00, 0.0138, 0.0114, 0.0120, {0: 0.5, 1: 0.5}),
    (1, 0.50, 0.0126, 0.0102, 0.0110, {1: 1.0}),
    (1, 1.00, 0.0122, 0.0098, 0.0106, {1: 0.5, 2: 0.5}),
    (2, 0.50, 0.0118, 0.0086, 0.0108, {2: 1.0}),
    (2, 0.88, 0.0082, 0.0060, 0.0072, {2: 1.0}),
)
_THUMB_CMC = np.array([0.020, -0.006, -0.030])
_THUMB_DIRS = ((0.55, -0.35, -0.76), (0.80, -0.18, -0.57), (0.80, -0.18, -0.57))  # metacarpal, proximal, distal
_THUMB_LENGTHS = (0.040, 0.032, 0.028)
_THUMB_NAIL_TILT = np.deg2rad(45.0)  # the thumbnail faces up and out (towards -z)


@dataclass(frozen=True)
class HandShapeParams:
    """Multipliers of the default hand's proportions (1.0 everywhere is the mean shape)."""

    size: float = 1.0  # everything
    palm_width: float = 1.0
    finger_length: float = 1.0  # the four fingers
    thickness: float = 1.0  # back-to-palm thickness of palm and digits
    finger_girth: float = 1.0  # cross-section of all five digits
    thumb_length: float = 1.0
    palm_length: float = 1.0
    pinky_length: float = 1.0
    index_ring_ratio: float = 1.0  # index length x r, ring length / r
    thenar: float = 1.0  # size of the thumb's base (thenar eminence)


@dataclass
class Cage:
    positions: np.ndarray  # (V, 3) metres
    quads: np.ndarray  # (F, 4) counter-clockwise from outside; the mesh is closed
    weights: np.ndarray  # (V, 16) skinning weights, rows summing to 1
    wrist_faces: np.ndarray  # (7,) faces removed after subdivision to open the wrist
    joint_vertices: dict[int, list[int]] = field(default_factory=dict)  # joint -> cage vertices of its regressor
    joint_edges: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # joint -> cage edges, likewise
    tip_faces: dict[str, list[int]] = field(default_factory=dict)  # digit -> the two faces capping its tip


def _d(i: int, c: int) -> int:  # back (dorsal) node
    return i * NODE_COLS + c


def _p(i: int, c: int) -> int:  # palm (palmar) node
    return NODE_ROWS * NODE_COLS + i * NODE_COLS + c


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def _palm_nodes(s: HandShapeParams) -> np.ndarray:
    """(2 * 4 * 12, 3) palm grid nodes: back nodes then palm nodes, row-major."""
    width = s.palm_width * s.size
    knuckle_z, knuckle_x, knuckle_h = [], [], []
    z = -0.041
    for name in _FINGERS:
        w, h = _FINGER_TABLE[name][0] * width, _FINGER_TABLE[name][1] * s.thickness * s.size * s.finger_girth
        knuckle_z += [z, z + w / 2, z + w]
        x = _KNUCKLE_X[name] * s.palm_length * s.size
        knuckle_x += [x - 0.002 * s.size, x, x - 0.002 * s.size]
        knuckle_h += [(0.75 * h, 0.80 * h), (h, 1.05 * h), (0.75 * h, 0.80 * h)]
        z += w + _GAP * width
    knuckle_z, centre = np.asarray(knuckle_z), np.mean([knuckle_z[0], knuckle_z[-1]])
    half_span = (knuckle_z[-1] - knuckle_z[0]) / 2
    back, palm = np.zeros((NODE_ROWS, NODE_COLS, 3)), np.zeros((NODE_ROWS, NODE_COLS, 3))
    for i in range(NODE_ROWS):
        zs = centre + (knuckle_z - centre) * _ROW_WIDTH[i]
        u = (knuckle_z - centre) / half_span
        if i == NODE_ROWS - 1:
            xs = np.asarray(knuckle_x)
            hb, hp = np.asarray(knuckle_h).T
        else:
            xs = np.full(NODE_COLS, _ROW_X[i])
            if i > 0:
                for c, row_x in _THUMB_SIDE_ROW_X.items():
                    xs[c] = row_x[i - 1]
            xs = xs * s.palm_length * s.size
            tb, tp = _ROW_HALF_THICKNESS[i]
            hb = tb * (1 - 0.35 * u ** 2) * s.thickness * s.size
            hp = tp * (1 - 0.30 * u ** 2) * s.thickness * s.size
        back[i] = np.stack([xs, hb, zs], 1)
        palm[i] = np.stack([xs, -hp, zs], 1)
    return np.concatenate([back.reshape(-1, 3), palm.reshape(-1, 3)])


def _palm_quads() -> tuple[list[tuple[int, int, int, int]], dict[str, list[int]], list[int]]:
    """Palm quads, the base loop of each digit (counter-clockwise from outside), and the wrist quads."""
    quads = []
    for i in range(NODE_ROWS - 1):
        for c in range(NODE_COLS - 1):
            quads.append((_d(i, c), _d(i, c + 1), _d(i + 1, c + 1), _d(i + 1, c)))  # back, normal +y
            if (i, c) != _THUMB_PALM_QUAD:
                quads.append((_p(i, c), _p(i + 1, c), _p(i + 1, c + 1), _p(i, c + 1)))  # palm, normal -y
    finger_quads = {c for col in _FINGER_COL.values() for c in (col, col + 1)}
    top = NODE_ROWS - 1
    for c in range(NODE_COLS - 1):
        if c not in finger_quads:  # the webs between fingers, normal +x
            quads.append((_d(top, c), _d(top, c + 1), _p(top, c + 1), _p(top, c)))
    wrist = []
    for c in range(NODE_COLS - 1):  # proximal side, normal -x
        if c in _WRIST_QUADS:
            wrist.append(len(quads))
        quads.append((_d(0, c), _p(0, c), _p(0, c + 1), _d(0, c + 1)))
    for i in (0, 2):  # radial side below and above the thumb, normal -z
        quads.append((_d(i, 0), _d(i + 1, 0), _p(i + 1, 0), _p(i, 0)))
    last = NODE_COLS - 1
    for i in range(NODE_ROWS - 1):  # ulnar side, normal +z
        quads.append((_d(i, last), _p(i, last), _p(i + 1, last), _d(i + 1, last)))
    loops = {name: [_d(top, col), _d(top, col + 1), _d(top, col + 2), _p(top, col + 2), _p(top, col + 1),
                    _p(top, col)] for name, col in _FINGER_COL.items()}
    loops["thumb"] = [_d(1, 0), _d(2, 0), _p(2, 0), _p(2, 1), _p(1, 1), _p(1, 0)]  # radial side + palm corner
    return quads, loops, wrist


def _digit_chain(name: str, base_centre: np.ndarray, s: HandShapeParams) -> tuple[np.ndarray, list[np.ndarray]]:
    """First joint position and the three bone vectors of a digit."""
    if name == "thumb":
        start = _THUMB_CMC * np.array([s.palm_length, s.thickness, s.palm_width]) * s.size
        lengths = np.asarray(_THUMB_LENGTHS) * s.size * s.thumb_length * np.array([s.thenar, 1.0, 1.0])
        return start, [length * _unit(d) for length, d in zip(lengths, _THUMB_DIRS)]
    _, _, angle, lengths, _ = _FINGER_TABLE[name]
    scale = s.size * s.finger_length
    scale *= {"pinky": s.pinky_length, "index": s.index_ring_ratio, "ring": 1 / s.index_ring_ratio}.get(name, 1.0)
    direction = np.array([np.cos(np.deg2rad(angle)), 0.0, np.sin(np.deg2rad(angle))])
    return base_centre, [length * scale * direction for length in lengths]


def _ring_frame(bone: np.ndarray, thumb: bool) -> tuple[np.ndarray, np.ndarray]:
    """Lateral and dorsal unit axes of a cross-section perpendicular to `bone`."""
    up = np.array([0.0, 1.0, 0.0])
    dorsal = _unit(up - bone * (up @ bone) / (bone @ bone))
    if thumb:  # tilt the nail towards the radial side (-z)
        radial = np.array([0.0, 0.0, -1.0])
        radial = _unit(radial - bone * (radial @ bone) / (bone @ bone) - dorsal * (radial @ dorsal))
        dorsal = _unit(np.cos(_THUMB_NAIL_TILT) * dorsal + np.sin(_THUMB_NAIL_TILT) * radial)
    return _unit(np.cross(dorsal, bone)), dorsal


def build_cage(shape: HandShapeParams = HandShapeParams()) -> Cage:
    """The control cage of a right hand with the given proportions (deterministic)."""
    positions = list(_palm_nodes(shape))
    quads, loops, wrist = _palm_quads()
    weights = np.zeros((len(positions), NUM_JOINTS))
    weights[:, 0] = 1.0
    cage = Cage(np.empty(0), np.empty(0), np.empty(0), np.asarray(wrist))

    def skin(node: int, joint: int, share: float) -> None:  # node follows `joint` by `share`, the palm the rest
        weights[node] = 0.0
        weights[node, [0, joint]] = (1 - share, share)

    top = NODE_ROWS - 1
    for name, col in _FINGER_COL.items():  # knuckles bend a little with the fingers
        for c in range(col, col + 3):
            for node in (_d(top - 1, c), _p(top - 1, c)):
                skin(node, _FINGER_JOINT[name], 0.12)
            for node in (_d(top, c), _p(top, c)):
                skin(node, _FINGER_JOINT[name], 0.5)
    for node, share in ((_d(0, 0), 0.2), (_p(0, 0), 0.3), (_p(0, 1), 0.2), (_p(2, 2), 0.2), (_p(1, 2), 0.2)):
        skin(node, 13, share)  # the thenar moves with the thumb's first joint
    for node in loops["thumb"]:
        skin(node, 13, 0.5)
    palm_positions = np.asarray(positions)

    extra_weights = []
    for name, base in loops.items():
        thumb = name == "thumb"
        k = _FINGER_JOINT[name]
        base_pts = palm_positions[base]
        start, bones = _digit_chain(name, base_pts.mean(0), shape)
        joints = [start, start + bones[0], start + bones[0] + bones[1]]
        girth = shape.size * shape.finger_girth * (1.0 if thumb else _FINGER_TABLE[name][4])
        lateral, dorsal = _ring_frame(bones[0], thumb)
        rel = base_pts - base_pts.mean(0)
        angles = np.arctan2(rel @ dorsal, rel @ lateral)
        loop = base
        joint_rings = {0: list(base)}  # joint offset within the digit -> the ring around it
        for r, (bone, frac, a, bd, bp, ring_skin) in enumerate(_THUMB_RINGS if thumb else _FINGER_RINGS):
            centre = joints[bone] + frac * bones[bone]
            if thumb and r == 0:
                a, bd, bp = a * shape.thenar, bd * shape.thenar, bp * shape.thenar
            lat, dor = _ring_frame(bones[bone], thumb)
            radius_d = np.where(np.sin(angles) > 0, bd, bp) * shape.thickness
            ring_pts = centre + girth * (np.cos(angles)[:, None] * a * lat
                                         + np.sin(angles)[:, None] * radius_d[:, None] * dor)
            ring = list(range(len(positions), len(positions) + 6))
            positions += list(ring_pts)
            w = np.zeros(NUM_JOINTS)
            for offset, value in ring_skin.items():
                w[k + offset] = value
            extra_weights += [w] * 6
            for i in range(6):
                quads.append((loop[i], loop[(i + 1) % 6], ring[(i + 1) % 6], ring[i]))
            if frac == 1.0:
                joint_rings[bone + 1] = ring
            loop = ring
        cage.tip_faces[name] = [len(quads), len(quads) + 1]
        quads += [(loop[0], loop[1], loop[2], loop[3]), (loop[3], loop[4], loop[5], loop[0])]
        for offset, ring in joint_rings.items():
            cage.joint_vertices[k + offset] = list(ring)
            cage.joint_edges[k + offset] = [(ring[i], ring[(i + 1) % 6]) for i in range(6)]
    cage.joint_vertices[13] += [_d(1, 1), _d(2, 1)]  # pull the thumb's first joint into the palm
    cage.joint_vertices[0] = ([_d(0, c) for c in range(2, 10)] + [_p(0, c) for c in range(2, 10)]
                              + [_d(1, c) for c in range(NODE_COLS)] + [_p(1, c) for c in range(NODE_COLS)])
    cage.joint_edges[0] = []

    cage.positions = np.asarray(positions)
    cage.quads = np.asarray(quads, dtype=np.int64)
    cage.weights = np.concatenate([weights, np.asarray(extra_weights)])
    return cage
