"""Which point of the hand model each of mediapipe's 21 hand landmarks stands for, and how much to trust it.

mediapipe orders its landmarks wrist; thumb CMC, MCP, IP, tip; then index, middle, ring and pinky as MCP, PIP, DIP,
tip. The model's 21 joints (smplx with distal=True) are wrist, index1-3, middle1-3, pinky1-3, ring1-3, thumb1-3 (the
16 MANO joints: joint centres inside the hand), then the tips of index, middle, pinky, ring and thumb (surface
vertices at the end of each digit). `MEDIAPIPE_TO_MANO` pairs them by name; the names agree, the points do not quite:

- mediapipe's wrist lies at the wrist crease, MANO's wrist joint deeper towards the forearm;
- mediapipe's thumb CMC lies on the thumb's base near the surface, MANO's thumb1 deep in the thenar eminence;
- MCP points: mediapipe marks the knuckles, MANO the joint centres, a few mm palmar of them;
- tips: both are at the end of the digit (mediapipe at the pad's end, MANO at a surface vertex).

Measured on the synthetic capture of the open hand (300 frames, 1200 px focal at 1 m, box about 200 px; the
median distance between the landmark mediapipe 0.10.21 finds and the projected true joint, px): wrist 13.7, thumb CMC
23.2, thumb MCP 7.4, IP 9.6, tip 8.2, index 6.7-7.8, middle 8.7-10.3, ring 9.9-13.4, pinky 7.4-10.0 (all landmarks:
9.4). The wrist and the thumb CMC, whose offsets are largest and systematic, get lower weights in the fit
(`LANDMARK_WEIGHTS`); `python -m segment.video.evaluate` prints this table for any synthetic capture.
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
