"""The MANO hand layer: a torch module over a MANO-format model, and `create()` that finds and loads one."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from smplx.utils.cli import MissingFileError
from smplx.hand_pose import joint_frames
from smplx.joint_names import (FINGER_LAST_JOINTS, MANO_FINGERTIP_VERTEX_IDS, MANO_NUM_VERTICES, NUM_HAND_POSE,
                               NUM_JOINTS, PARENTS)
from smplx.lbs import lbs
from smplx.model_file import MANO_DOWNLOAD_HINT, HandModelData, load_model_file
from smplx.open_hand import build_open_hand
from smplx.topology import boundary_loops, seal_fan

__all__ = ["MANO", "MANOOutput", "create", "find_model_file", "OPEN_HAND", "PAPER_FRAME"]

MODEL_TYPES = ("mano",)
OPEN_HAND = "open_hand"  # model_path that asks create() for the built-in open hand
PAPER_FRAME = dict(center_id=4, scale=10.0, seal=True, distal=True)
"""The paper's model frame (reference §2.3): centred on the posed middle-MCP joint, in decimetres, the wrist sealed,
the 5 fingertips as joints 16-20: `smplx.create(path, **PAPER_FRAME)`."""
_log = logging.getLogger(__name__)


@dataclass
class MANOOutput:
    vertices: Tensor  # (B, V, 3) posed vertices, output frame (centred and scaled as configured); V + 1 if sealed
    joints: Tensor  # (B, 16, 3) posed joints, output frame; (B, 21, 3) with the 5 fingertips when distal=True
    betas: Tensor  # (B, NB) shape coefficients used
    global_orient: Tensor  # (B, 3) axis-angle of the wrist, radians
    hand_pose: Tensor  # (B, 45) axis-angle of the 15 finger joints as given (PCA coefficients expanded), radians
    full_pose: Tensor  # (B, 48) global_orient and hand_pose plus the pose mean: the pose actually applied


def _fingertip_ids(data: HandModelData) -> np.ndarray:
    """The 5 fingertip vertices: stored in the file, MANO's known ids, or the vertex of each finger's last part that
    lies farthest along that finger's last bone."""
    if data.fingertip_vertex_ids is not None:
        return data.fingertip_vertex_ids.astype(np.int64)
    if data.num_vertices == MANO_NUM_VERTICES:
        return np.asarray(MANO_FINGERTIP_VERTEX_IDS, dtype=np.int64)
    joints = data.j_regressor @ data.v_template
    part = data.lbs_weights.argmax(1)
    tips = []
    for k in FINGER_LAST_JOINTS:
        bone = joints[k] - joints[PARENTS[k]]
        candidates = np.flatnonzero(part == k)
        if len(candidates) == 0:
            raise ValueError(f"no vertex is skinned mostly to joint {k}; cannot place its fingertip. Store "
                             "'fingertip_vertex_ids' in the model file.")
        tips.append(candidates[np.argmax((data.v_template[candidates] - joints[k]) @ bone)])
    return np.asarray(tips, dtype=np.int64)


