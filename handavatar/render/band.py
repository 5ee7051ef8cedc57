"""The fast renderer's band 'auto': how far outside the posed mesh the field is occupied near each posed anchor
(`measure_band`), and the measurements kept for a set of weights over the poses measured (`BandCache`).

The trained field does not end where the mesh does: on the demo avatar it is occupied up to ~0.045 dm outside the
anchors of the fingers, and up to ~0.15 dm beyond the wrist's cap (docs). Its reach changes with the pose (a fist's
fingers press on the palm), so a validation or a video measures a few poses, not every frame.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from smplx.lbs import batch_rodrigues
from smplx.utils.inside import inside_mesh
from handavatar.render.anchors import AnchorIndex
from handavatar.render.field import PartBoxes

__all__ = ["measure_band", "BandCache"]


def measure_band(occupancy: Callable[[Tensor], Tensor], anchors: Tensor, normals: Tensor, boxes: PartBoxes,
                 vertices: Tensor, faces: Tensor, *, margin: float, minimum: float, steps: int = 10,
                 depth: float = 0.2, probes_per_anchor: int = 8, threshold: float = 1e-3) -> Tensor:
    """(A,) how far outside the posed mesh the field is occupied near each posed anchor, plus `margin`, at least
    `minimum` (dm).

    The field is probed along each anchor's outward normal (`steps` points, evenly out to `depth` dm) and at
    `probes_per_anchor` x A points drawn uniformly in the part boxes (by volume; seeded: the same probes every
    time); every probe outside the mesh (winding number) with occupancy above `threshold` stretches its nearest
    anchor's reach to its distance; each anchor then takes the largest reach among its 8 nearest anchors (the
    probes are sparse). About 1 s on a 2-core CPU for 4,096 anchors.

    Args:
        occupancy: (N, 3) points -> (N,) occupancy in [0, 1] (called once, without gradients).
        anchors: (A, 3) posed anchors; normals: (A, 3) unit outward normals of their faces. Model frame, dm.
        boxes: the posed part boxes.
        vertices: (V, 3) the posed mesh; faces: (F, 3) its triangles (closed: the inside test is a winding number).
    """
    anchors, rotations, joints, centre, half = (t.detach() for t in (anchors, *boxes))
    device = anchors.device
    along = torch.arange(1, steps + 1, dtype=anchors.dtype, device=device) * (depth / steps)
    normal_probes = anchors[:, None] + normals[:, None] * along[:, None]
    generator, probes = torch.Generator().manual_seed(0), probes_per_anchor * anchors.shape[0]
    part = torch.multinomial((2 * half).prod(-1).cpu(), probes, replacement=True, generator=generator).to(device)
    unit = (2 * torch.rand(probes, 3, generator=generator, dtype=anchors.dtype) - 1).to(device)
    box_probes = torch.einsum("nij,nj->ni", rotations[part], centre[part] + half[part] * unit) + joints[part]
    points = torch.cat([normal_probes.reshape(-1, 3), box_probes])  # box probes: uniform in each part's box
    outside = ~torch.from_numpy(inside_mesh(points.cpu().double().numpy(), vertices.detach().cpu().double().numpy(),
                                            faces.cpu().numpy())).to(device)
    points = points[outside]  # the field is queried only where it can stretch a reach
    with torch.no_grad():
        occupied = occupancy(points) > threshold
    index = AnchorIndex(anchors, 8)
    dists, ids = index.query(points[occupied])
    reach = torch.zeros_like(anchors[:, 0]).scatter_reduce(0, ids[:, 0], dists[:, 0], "amax")
    reach = reach[index.query(anchors)[1]].amax(1)
    return (reach + margin).clamp_min(minimum)


class BandCache:
    """The band 'auto' of one set of weights: the largest `measure_band` over the poses measured with them.

    Attributes:
        band: (A,) the band, or None before the first measurement.
        poses: how many poses were measured with the current weights.
    """

    def __init__(self):
        self._key, self._rotations, self.band = None, [], None

    @property
    def poses(self) -> int:
        return len(self._rotations)

    def get(self, key: tuple, hand_pose: Tensor, pose_step: float, measure: Callable[[], Tensor]) -> Tensor:
        """The band for a pose: measured again (`measure()`, the largest reach kept) when the pose's finger joints
        differ by more than `pose_step` degrees from each pose measured so far, or when `key` changed.

        Args:
            key: what the measurement depends on besides the pose (the weights' versions, margin, minimum); a new
                key starts again from no measurement.
            hand_pose: (45,) the 15 finger joints' axis-angles, radians.
            pose_step: degrees.
            measure: () -> (A,) `measure_band` of this pose.
        """
        if self._key != key:
            self._key, self._rotations, self.band = key, [], None
        fingers = batch_rodrigues(hand_pose.detach().reshape(-1, 3))  # (15, 3, 3)
        cosine = None
        if self._rotations:  # of the rotation between the pose's joint and each measured pose's, per joint
            cosine = ((torch.stack(self._rotations).transpose(-1, -2) @ fingers).diagonal(dim1=-2, dim2=-1).sum(-1)
                      - 1) / 2
        if cosine is None or (cosine.clamp(-1, 1).acos().amax(-1).rad2deg() > pose_step).all():
            reach = measure()
            self.band = reach if self.band is None else torch.maximum(self.band, reach)
            self._rotations.append(fingers)
        return self.band
