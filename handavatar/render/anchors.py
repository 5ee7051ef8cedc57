"""The nearest posed anchors of many points, through a spatial index built once per pose.

PairOF's own lookup (`PairOF.nearest_anchors`) measures every point against every anchor (T x A distances). A frame
asks for the anchors of hundreds of thousands of samples; on the CPU a k-d tree over the A posed anchors answers the
same question in O(log A) per point. On CUDA the brute-force search is what GPUs do best, so it is kept there.

    index = AnchorIndex(encoding.anchors[0], k=4)        # once per pose
    dists, ids = index.query(points)                      # (N, 3) -> (N, k), (N, k)
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

__all__ = ["AnchorIndex"]


class AnchorIndex:
    """Exact k-nearest-anchor search over one pose's anchors.

    Args:
        anchors: (A, 3) posed anchors, model frame (dm); they may carry gradients (distances are recomputed from them).
        k: neighbours per point.
        chunk: points per brute-force block (CUDA), memory chunk x A.
    """

    def __init__(self, anchors: Tensor, k: int, *, chunk: int = 32768):
        self.anchors, self.k, self.chunk = anchors, k, chunk
        self.tree = None
        if anchors.device.type == "cpu":
            self.tree = cKDTree(anchors.detach().double().numpy())

    def near(self, points: Tensor, radius: float | Tensor, normals: Tensor | None = None) -> Tensor:
        """(N, 3) points -> (N,) bool: the point's nearest anchor lies within `radius` (dm) of it.

        Args:
            radius: one distance (then: some anchor lies within it), or (A,) one per anchor.
            normals: (A, 3) the anchors' outward normals: then the points behind their nearest anchor
                ((point - anchor) . normal < 0, inside the surface there) are near too, at any distance.
        """
        if points.shape[0] == 0:
            return torch.zeros(0, dtype=torch.bool, device=points.device)
        per_anchor = torch.is_tensor(radius)
        if self.tree is not None:
            bound = np.inf if normals is not None else float(radius.max()) if per_anchor else radius
            dists, ids = self.tree.query(points.detach().double().numpy(), k=1, distance_upper_bound=bound,
                                         workers=-1)
            found = np.isfinite(dists)  # ids are A where no anchor lies within the bound
            limit = radius.detach().cpu().double().numpy()[ids[found]] if per_anchor else radius
            found[found] = dists[found] <= limit
            near, ids = torch.from_numpy(found), torch.from_numpy(np.minimum(ids, len(self.anchors) - 1))
        else:
            with torch.no_grad():
                nearest = [torch.cdist(points[s:s + self.chunk], self.anchors).min(-1)
                           for s in range(0, points.shape[0], self.chunk)]
                dists, ids = torch.cat([n.values for n in nearest]), torch.cat([n.indices for n in nearest])
                near = dists <= (radius[ids] if per_anchor else radius)
        if normals is not None:
            with torch.no_grad():
                behind = ((points - self.anchors[ids]) * normals[ids]).sum(-1) < 0
            near = near | behind.to(near.device)
        return near

    def query(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """(N, 3) points -> (N, k) distances (>= 1e-4, differentiable w.r.t. points and anchors, the same values as
        `PairOF.nearest_anchors`) and (N, k) anchor ids, nearest first."""
        if points.shape[0] == 0:
            return points.new_zeros(0, self.k), torch.zeros(0, self.k, dtype=torch.long, device=points.device)
        if self.tree is not None:
            _, ids = self.tree.query(points.detach().double().numpy(), k=self.k, workers=-1)
            ids = torch.from_numpy(np.asarray(ids, dtype=np.int64).reshape(-1, self.k))
        else:
            with torch.no_grad():
                ids = torch.cat([torch.cdist(points[s:s + self.chunk], self.anchors).topk(
                    self.k, dim=-1, largest=False).indices for s in range(0, points.shape[0], self.chunk)])
        return (points[:, None] - self.anchors[ids]).norm(dim=-1).clamp_min(1e-4), ids
