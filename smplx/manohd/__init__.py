"""MANO-HD: the subdivided hand mesh and its learned skinning weights.

    python -m smplx.manohd.train_lbs --config configs/lbs/demo.yaml     # or scripts/train_lbs.sh
"""

from smplx.manohd.skinning import load_lbs_weights
from smplx.manohd.subdivide import laplacian_smooth, subdivide, subdivide_data

__all__ = ["subdivide", "subdivide_data", "laplacian_smooth", "load_lbs_weights"]