class MANO(nn.Module):
    """MANO hand layer (stateless): shape, pose and skin a hand; optionally centre, scale, seal and add fingertips.

    Build it with `create()` from a model file, or directly from `HandModelData`. Constant tensors are buffers, so
    `.to(device)` and `.double()` move and convert them; inputs must match the buffers' device and dtype.

    Args:
        data: the model arrays (metres).
        is_rhand: right hand. A left-hand model read from an official MANO file gets the known shapedirs x-sign fix.
        use_pca: hand_pose holds `num_pca_comps` PCA coefficients instead of 45 axis-angle values.
        num_pca_comps: PCA components used when use_pca.
        flat_hand_mean: if False, the model's mean hand pose is added to hand_pose.
        num_betas: shape components used (at most those in the model).
        center_id: if set, subtract posed joint `center_id` (4: middle-finger MCP) from joints and vertices.
        scale: if set, multiply joints and vertices by it after centring (10: metres to decimetres).
        seal: append one vertex closing the wrist hole (mean of the wrist rim) and expose sealed faces.
        distal: append the 5 fingertip vertices as joints 16-20.
        dtype: floating dtype of the buffers.
    """

    def __init__(self, data: HandModelData, *, is_rhand: bool = True, use_pca: bool = False, num_pca_comps: int = 6,
                 flat_hand_mean: bool = True, num_betas: int = 10, center_id: int | None = None,
                 scale: float | None = None, seal: bool = False, distal: bool = False,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        self._options = dict(is_rhand=is_rhand, use_pca=use_pca, num_pca_comps=num_pca_comps,
                             flat_hand_mean=flat_hand_mean, num_betas=num_betas, center_id=center_id, scale=scale,
                             seal=seal, distal=distal, dtype=dtype)
        if center_id is not None and not 0 <= center_id < NUM_JOINTS:
            raise ValueError(f"center_id={center_id} must be a joint index in 0..{NUM_JOINTS - 1} (4: middle1)")
        self.is_rhand, self.use_pca, self.seal, self.distal = is_rhand, use_pca, seal, distal
        self.source = "arrays"  # where the model came from (set by create()): a file path, or OPEN_HAND
        self.center_id, self.scale = center_id, scale
        self.parents = PARENTS

        shapedirs = data.shapedirs.copy()
        if num_betas > shapedirs.shape[2]:
            warnings.warn(f"num_betas={num_betas} but the model has {shapedirs.shape[2]} shape components; "
                          f"using {shapedirs.shape[2]}", stacklevel=2)
        shapedirs = shapedirs[:, :, :num_betas]
        if not is_rhand and not data.left_shapedirs_ok:
            shapedirs[:, 0, :] *= -1
            warnings.warn("left hand: applied the known MANO_LEFT shapedirs fix (x component negated)", stacklevel=2)
        self.num_betas = shapedirs.shape[2]

        def buffer(name, array, kind=dtype, persistent=True):
            self.register_buffer(name, torch.as_tensor(np.ascontiguousarray(array), dtype=kind),
                                 persistent=persistent)

        buffer("v_template", data.v_template)
        buffer("shapedirs", shapedirs)
        buffer("posedirs", data.posedirs.reshape(-1, data.posedirs.shape[2]).T)  # (P, 3V), vertex-major
        # decided here, once: a model without pose blend shapes (the open hand) skips the largest matrix product
        self._has_posedirs = bool(np.any(data.posedirs))
        buffer("j_regressor", data.j_regressor)
        used = np.flatnonzero(np.abs(data.j_regressor).sum(0))  # the joints read few vertices (778 of MANO-HD's)
        buffer("_regressor_vertex_ids", used, torch.int64, persistent=False)
        buffer("_j_regressor_used", data.j_regressor[:, used], persistent=False)
        buffer("lbs_weights", data.lbs_weights)
        buffer("faces", data.faces, torch.int64)
        buffer("fingertip_ids", _fingertip_ids(data), torch.int64)

        hands_mean = np.zeros(NUM_HAND_POSE) if flat_hand_mean or data.hands_mean is None else data.hands_mean
        if not flat_hand_mean and data.hands_mean is None:
            raise ValueError("flat_hand_mean=False needs the model file's 'hands_mean', which it lacks")
        buffer("pose_mean", np.concatenate([np.zeros(3), hands_mean]))
        self._hands_mean, self._hands_components, self._hands_coeffs = (
            data.hands_mean, data.hands_components, data.hands_coeffs)
        if use_pca:
            if data.hands_components is None:
                raise ValueError("use_pca=True needs the model file's 'hands_components', which it lacks")
            if not 0 < num_pca_comps <= data.hands_components.shape[0]:
                raise ValueError(f"num_pca_comps={num_pca_comps} must be in 1..{data.hands_components.shape[0]}")
            buffer("hands_components", data.hands_components[:num_pca_comps])
        self.num_pca_comps = num_pca_comps

        if seal:
            loops = boundary_loops(data.faces)
            if len(loops) != 1:
                raise ValueError(f"seal=True needs exactly one open boundary (the wrist); this mesh has {len(loops)} "
                                 f"(lengths {[len(lp) for lp in loops]})")
            buffer("seal_loop", loops[0], torch.int64)
            buffer("faces_sealed", np.concatenate([data.faces, seal_fan(loops[0], data.num_vertices)]), torch.int64)

    @property
    def options(self) -> dict:
        """The keyword arguments this layer was built with."""
        return dict(self._options)

    @property
    def num_vertices(self) -> int:
        """Vertices of the output mesh (template vertices, plus the seal vertex when sealed)."""
        return self.v_template.shape[0] + int(self.seal)

    @property
    def output_faces(self) -> Tensor:
        """(F, 3) faces of the output vertices: sealed when seal=True."""
        return self.faces_sealed if self.seal else self.faces

    def pose_frames(self) -> np.ndarray:
        """(15, 3, 3) anatomical frames of the finger joints (smplx.hand_pose.joint_frames of the rest joints)."""
        rest = (self.j_regressor @ self.v_template).detach().double().cpu().numpy()
        return joint_frames(rest, is_rhand=self.is_rhand)

    def to_model_data(self) -> HandModelData:
        """The model arrays back as float64 numpy (shapedirs as used: truncated, left-hand fix applied)."""
        def np64(t):
            return t.detach().cpu().double().numpy()
        nv = self.v_template.shape[0]
        return HandModelData(
            v_template=np64(self.v_template), faces=self.faces.cpu().numpy(), shapedirs=np64(self.shapedirs),
            posedirs=np64(self.posedirs).T.reshape(nv, 3, -1), j_regressor=np64(self.j_regressor),
            lbs_weights=np64(self.lbs_weights), hands_components=self._hands_components, hands_mean=self._hands_mean,
            hands_coeffs=self._hands_coeffs, fingertip_vertex_ids=self.fingertip_ids.cpu().numpy(),
            left_shapedirs_ok=True)

    def _batch_input(self, name: str, value: Tensor | None, width: int, batch: int) -> Tensor:
        ref = self.v_template
        if value is None:
            return ref.new_zeros(batch, width)
        if value.ndim != 2 or value.shape != (batch, width):
            raise ValueError(f"{name} has shape {tuple(value.shape)}, expected ({batch}, {width})")
        if value.dtype != ref.dtype or value.device != ref.device:
            raise ValueError(f"{name} is {value.dtype} on {value.device}, the model is {ref.dtype} on {ref.device}; "
                             "convert the input or the model (.to(), .double())")
        return value

    def forward(self, betas: Tensor | None = None, global_orient: Tensor | None = None,
                hand_pose: Tensor | None = None, transl: Tensor | None = None, *,
                shaped_verts: Tensor | None = None, custom_lbs_weights: Tensor | None = None) -> MANOOutput:
        """Pose a batch of hands. Missing inputs are zeros.

        Args:
            betas: (B, num_betas) shape coefficients.
            global_orient: (B, 3) wrist axis-angle, radians.
            hand_pose: (B, 45) finger axis-angle, radians; (B, num_pca_comps) PCA coefficients when use_pca.
            transl: (B, 3) translation added last, in output units.
            shaped_verts: (B, V, 3) rest-pose vertices replacing template + shape blend (metres).
            custom_lbs_weights: (V, 16) or (B, V, 16) skinning weights replacing the model's.

        Returns:
            MANOOutput.
        """
        given = [t for t in (betas, global_orient, hand_pose, transl, shaped_verts) if t is not None]
        batch = given[0].shape[0] if given else 1
        pose_width = self.num_pca_comps if self.use_pca else NUM_HAND_POSE
        betas = self._batch_input("betas", betas, self.num_betas, batch)
        global_orient = self._batch_input("global_orient", global_orient, 3, batch)
        hand_pose = self._batch_input("hand_pose", hand_pose, pose_width, batch)
        transl = None if transl is None else self._batch_input("transl", transl, 3, batch)
        if self.use_pca:
            hand_pose = hand_pose @ self.hands_components
        nv = self.v_template.shape[0]
        if shaped_verts is not None and shaped_verts.shape != (batch, nv, 3):
            raise ValueError(f"shaped_verts has shape {tuple(shaped_verts.shape)}, expected ({batch}, {nv}, 3)")
        weights = self.lbs_weights if custom_lbs_weights is None else custom_lbs_weights
        if weights.shape[-2:] != (nv, NUM_JOINTS):
            raise ValueError(f"custom_lbs_weights has shape {tuple(weights.shape)}, expected ({nv}, {NUM_JOINTS})")

        full_pose = torch.cat([global_orient, hand_pose], dim=1) + self.pose_mean
        posedirs = self.posedirs if self._has_posedirs else None
        vertices, joints = lbs(betas, full_pose, self.v_template, self.shapedirs, posedirs,
                               self._j_regressor_used, self.parents, weights, shaped_verts=shaped_verts,
                               regressor_vertex_ids=self._regressor_vertex_ids)
        if self.center_id is not None or self.scale is not None or transl is not None:
            # x -> (x - centre) * scale + transl, as one pass over the vertices
            scale = 1.0 if self.scale is None else self.scale
            offset = joints.new_zeros(batch, 1, 3)
            if self.center_id is not None:
                offset = offset - scale * joints[:, self.center_id:self.center_id + 1]
            if transl is not None:
                offset = offset + transl[:, None]
            vertices, joints = torch.add(offset, vertices, alpha=scale), torch.add(offset, joints, alpha=scale)
        if self.distal:
            joints = torch.cat([joints, vertices[:, self.fingertip_ids]], dim=1)
        if self.seal:
            vertices = torch.cat([vertices, vertices[:, self.seal_loop].mean(1, keepdim=True)], dim=1)
        return MANOOutput(vertices=vertices, joints=joints, betas=betas, global_orient=global_orient,
                          hand_pose=hand_pose, full_pose=full_pose)


def find_model_file(model_path: str | Path, *, is_rhand: bool = True) -> Path:
    """Locate MANO_RIGHT / MANO_LEFT (.pkl, then .npz) at `model_path` (a file, a folder, or a folder holding mano/).

    Raises:
        FileNotFoundError: naming every place looked at and where MANO comes from.
    """
    path = Path(model_path)
    if path.is_file():
        return path
    if path.suffix in (".pkl", ".npz"):
        raise MissingFileError(f"hand model file {path} does not exist. {MANO_DOWNLOAD_HINT}")
    name = "MANO_RIGHT" if is_rhand else "MANO_LEFT"
    candidates = [folder / f"{name}{ext}" for folder in (path, path / "mano") for ext in (".pkl", ".npz")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise MissingFileError(f"no {name} model found (looked at {looked}). {MANO_DOWNLOAD_HINT}")


def create(model_path: str | Path, model_type: str = "mano", *, is_rhand: bool = True, use_pca: bool = False,
           num_pca_comps: int = 6, flat_hand_mean: bool = True, num_betas: int = 10, center_id: int | None = None,
           scale: float | None = None, seal: bool = False, distal: bool = False,
           dtype: torch.dtype = torch.float32) -> MANO:
    """Load a MANO hand layer from a model file or folder (see `find_model_file` and `MANO` for the options).

    A folder without MANO_RIGHT / MANO_LEFT gives the built-in open hand (smplx.open_hand) and logs a one-line
    warning that says so; model_path="open_hand" (OPEN_HAND) asks for it without a warning; a named file that does
    not exist raises FileNotFoundError. The layer's `source` says which model was loaded (a path, or OPEN_HAND).
    """
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type={model_type!r} is not one of {list(MODEL_TYPES)}")
    if str(model_path) == OPEN_HAND:
        data, source = build_open_hand(is_rhand), OPEN_HAND
    else:
        data, source = _load_or_open_hand(model_path, is_rhand)
    layer = MANO(data, is_rhand=is_rhand, use_pca=use_pca, num_pca_comps=num_pca_comps, flat_hand_mean=flat_hand_mean,
                 num_betas=num_betas, center_id=center_id, scale=scale, seal=seal, distal=distal, dtype=dtype)
    layer.source = source
    return layer


def _load_or_open_hand(model_path: str | Path, is_rhand: bool) -> tuple[HandModelData, str]:
    try:
        path = find_model_file(model_path, is_rhand=is_rhand)
        data, source = load_model_file(path), str(path)
    except FileNotFoundError:
        if Path(model_path).suffix in (".pkl", ".npz"):  # a file was named: do not silently use another model
            raise
        side = "RIGHT" if is_rhand else "LEFT"
        _log.warning("no MANO_%s.pkl in %s: using the built-in open hand (CC0). For the paper's model: %s", side,
                     model_path, MANO_DOWNLOAD_HINT)
        data, source = build_open_hand(is_rhand), OPEN_HAND
    return data, source

