"""Pinhole cameras in the avatar's model frame M, orbits around the hand, and the rays of a camera as a render sample.

A frame's own camera sits at -Th with the camera axes along M's axes (x_cam = x_M + Th, reference §6.4). Other
cameras are any rotation and centre: x_cam = R (x_M - centre). Rays follow handavatar.data.rays: origin the camera
centre, directions R^T K^-1 (u, v, 1) (camera z = 1, so the ray parameter is camera depth), near/far where they cross
the posed hand's 3D box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from handavatar.data.crop import crop_intrinsics, crop_transform
from handavatar.data.rays import pixel_directions, ray_box_intersection

__all__ = ["Camera", "AXES", "frame_camera", "look_at", "orbit_cameras", "camera_sample"]

AXES = {"x": np.array([1.0, 0.0, 0.0]), "y": np.array([0.0, 1.0, 0.0]), "z": np.array([0.0, 0.0, 1.0])}


@dataclass
class Camera:
    """A square pinhole camera (x right, y down, z forward)."""

    K: np.ndarray  # (3, 3) intrinsics, px (integer coordinates at pixel centres)
    R: np.ndarray  # (3, 3) cam_from_model rotation
    centre: np.ndarray  # (3,) camera centre, M frame, dm
    size: int  # image side, px

    @property
    def t(self) -> np.ndarray:
        """(3,) translation of x_cam = R x_M + t (dm); the dataset's Th for a frame camera."""
        return -self.R @ self.centre


def frame_camera(K_full: np.ndarray, bbox: np.ndarray, Th: np.ndarray, *, crop_scale: float, size: int) -> Camera:
    """The camera of a dataset frame, cropped as the dataset crops it (crop_scale x the square hand box, size px).

    Args:
        K_full: (3, 3) full-resolution intrinsics. bbox: (4,) square hand box [x, y, w, h], px. Th: (3,) dm.
    """
    K = crop_intrinsics(K_full, crop_transform(bbox, scale=crop_scale, size=size))
    return Camera(K=K, R=np.eye(3), centre=-np.asarray(Th, dtype=float), size=size)


def look_at(centre: np.ndarray, target: np.ndarray, down: np.ndarray) -> np.ndarray:
    """(3, 3) cam_from_model rotation of a camera at `centre` whose optical axis passes through `target` and whose
    image y axis is `down` made perpendicular to the view (any perpendicular if `down` is along the view)."""
    forward = np.asarray(target, dtype=float) - centre
    forward /= np.linalg.norm(forward)
    y = down - (down @ forward) * forward
    if np.linalg.norm(y) < 1e-9 * max(np.linalg.norm(down), 1e-30):
        y = np.cross(forward, AXES["x"] if abs(forward[0]) < 0.9 else AXES["y"])
    y /= np.linalg.norm(y)
    return np.stack([np.cross(y, forward), y, forward])


def orbit_cameras(camera: Camera, target: np.ndarray, axis: str, views: int) -> list[Camera]:
    """Cameras on a circle around `target`, looking at it.

    The circle lies in the plane through `target` perpendicular to the model-frame `axis`; its radius is the distance
    from `camera` to `target`; view 0 is the point of the circle nearest `camera` and view k is turned by
    360 k / views degrees about the axis (anticlockwise looking down the axis). Each view's image down direction is
    `camera`'s, turned with it. The intrinsics keep `camera`'s focal lengths, with the principal point at the image
    centre (so the target is in the middle of every view).

    Args:
        camera: the starting camera. target: (3,) M frame, dm. axis: 'x', 'y' or 'z'. views: V >= 1.

    Returns:
        V cameras.
    """
    if axis not in AXES:
        raise ValueError(f"orbit axis {axis!r} is not one of {sorted(AXES)}")
    if views < 1:
        raise ValueError(f"the orbit needs at least one view, got {views}")
    a = AXES[axis]
    offset = camera.centre - target
    radius = np.linalg.norm(offset)
    in_plane = offset - (offset @ a) * a
    if np.linalg.norm(in_plane) < 1e-9 * max(radius, 1e-30):  # the camera is on the axis: start anywhere
        in_plane = np.cross(a, AXES["x"] if axis != "x" else AXES["y"])
    start = in_plane / np.linalg.norm(in_plane) * radius
    half = (camera.size - 1) / 2
    K = np.array([[camera.K[0, 0], 0.0, half], [0.0, camera.K[1, 1], half], [0.0, 0.0, 1.0]])
    cameras = []
    for k in range(views):
        turn = Rotation.from_rotvec(a * 2 * np.pi * k / views)
        centre = target + turn.apply(start)
        cameras.append(Camera(K=K, R=look_at(centre, target, turn.apply(camera.R[1])), centre=centre,
                              size=camera.size))
    return cameras


def camera_sample(camera: Camera, box_min: np.ndarray, box_max: np.ndarray) -> dict[str, np.ndarray]:
    """The camera's rays of every pixel, shaped like an image-mode dataset sample (P = 1 grid of size x size).

    Args:
        box_min, box_max: (3,) the posed hand's 3D box with its margins, M frame, dm.

    Returns:
        'rays_o' (3,), 'rays_d' (1, s, s, 3) M frame with camera z = 1, 'near', 'far' (1, s, s) camera depths,
        'ray_mask' (1, s, s) bool (the ray meets the box), 'pixels' (1, s, s, 2) (x, y), 'K' (3, 3), 'cam_R' (3, 3),
        'Th' (3,) the translation t of x_cam = R x_M + t; all float32 but the mask and pixels.
    """
    ys, xs = np.mgrid[0:camera.size, 0:camera.size].astype(float)
    directions = pixel_directions(camera.K, xs, ys) @ camera.R  # R^T d for each pixel
    near, far, hit = ray_box_intersection(camera.centre, directions, box_min, box_max)
    f32 = np.float32
    return {"rays_o": camera.centre.astype(f32), "rays_d": directions[None].astype(f32),
            "near": near[None].astype(f32), "far": far[None].astype(f32), "ray_mask": hit[None],
            "pixels": np.stack([xs, ys], -1)[None].astype(np.int64), "K": camera.K.astype(f32),
            "cam_R": camera.R.astype(f32), "Th": camera.t.astype(f32)}
