"""Which point of the hand model each of mediapipe's 21 hand landmarks stands for, and how much to trust it.

mediapipe orders its landmarks wrist; thumb CMC, MCP, IP, tip; then index, middle, ring and pinky as MCP, PIP, DIP,
tip. The model's 21 joints (smplx with distal=True) are wrist, index1-3, middle1-3, pinky1-3, ring1-3, thumb1-3 (the
16 MANO joints: joint centres inside the hand), then the tips of index, middle, pinky, ring and thumb (surface
vertices at the end of each digit). `MEDIAPIPE_TO_MANO` pairs them by name; the names agree, the points do not:
mediapipe marks points it learnt from annotated photographs (knuckles, pads), MANO's joints are rotation centres
regressed from the mesh, and its tips are single vertices.

Measured on the synthetic capture of the open hand (data/synthetic: 360 frames, 1200 px focal at 1 m, hand box
about 200 px), the median distance between the landmark mediapipe 0.10.21 finds and the projected model joint it is
paired with, px: wrist 14.2, thumb CMC 23.5, MCP 7.8, IP 9.7, tip 8.3; index 6.8-8.4, middle 8.9-10.2, ring 9.8-13.1,
pinky 7.2-10.1 (all: 9.5). Much of it is systematic, so each landmark is matched to a point at a fixed offset from its
joint (`LANDMARK_OFFSETS_MM`, segment.video.landmarks), measured on another synthetic capture (seed 1, 120 frames):
the fingers' landmarks lie 4-16 mm from the model's joints towards the wrist, the wrist landmark 12 mm further
towards the forearm than the wrist joint and the thumb CMC 20 mm from thumb1.
With the offsets the fitted joints' median 2D error against the truth falls from 9.0 to 6.9 px and PA-MPJPE from 11.8
to 9.5 mm (with the retuned priors). The wrist and the thumb CMC keep lower weights in the fit (`LANDMARK_WEIGHTS`).
They are offsets of the open hand seen by mediapipe; on MANO and real hands they are not measured.
"""

from __future__ import annotations

__all__ = ["MEDIAPIPE_NAMES", "MEDIAPIPE_TO_MANO", "LANDMARK_WEIGHTS", "PALM_LANDMARKS", "LANDMARK_OFFSETS_MM"]

MEDIAPIPE_NAMES = ("wrist", "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip",
                   "index_mcp", "index_pip", "index_dip", "index_tip", "middle_mcp", "middle_pip", "middle_dip",
                   "middle_tip", "ring_mcp", "ring_pip", "ring_dip", "ring_tip", "pinky_mcp", "pinky_pip",
                   "pinky_dip", "pinky_tip")

MEDIAPIPE_TO_MANO = (0, 13, 14, 15, 20, 1, 2, 3, 16, 4, 5, 6, 17, 10, 11, 12, 19, 7, 8, 9, 18)
"""model_joints[MEDIAPIPE_TO_MANO] lines up with the mediapipe landmarks (model joints with fingertips, MANO order)."""

LANDMARK_WEIGHTS = (0.5, 0.25) + (1.0,) * 19
"""Per-landmark weight in the fit, mediapipe order: the wrist and the thumb CMC are offset from MANO's joints."""

PALM_LANDMARKS = (0, 5, 9, 13, 17)
"""Wrist and the four finger MCPs: rigid enough to initialise the global rotation."""

LANDMARK_OFFSETS_MM = (
    (-11.4, 4.9, 0.8),  # wrist
    (-17.0, -9.8, 2.9),  # thumb_cmc
    (-1.0, 3.4, 2.7),  # thumb_mcp
    (-5.7, 1.6, 3.4),  # thumb_ip
    (-6.6, -3.8, 4.9),  # thumb_tip
    (-4.0, -0.2, 1.2),  # index_mcp
    (-7.6, 0.4, 0.4),  # index_pip
    (-10.1, 1.0, 0.2),  # index_dip
    (-13.2, 4.1, 0.1),  # index_tip
    (-6.1, 1.2, 2.0),  # middle_mcp
    (-7.9, -0.3, 2.1),  # middle_pip
    (-10.5, -1.7, 2.4),  # middle_dip
    (-12.2, -1.5, 0.6),  # middle_tip
    (-4.3, -0.2, 1.6),  # ring_mcp
    (-9.1, 1.0, -0.2),  # ring_pip
    (-13.0, -1.1, -1.5),  # ring_dip
    (-16.2, -0.7, -2.5),  # ring_tip
    (0.0, -3.4, 1.5),  # pinky_mcp
    (-1.9, -3.2, -0.2),  # pinky_pip
    (-3.8, -2.0, -1.4),  # pinky_dip
    (-7.5, 0.1, -2.9),  # pinky_tip
)
"""(21, 3) mm: each landmark's offset from its model joint, rest frame of the right hand (segment.video.landmarks)."""
