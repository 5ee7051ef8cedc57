"""A MANO-format tube model, MANO-sized by default in benchmarks (21 x 37 + 1 = 778 vertices), small in the tests: a
closed-ended tube skinned to MANO's 16-joint tree.

The tube runs along +x from an open 'wrist' rim (row 0) to an apex; it is cut into 16 consecutive segments, one per
joint, and each vertex is skinned to its segment's joint, blended linearly with the next segment's joint near the
border (at most two non-zero weights). Joint k is regressed from the ring that starts segment k, so it lies on the
axis there. Shape and pose blend shapes are random, so every term of LBS is exercised.
"""

from __future__ import annotations

import numpy as np

from smplx.joint_names import NUM_HAND_POSE, NUM_JOINTS
from smplx.model_file import HandModelData

__all__ = ["make_tube_model"]


def make_tube_model(n_around: int = 8, n_rows: int = 33, *, length: float = 0.18, radius: float = 0.02,
                    seed: int = 0) -> HandModelData:
    """A right-hand tube model with n_around * n_rows + 1 vertices (21 x 37 + 1 = 778 is MANO-sized).

    n_rows must be at least 2 * 16 + 1 so that every joint owns a ring.
    """
    if n_rows < 2 * NUM_JOINTS + 1:
        raise ValueError(f"n_rows={n_rows} must be >= {2 * NUM_JOINTS + 1}")
    rng = np.random.default_rng(seed)
    dx = length / n_rows
    phi = 2 * np.pi * np.arange(n_around) / n_around
    rows = np.arange(n_rows)
    ring = np.stack([np.zeros_like(phi), radius * np.cos(phi), radius * np.sin(phi)], 1)
    verts = (ring[None] + (rows * dx)[:, None, None] * np.array([1.0, 0, 0])).reshape(-1, 3)
    apex = np.array([[(n_rows - 0.5) * dx, 0.0, 0.0]])
    v_template = np.concatenate([verts, apex])

    def vid(i, j):
        return i * n_around + (j % n_around)

    faces = []
    for i in range(n_rows - 1):
        for j in range(n_around):
            faces.append((vid(i, j), vid(i, j + 1), vid(i + 1, j)))
            faces.append((vid(i, j + 1), vid(i + 1, j + 1), vid(i + 1, j)))
    apex_id = n_rows * n_around
    faces += [(vid(n_rows - 1, j), vid(n_rows - 1, j + 1), apex_id) for j in range(n_around)]
    faces = np.asarray(faces, dtype=np.int64)

    # Segment k spans rows [start[k], start[k + 1]); joint k sits on the ring at start[k].
    start = np.linspace(1, n_rows - 1, NUM_JOINTS + 1).astype(int)
    vert_row = np.append(np.repeat(rows, n_around), n_rows - 1)
    seg = np.clip(np.searchsorted(start, vert_row, side="right") - 1, 0, NUM_JOINTS - 1)
    weights = np.zeros((len(v_template), NUM_JOINTS))
    frac = (vert_row - start[seg]) / np.maximum(start[seg + 1] - start[seg], 1)
    blend = np.clip((frac - 0.5) * 2, 0, 1) * (seg < NUM_JOINTS - 1)  # blend into the next joint in the 2nd half
    weights[np.arange(len(v_template)), seg] = 1 - blend
    nxt = np.minimum(seg + 1, NUM_JOINTS - 1)
    weights[np.arange(len(v_template)), nxt] += blend
    j_regressor = np.zeros((NUM_JOINTS, len(v_template)))
    for k in range(NUM_JOINTS):
        j_regressor[k, [vid(start[k], j) for j in range(n_around)]] = 1.0 / n_around

    components = np.linalg.qr(rng.normal(size=(NUM_HAND_POSE, NUM_HAND_POSE)))[0].T
    return HandModelData(
        v_template=v_template,
        faces=faces,
        shapedirs=rng.normal(scale=0.002, size=(len(v_template), 3, 10)),
        posedirs=rng.normal(scale=0.001, size=(len(v_template), 3, 9 * (NUM_JOINTS - 1))),
        j_regressor=j_regressor,
        lbs_weights=weights,
        hands_components=components,
        hands_mean=rng.normal(scale=0.1, size=NUM_HAND_POSE),
        hands_coeffs=rng.normal(scale=0.5, size=(20, NUM_HAND_POSE)),
        fingertip_vertex_ids=np.array([vid(start[k], 0) for k in (3, 6, 9, 12, 15)]),
    )
