"""Volume rendering of the avatar: samples along rays and front-to-back compositing with occupancy as alpha."""

from handavatar.render.volume import composite, sample_depths

__all__ = ["composite", "sample_depths"]
