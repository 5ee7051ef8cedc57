"""A subject's skin albedo, defined on the hand model's rest-pose surface so that it moves with the hand.

The pattern is procedural and anatomical: it is placed with the model's rest joints, skinning parts and finger frames,
so it lands in the same places on MANO and on the open hand, right or left. It holds detail that a model can learn
and a metric can see: skin-tone variation, a lighter palm, nails with lunulae and free edges, flexion creases at the
finger joints, wrinkles and a darker patch over the knuckles, the three main palm creases and the wrist creases, and
freckles and a mole on the back of the hand.

Colours are encoded RGB in [0, 1] (see segment.raytrace); lengths are mm on the rest template.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

from smplx.joint_names import FINGER_LAST_JOINTS, PARENTS

__all__ = ["SKIN_TONES", "SkinTone", "SkinTexture"]


@dataclass(frozen=True)
class SkinTone:
    back: tuple[float, float, float]  # back of the hand
    palm: tuple[float, float, float]  # palm and finger pads
    nail: tuple[float, float, float]  # nail plate
    mark: tuple[float, float, float]  # freckles and the mole


SKIN_TONES = {
    "light": SkinTone((0.93, 0.76, 0.66), (0.95, 0.74, 0.68), (0.96, 0.80, 0.80), (0.62, 0.40, 0.28)),
    "medium": SkinTone((0.82, 0.60, 0.47), (0.88, 0.64, 0.55), (0.92, 0.74, 0.72), (0.48, 0.30, 0.20)),
    "tan": SkinTone((0.66, 0.45, 0.32), (0.80, 0.56, 0.45), (0.86, 0.68, 0.64), (0.36, 0.22, 0.14)),
    "deep": SkinTone((0.42, 0.27, 0.18), (0.66, 0.45, 0.36), (0.74, 0.58, 0.54), (0.22, 0.13, 0.09)),
}


def _smoothstep(edge0, edge1, x):
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _line(distance: np.ndarray, width: float) -> np.ndarray:
    """A soft line profile: 1 on the line, falling off with a Gaussian of standard deviation `width`."""
    return np.exp(-0.5 * (distance / width) ** 2)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


class SkinTexture:
    """Albedo of a subject's skin at points of the hand surface given by face and barycentric coordinates.

    Args:
        rest_vertices: (V, 3) rest-pose template, metres (sealed: with the wrist vertex).
        faces: (F, 3) faces of those vertices.
        lbs_weights: (V, 16) skinning weights (the seal vertex's included).
        rest_joints: (16, 3) rest joints, metres.
        tips: (5, 3) rest fingertip positions (index, middle, pinky, ring, thumb), metres.
        frames: (15, 3, 3) anatomical finger-joint frames (smplx.hand_pose.joint_frames).
        is_rhand: right hand.
        tone: a key of SKIN_TONES.
        seed: places the freckles and the mole and draws the skin-tone variation.
    """

    def __init__(self, rest_vertices: np.ndarray, faces: np.ndarray, lbs_weights: np.ndarray,
                 rest_joints: np.ndarray, tips: np.ndarray, frames: np.ndarray, *, is_rhand: bool = True,
                 tone: str = "medium", seed: int = 0):
        if tone not in SKIN_TONES:
            raise ValueError(f"skin tone {tone!r} is not one of {sorted(SKIN_TONES)}")
        self.tone = SKIN_TONES[tone]
        self.vertices = np.asarray(rest_vertices, dtype=float) * 1000
        self.faces = np.asarray(faces)
        self.normals = np.asarray(trimesh.Trimesh(self.vertices, self.faces, process=False).vertex_normals)
        self.part_of_vertex = np.asarray(lbs_weights).argmax(1)
        self.joints = np.asarray(rest_joints, dtype=float) * 1000
        self.tips = np.asarray(tips, dtype=float) * 1000
        side = 1.0 if is_rhand else -1.0
        j = self.joints
        palm_palmar = side * _unit(np.cross(j[1] - j[0], j[7] - j[0]))
        # palmar direction of every part: the palm's, then each finger joint's (its abduction axis, signed)
        self.palmar = np.concatenate([palm_palmar[None], side * np.asarray(frames)[:, :, 1]])
        self.bones = np.stack([_unit(self._child(k) - j[k]) for k in range(1, 16)])  # (15, 3) along each bone

        rng = np.random.default_rng([seed, 7])  # its own stream: the texture does not depend on other draws
        self.waves = rng.normal(size=(32, 3))  # a sum of many plane waves: smooth blotches, no visible stripes
        self.waves *= (2 * np.pi / rng.uniform(6.0, 30.0, size=32) / np.linalg.norm(self.waves, axis=1))[:, None]
        self.phases = rng.uniform(0, 2 * np.pi, size=32)
        back = np.flatnonzero(-(self.normals * self.palmar[self.part_of_vertex]).sum(1) > 0.5)
        picks = rng.choice(back, size=min(13, len(back)), replace=False)
        self.marks = self.vertices[picks]
        self.mark_radius = np.concatenate([rng.uniform(0.8, 1.7, size=len(picks) - 1), [2.2]])
        self.mark_strength = np.concatenate([rng.uniform(0.25, 0.45, size=len(picks) - 1), [0.7]])

        # palm coordinates: u from the wrist (0) to the middle-finger knuckle (1); v from the index knuckle (0) to
        # the little-finger knuckle (1), across the palm
        self.palm_axis = _unit(j[4] - j[0])
        across = j[7] - j[1]
        self.palm_across = _unit(across - self.palm_axis * (across @ self.palm_axis))
        self.palm_length = np.linalg.norm(j[4] - j[0])
        self.palm_width = abs(across @ self.palm_across)

    def _child(self, k: int) -> np.ndarray:
        """The point a finger joint's bone points to: the next joint, or the fingertip for a last joint."""
        if k in FINGER_LAST_JOINTS:
            return self.tips[FINGER_LAST_JOINTS.index(k)]
        return self.joints[k + 1]

    def __call__(self, face_ids: np.ndarray, barycentrics: np.ndarray) -> np.ndarray:
        """(N,) faces and (N, 3) barycentrics -> (N, 3) encoded albedo in [0, 1]."""
        corners = self.faces[face_ids]
        p = np.einsum("nk,nkc->nc", barycentrics, self.vertices[corners])
        n = _unit(np.einsum("nk,nkc->nc", barycentrics, self.normals[corners]))
        part = self.part_of_vertex[corners[np.arange(len(face_ids)), barycentrics.argmax(1)]]
        return np.clip(self.albedo_at(p, n, part), 0.0, 1.0)

    def albedo_at(self, p: np.ndarray, n: np.ndarray, part: np.ndarray) -> np.ndarray:
        """Albedo at rest-pose points p (N, 3) mm with unit normals n (N, 3) on skinning parts part (N,)."""
        tone = self.tone
        palmar = (n * self.palmar[part]).sum(1)  # +1 on the palm side of a part, -1 on its back
        colour = np.asarray(tone.back) + _smoothstep(-0.1, 0.6, palmar)[:, None] * (
            np.asarray(tone.palm) - np.asarray(tone.back))

        waves = np.sin(p @ self.waves.T + self.phases)  # (N, 32); a mean of 16 has standard deviation 0.18
        colour *= (1 + 0.15 * waves[:, :16].mean(1))[:, None]
        redness = 0.12 * waves[:, 16:].mean(1)
        colour *= np.stack([1 + redness, 1 - 0.3 * redness, 1 - 0.6 * redness], axis=1)

        darken = np.zeros(len(p))
        for k in range(1, 16):
            near = (part == k) | (part == PARENTS[k])
            if not near.any():
                continue
            rel = p[near] - self.joints[k]
            along = rel @ self.bones[k - 1]
            radial = np.linalg.norm(rel - along[:, None] * self.bones[k - 1], axis=1)
            region = _smoothstep(16.0, 11.0, radial) * _smoothstep(5.0, 3.0, np.abs(along))
            flexion = _line(along - 0.7, 0.35) + _line(along + 0.7, 0.35) if k % 3 == 2 else _line(along, 0.4)
            if k % 3 == 1:  # knuckles next to the palm: the palm's distal creases take their place on the palm side
                flexion = flexion * 0.5
            wrinkles = sum(_line(along - c, 0.3) for c in (-1.6, 0.0, 1.6)) * (k % 3 != 0)
            knuckle = np.exp(-0.5 * (along / 3.0) ** 2)
            side = palmar[near]
            darken[near] += region * (0.32 * flexion * _smoothstep(0.2, 0.6, side)
                                      + 0.10 * wrinkles * _smoothstep(0.3, 0.7, -side))
            colour[near] *= (1 - region * 0.07 * knuckle * _smoothstep(0.2, 0.6, -side))[:, None]
        darken += self._palm_creases(p, palmar, part)
        colour *= (1 - np.clip(darken, 0, 0.6))[:, None]

        colour = self._nails(colour, p, n, part)
        for centre, radius, strength in zip(self.marks, self.mark_radius, self.mark_strength):
            spot = strength * _smoothstep(radius, 0.6 * radius, np.linalg.norm(p - centre, axis=1))
            colour += spot[:, None] * (np.asarray(tone.mark) - colour)
        return colour

    def _palm_creases(self, p: np.ndarray, palmar: np.ndarray, part: np.ndarray) -> np.ndarray:
        """Darkening (N,) of the heart, head and life lines and two wrist creases on the palm side."""
        rel = p - self.joints[0]
        u = rel @ self.palm_axis / self.palm_length
        v = (rel @ self.palm_across - (self.joints[1] - self.joints[0]) @ self.palm_across) / self.palm_width
        L, W = self.palm_length, self.palm_width
        on_palm = _smoothstep(0.35, 0.7, palmar) * np.isin(part, (0, 13))
        heart = _line((u - (0.80 + 0.12 * (0.9 - v) ** 2)) * L, 0.45) * _smoothstep(0.05, 0.2, v)
        head = _line((u - (0.64 - 0.10 * v)) * L, 0.45) * _smoothstep(-0.25, -0.1, v) * _smoothstep(0.95, 0.8, v)
        life = _line((v - (0.22 - 0.42 * (u / 0.64) ** 2)) * W, 0.5) * _smoothstep(0.0, 0.1, u) * (u < 0.66)
        wrist = _line((u + 0.06) * L, 0.4) + _line((u + 0.14) * L, 0.4)
        return on_palm * (0.35 * heart + 0.35 * head + 0.35 * life + 0.18 * wrist * (part == 0))

    def _nails(self, colour: np.ndarray, p: np.ndarray, n: np.ndarray, part: np.ndarray) -> np.ndarray:
        """Nail plates on the back of each last finger segment: lunula near the base, whiter free edge at the tip,
        a darker cuticle line around the plate."""
        nail_colour = np.asarray(self.tone.nail)
        for k in FINGER_LAST_JOINTS:
            on = part == k
            if not on.any():
                continue
            length = np.linalg.norm(self._child(k) - self.joints[k])
            s = (p[on] - self.joints[k]) @ self.bones[k - 1] / length
            back = -(n[on] @ self.palmar[k])
            plate = _smoothstep(0.28, 0.36, s) * _smoothstep(0.45, 0.6, back)
            shade = nail_colour * (1 + 0.08 * _smoothstep(0.42, 0.36, s))[:, None]  # lunula
            shade = shade + _smoothstep(0.88, 0.95, s)[:, None] * (0.97 - shade)  # free edge
            cuticle = 1 - 0.25 * np.exp(-0.5 * ((plate - 0.5) / 0.2) ** 2) * (plate > 0.02)
            colour[on] = (colour[on] + plate[:, None] * (shade - colour[on])) * cuticle[:, None]
        return colour
