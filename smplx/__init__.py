"""The MANO hand layer with the smplx-style API, MANO-HD subdivision (`manohd/`), the open hand (`open_hand/`), mesh
helpers and a MANO-format tube model for benchmarks and tests (`tube`); below them, in `utils/`, the project's shared
utilities (command-line contract, configs, atomic file I/O, checkpoint reading, the training run folder, Embree ray
casting, inside tests, previews). Imports nothing of ours.

    import smplx
    mano = smplx.create("mano", **smplx.PAPER_FRAME)  # center_id=4, scale=10, seal=True, distal=True
    out = mano(betas, global_orient, hand_pose)   # out.vertices (B, V+1, 3), out.joints (B, 21, 3)
    mano_hd = smplx.subdivide(mano, levels=2)     # MANO-HD
"""

from smplx.body_models import MANO, PAPER_FRAME, MANOOutput, create, find_model_file
from smplx.manohd.subdivide import subdivide
from smplx.mesh import SurfaceSamples, interpolate_barycentric, sample_surface, vertex_normals
from smplx.model_file import HandModelData, load_model_file, save_model_file
from smplx.topology import boundary_loops, one_ring, unique_edges

__all__ = [
    "create", "MANO", "MANOOutput", "find_model_file", "PAPER_FRAME", "subdivide",
    "HandModelData", "load_model_file", "save_model_file",
    "vertex_normals", "sample_surface", "interpolate_barycentric", "SurfaceSamples",
    "unique_edges", "one_ring", "boundary_loops",
]
