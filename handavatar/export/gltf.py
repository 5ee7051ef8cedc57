"""A skinned, textured, animated hand as binary glTF 2.0 (pygltflib writes the container).

Scene layout (glTF is y up, metres):

    hand                 rotation 180 deg about x: the avatar's camera-oriented model frame (y down, z forward)
    └── wrist ...        the 16 MANO joints in MANO order, each a node (translation to its parent, rotation)
    mesh                 the skinned surface (at the scene root, as glTF skins want), skin over the 16 joints,
                         optionally with morph targets (pose correctives) whose weights the clip drives

World positions are therefore the model frame turned to y up: a glTF camera at the origin looking down -z sees what
the avatar's camera (x right, y down, z forward) sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pygltflib as gl
from scipy.spatial.transform import Rotation

from smplx.joint_names import JOINT_NAMES, NUM_JOINTS, PARENTS

__all__ = ["Clip", "GlbMesh", "Y_UP", "glb_bytes"]

Y_UP = np.diag([1.0, -1.0, -1.0])
"""The rotation from the avatar's model frame (y down, z forward) to glTF's world (y up, z towards the viewer)."""


@dataclass
class GlbMesh:
    """The skinned surface, per atlas vertex (W vertices, F triangles)."""

    positions: np.ndarray  # (W, 3) bind-pose positions, model frame, metres
    normals: np.ndarray  # (W, 3) unit bind-pose normals, model frame
    uvs: np.ndarray  # (W, 2) texture coordinates (u right, v down)
    faces: np.ndarray  # (F, 3) anticlockwise seen from outside
    joint_ids: np.ndarray  # (W, 4) the strongest joints of each vertex
    weights: np.ndarray  # (W, 4) float32 weights summing to 1
    rest_joints: np.ndarray  # (16, 3) bind-pose joints, model frame, metres
    texture_png: bytes  # the albedo texture
    morph_positions: np.ndarray | None = None  # (K, W, 3) bind-pose displacements of K morph targets, metres
    morph_normals: np.ndarray | None = None  # (K, W, 3) their normal displacements


@dataclass
class Clip:
    """An animation of N frames: per-frame local joint rotations and the wrist's position."""

    times: np.ndarray  # (N,) seconds, increasing
    rotations: np.ndarray  # (N, 16, 3, 3) local joint rotations (joint 0: the global rotation), model frame
    wrist: np.ndarray  # (N, 3) wrist position, model frame, metres (keeps the posed joint 4 at the origin)
    name: str
    morph_weights: np.ndarray | None = None  # (N, K) weights of the mesh's K morph targets per frame


class _Buffer:
    """The binary chunk: typed arrays appended as 4-byte-aligned buffer views with their accessors."""

    def __init__(self, doc: gl.GLTF2):
        self.doc, self.data = doc, bytearray()

    def view(self, raw: bytes, target: int | None = None) -> int:
        self.data += b"\0" * (-len(self.data) % 4)
        self.doc.bufferViews.append(gl.BufferView(buffer=0, byteOffset=len(self.data), byteLength=len(raw),
                                                  target=target))
        self.data += raw
        return len(self.doc.bufferViews) - 1

    def accessor(self, array: np.ndarray, kind: str, *, target: int | None = None, bounds: bool = False) -> int:
        components = {np.float32: gl.FLOAT, np.uint16: gl.UNSIGNED_SHORT, np.uint32: gl.UNSIGNED_INT}
        array = np.ascontiguousarray(array)
        view = self.view(array.tobytes(), target)
        flat = array.reshape(len(array), -1)
        self.doc.accessors.append(gl.Accessor(
            bufferView=view, componentType=components[array.dtype.type], count=len(array), type=kind,
            min=flat.min(0).tolist() if bounds else None, max=flat.max(0).tolist() if bounds else None))
        return len(self.doc.accessors) - 1


def _quaternions(rotations: np.ndarray) -> np.ndarray:
    """(N, 3, 3) -> (N, 4) quaternions (x, y, z, w), each in the hemisphere of the one before (so that glTF's
    spherical interpolation takes the short way)."""
    quats = Rotation.from_matrix(rotations).as_quat()
    for k in range(1, len(quats)):
        if quats[k] @ quats[k - 1] < 0:
            quats[k] = -quats[k]
    return quats


