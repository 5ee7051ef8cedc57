"""Volume rendering of the avatar: samples along rays and front-to-back compositing with occupancy as alpha."""

from handavatar.render.boxes import part_box_intervals, sample_in_intervals
from handavatar.render.volume import composite, sample_depths

__all__ = ["composite", "sample_depths", "part_box_intervals", "sample_in_intervals"]
