"""The textured-mesh baseline ("MANO + texture"), reported beside the avatar on the same frames (DESIGN.md)."""

from handavatar.baseline.evaluate import BASELINE_METRICS, fit_vertex_colours, texture_baseline, training_crops
from handavatar.baseline.texture import MeshRender, VertexColours, hand_layer, pose_meshes, render_vertex_colours

__all__ = ["texture_baseline", "BASELINE_METRICS", "fit_vertex_colours", "training_crops", "hand_layer",
           "pose_meshes", "VertexColours", "MeshRender", "render_vertex_colours"]
