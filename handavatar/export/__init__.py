"""Export of a trained avatar: a rigged, textured, animated binary glTF (python -m handavatar.export) and the web
viewer page next to it (viewer/)."""

from handavatar.export.avatar import ExportReport, clip_motion, export_avatar
from handavatar.export.rig import Rig, avatar_rig, truncate_weights

__all__ = ["ExportReport", "Rig", "avatar_rig", "clip_motion", "export_avatar", "truncate_weights"]
