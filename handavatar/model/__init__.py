"""The avatar's networks (reference §4.1): the pose-conditioned deformer of MANO-HD, the albedo field on surface
anchors, and SelF, the self-occlusion-aware shading field."""

from handavatar.model.albedo import AlbedoField, inverse_distance_weights
from handavatar.model.deformer import Deformer
from handavatar.model.embedder import positional_encoding
from handavatar.model.network import HandAvatar
from handavatar.model.shading import SelF

__all__ = ["AlbedoField", "Deformer", "HandAvatar", "SelF", "inverse_distance_weights", "positional_encoding"]
