"""PairOF, the pairwise part-occupancy field: partition, part and pair encoders, decoder, query, pretraining.
Imports smplx only.

    from pairof import PairOF, load_pairof
    field = load_pairof("pairof/out/pretrained_pairof/pairof.ckpt", mano_hd)   # or PairOF.from_layer(mano_hd)
    encoding = field.encode(posed.vertices, posed.joints, posed.full_pose)
    occupancy = field.query(points, encoding).occupancy
"""

from pairof.model import PairOF, PairOFEncoding, PairOFOutput
from pairof.checkpoint import load_pairof

__all__ = ["PairOF", "PairOFEncoding", "PairOFOutput", "load_pairof"]
