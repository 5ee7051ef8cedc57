"""How a frame is rendered: the renderers' options as one frozen dataclass, given to the renderer functions (and to
`HandAvatar.render`, which keeps the ones its config chose), never set on a model.

    options = RenderOptions(samples=24, band="auto")
    faster = dataclasses.replace(options, tolerance=1e-2)    # another variant of the same options
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["RenderOptions", "RENDERERS", "SAMPLINGS"]

RENDERERS = ("fast", "reference")
SAMPLINGS = ("box", "parts")


@dataclass(frozen=True)
class RenderOptions:
    """The renderers' options (config keys: `N_samples`, `sampling` and the `render` section).

    Raises:
        ValueError: a renderer, sampling or band that is not one of the choices (naming it and the choices).
    """

    renderer: Literal["fast", "reference"] = "fast"
    """'fast' (`march`: leaves out what cannot change the picture) or 'reference' (`render_reference`: the naive
    published renderer); both draw the same samples."""
    samples: int = 64
    """S, samples per ray."""
    sampling: Literal["box", "parts"] = "box"
    """'box': evenly between near and far, where the ray crosses the posed hand's 3D box (published); 'parts': evenly
    over the stretches of the ray inside the posed part boxes, the only places with non-zero occupancy."""
    group: int = 8
    """fast: samples per ray marched at once."""
    tolerance: float = 1e-3
    """fast: stop a ray once its transmittance is below tolerance / 2 (0: never); a pixel moves by less than this."""
    band: float | Literal["auto"] = 0.0
    """fast: evaluate only samples within this distance (dm) of a posed anchor (0: everywhere in the part boxes,
    exactly as the reference), or 'auto' (eval mode): outside the surface within a distance per anchor measured on
    the field (`handavatar.render.band.measure_band`), inside it at any distance; in training mode `band_training`."""
    band_margin: float = 0.03
    """auto: margin added to each anchor's measured reach, dm."""
    band_min: float = 0.06
    """auto: at least this, dm."""
    band_training: float = 0.1
    """auto while training (the weights change at every step), dm."""
    band_pose_step: float = 30.0
    """auto: measure again on a pose whose finger joints differ by more than this (degrees) from every pose measured
    with the current weights, keeping the largest reach."""

    def __post_init__(self):
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling {self.sampling!r} is not 'box' or 'parts'")
        if self.renderer not in RENDERERS:
            raise ValueError(f"renderer {self.renderer!r} is not one of {RENDERERS}")
        if self.band != "auto" and not (isinstance(self.band, (int, float)) and self.band >= 0):
            raise ValueError(f"band {self.band!r} is not a distance >= 0 (dm) or 'auto'")
