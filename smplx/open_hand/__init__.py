"""The open hand: a procedurally generated, freely licensed (CC0) hand model in the MANO format.

    python -m smplx.open_hand --out mano/     # writes OPEN_HAND_RIGHT.pkl, OPEN_HAND_LEFT.pkl and a preview sheet
"""

from smplx.open_hand.build import OPEN_HAND_LICENSE, SHAPE_COMPONENTS, build_open_hand
from smplx.open_hand.cage import HandShapeParams

__all__ = ["build_open_hand", "HandShapeParams", "SHAPE_COMPONENTS", "OPEN_HAND_LICENSE"]
