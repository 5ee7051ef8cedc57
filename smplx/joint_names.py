"""Lookup tables of the MANO hand: joint order, kinematic tree, fingertip vertices."""

JOINT_NAMES = (
    "wrist",
    "index1", "index2", "index3",
    "middle1", "middle2", "middle3",
    "pinky1", "pinky2", "pinky3",
    "ring1", "ring2", "ring3",
    "thumb1", "thumb2", "thumb3",
)
"""The 16 MANO joints in MANO order; joint k is the origin of part k."""

PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
"""PARENTS[k] is the parent joint of joint k; the wrist (0) is the root."""

NUM_JOINTS = len(JOINT_NAMES)
NUM_HAND_POSE = 3 * (NUM_JOINTS - 1)  # 45: axis-angle of the 15 finger joints

FINGERTIP_NAMES = ("index_tip", "middle_tip", "pinky_tip", "ring_tip", "thumb_tip")
"""Names of the 5 distal joints appended as joints 16-20 when `distal=True`."""

FINGER_LAST_JOINTS = (3, 6, 9, 12, 15)
"""The last joint of each finger chain, in FINGERTIP_NAMES order."""

MANO_FINGERTIP_VERTEX_IDS = (333, 444, 672, 555, 744)
"""Fingertip vertices of the official 778-vertex MANO mesh, in FINGERTIP_NAMES order."""

MANO_NUM_VERTICES = 778
