"""MANO-HD: the subdivided hand mesh and (later) its learned skinning weights."""

from smplx.manohd.subdivide import laplacian_smooth, subdivide, subdivide_data

__all__ = ["subdivide", "subdivide_data", "laplacian_smooth"]
