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

    def __init__(self, anchors: Tensor, k: int, *, chunk: int = 8192):
        self.anchors, self.k, self.chunk = anchors, k, chunk
        self.tree = None
        if anchors.device.type == "cpu":
            self.tree = cKDTree(anchors.detach().double().numpy())

    def near(self, points: Tensor, radius: float) -> Tensor:
        """(N, 3) points -> (N,) bool: some anchor lies within `radius` (dm) of the point."""
        if points.shape[0] == 0:
            return torch.zeros(0, dtype=torch.bool, device=points.device)
        if self.tree is not None:
            dists, _ = self.tree.query(points.detach().double().numpy(), k=1, distance_upper_bound=radius, workers=-1)
            return torch.from_numpy(np.isfinite(dists))
        with torch.no_grad():
            return torch.cat([torch.cdist(points[s:s + self.chunk], self.anchors).amin(-1) <= radius
                              for s in range(0, points.shape[0], self.chunk)])

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
