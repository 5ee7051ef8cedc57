"""The avatar's volume renderer, as functions that take the posed hand's field as callables (`PoseField`), so that
they run on any field, a test's analytic one included:

- `rays`: `render_rays`, the entry: samples along the rays (`volume.sample_depths`, or `boxes` for sampling
  'parts'), then one of the two renderers, chosen by a `RenderOptions` (`options`);
- `march`: the fast renderer (culling by part box and surface band, marching in groups, early stop);
- `reference`: the naive published renderer, its slow twin;
- `band`: the surface band 'auto' (`measure_band`) and its per-pose cache (`BandCache`);
- `volume` (compositing), `boxes` (ray / part-box intervals), `anchors` (nearest-anchor index), `surface` (the albedo
  looked up once per ray, and where a ray meets the posed mesh), `shadows` (shadow-ray visibility on the posed mesh,
  for the shading at the surface), `field` (`PoseField`, `PartBoxes`).

Imports torch, numpy, scipy and smplx (the inside test, ray casting, Rodrigues); never handavatar.model, which
imports this package (`HandAvatar.pose_field` builds the `PoseField`).
"""

from handavatar.render.band import BandCache, measure_band
from handavatar.render.boxes import part_box_intervals, sample_in_intervals
from handavatar.render.field import PartBoxes, PoseField
from handavatar.render.march import march
from handavatar.render.options import RenderOptions
from handavatar.render.rays import render_rays
from handavatar.render.reference import render_reference
from handavatar.render.volume import composite, sample_depths

__all__ = ["render_rays", "RenderOptions", "PoseField", "PartBoxes", "march", "render_reference", "measure_band",
           "BandCache", "composite", "sample_depths", "part_box_intervals", "sample_in_intervals"]
