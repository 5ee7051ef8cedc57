"""Synthetic captures: the hand model filmed in the exact InterHand2.6M layout, with the ground truth InterHand
lacks (masks, albedo, shading, depth). `capture` writes them (`make_capture`, `python -m segment.synthetic`),
`manifest` their annotation files and capture.json (`read_manifest` reads it), `raytrace` renders (Embree: cast
shadows, ambient occlusion, supersampling), `skin` paints the procedural skin, `motion` plays smooth pose sequences
from the model's prior. Imports smplx and segment's InterHand layout modules (`segment.interhand`,
`segment.annotations`), never the other way round.
"""

from segment.synthetic.capture import CaptureSettings, make_capture
from segment.synthetic.manifest import GROUND_TRUTH_TREES, SEQUENCES, SyntheticCaptureError, read_manifest
from segment.synthetic.cli import main

__all__ = ["CaptureSettings", "SyntheticCaptureError", "make_capture", "read_manifest", "GROUND_TRUTH_TREES",
           "SEQUENCES", "main"]
