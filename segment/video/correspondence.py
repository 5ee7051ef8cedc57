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

__all__ = ["MEDIAPIPE_NAMES", "MEDIAPIPE_TO_MANO", "LANDMARK_WEIGHTS", "PALM_LANDMARKS"]

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