def glb_bytes(mesh: GlbMesh, clip: Clip, *, name: str = "hand_avatar") -> bytes:
    """The .glb file of a skinned mesh and its animation clip (layout in the module docstring)."""
    doc = gl.GLTF2(asset=gl.Asset(generator="handavatar.export", version="2.0"), scene=0)
    buffer = _Buffer(doc)
    positions = buffer.accessor((mesh.positions @ Y_UP.T).astype(np.float32), gl.VEC3, target=gl.ARRAY_BUFFER,
                                bounds=True)
    normals = buffer.accessor((mesh.normals @ Y_UP.T).astype(np.float32), gl.VEC3, target=gl.ARRAY_BUFFER)
    uvs = buffer.accessor(mesh.uvs.astype(np.float32), gl.VEC2, target=gl.ARRAY_BUFFER)
    joint_ids = buffer.accessor(mesh.joint_ids.astype(np.uint16), gl.VEC4, target=gl.ARRAY_BUFFER)
    weights = buffer.accessor(mesh.weights.astype(np.float32), gl.VEC4, target=gl.ARRAY_BUFFER)
    indices = buffer.accessor(mesh.faces.reshape(-1).astype(np.uint32), gl.SCALAR, target=gl.ELEMENT_ARRAY_BUFFER)
    # inverse bind matrices: the inverse of each joint's bind-pose world matrix (y up) @ (translate to the joint)
    ibm = np.tile(np.eye(4), (NUM_JOINTS, 1, 1))
    ibm[:, :3, :3] = Y_UP.T
    ibm[:, :3, 3] = -mesh.rest_joints
    inverse_bind = buffer.accessor(ibm.transpose(0, 2, 1).astype(np.float32), gl.MAT4)  # column-major

    doc.images.append(gl.Image(bufferView=buffer.view(mesh.texture_png), mimeType="image/png", name="albedo"))
    doc.samplers.append(gl.Sampler(magFilter=gl.LINEAR, minFilter=gl.LINEAR_MIPMAP_LINEAR, wrapS=gl.CLAMP_TO_EDGE,
                                   wrapT=gl.CLAMP_TO_EDGE))
    doc.textures.append(gl.Texture(sampler=0, source=0, name="albedo"))
    doc.materials.append(gl.Material(name="albedo", pbrMetallicRoughness=gl.PbrMetallicRoughness(
        baseColorTexture=gl.TextureInfo(index=0), metallicFactor=0.0, roughnessFactor=0.8)))
    targets, morphs = [], 0 if mesh.morph_positions is None else len(mesh.morph_positions)
    for k in range(morphs):
        targets.append(gl.Attributes(
            POSITION=buffer.accessor((mesh.morph_positions[k] @ Y_UP.T).astype(np.float32), gl.VEC3,
                                     target=gl.ARRAY_BUFFER, bounds=True),
            NORMAL=buffer.accessor((mesh.morph_normals[k] @ Y_UP.T).astype(np.float32), gl.VEC3,
                                   target=gl.ARRAY_BUFFER)))
    doc.meshes.append(gl.Mesh(name=name, weights=[0.0] * morphs or None, primitives=[gl.Primitive(
        attributes=gl.Attributes(POSITION=positions, NORMAL=normals, TEXCOORD_0=uvs, JOINTS_0=joint_ids,
                                 WEIGHTS_0=weights), indices=indices, material=0, mode=gl.TRIANGLES,
        targets=targets or None)]))

    # nodes: 0 the y-up frame, 1..16 the joints, 17 the skinned mesh
    offsets = [mesh.rest_joints[0] - mesh.rest_joints[4]] + [
        mesh.rest_joints[j] - mesh.rest_joints[PARENTS[j]] for j in range(1, NUM_JOINTS)]
    flip_quat = Rotation.from_matrix(Y_UP).as_quat().tolist()
    doc.nodes.append(gl.Node(name="hand", rotation=flip_quat, children=[1]))
    for j in range(NUM_JOINTS):
        children = [1 + c for c in range(NUM_JOINTS) if PARENTS[c] == j]
        doc.nodes.append(gl.Node(name=JOINT_NAMES[j], translation=offsets[j].tolist(), children=children or None))
    doc.nodes.append(gl.Node(name=name, mesh=0, skin=0))
    doc.skins.append(gl.Skin(name="mano", joints=list(range(1, NUM_JOINTS + 1)), skeleton=1,
                             inverseBindMatrices=inverse_bind))
    doc.scenes.append(gl.Scene(name=name, nodes=[0, NUM_JOINTS + 1]))

    times = buffer.accessor(clip.times.astype(np.float32), gl.SCALAR, bounds=True)
    channels, samplers = [], []
    outputs = [(1, "translation", buffer.accessor(clip.wrist.astype(np.float32), gl.VEC3))]
    outputs += [(1 + j, "rotation", buffer.accessor(_quaternions(clip.rotations[:, j]).astype(np.float32), gl.VEC4))
                for j in range(NUM_JOINTS)]
    if morphs:
        if clip.morph_weights is None or clip.morph_weights.shape != (len(clip.times), morphs):
            raise ValueError(f"the clip's morph_weights must be ({len(clip.times)}, {morphs}) for {morphs} targets")
        outputs.append((NUM_JOINTS + 1, "weights", buffer.accessor(clip.morph_weights.reshape(-1).astype(np.float32),
                                                                   gl.SCALAR)))
    for node, path, output in outputs:
        samplers.append(gl.AnimationSampler(input=times, output=output, interpolation=gl.ANIM_LINEAR))
        channels.append(gl.AnimationChannel(sampler=len(samplers) - 1, target=gl.AnimationChannelTarget(node=node,
                                                                                                         path=path)))
    doc.animations.append(gl.Animation(name=clip.name, channels=channels, samplers=samplers))

    doc.buffers.append(gl.Buffer(byteLength=len(buffer.data)))
    doc.set_binary_blob(bytes(buffer.data))
    return b"".join(doc.save_to_bytes())
