"""Reading and writing hand model files in the MANO format (.pkl or .npz), without chumpy.

The official MANO_RIGHT.pkl / MANO_LEFT.pkl are Python-2 pickles that hold chumpy arrays and an old-scipy sparse
J_regressor. They are read by a restricted unpickler: it builds numpy arrays, turns chumpy `Ch` objects and scipy
sparse matrices into plain arrays, and refuses every other class, so loading a model file cannot run code.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from smplx.utils.cli import InputError, MissingFileError
from smplx.utils.fileio import atomic_write
from smplx.joint_names import NUM_HAND_POSE, NUM_JOINTS, PARENTS

__all__ = ["HandModelData", "load_model_file", "save_model_file", "MANO_DOWNLOAD_HINT"]

MANO_DOWNLOAD_HINT = ("MANO comes from https://mano.is.tue.mpg.de (free registration, research licence): "
                      "put MANO_RIGHT.pkl (and MANO_LEFT.pkl) in mano/")


@dataclass
class HandModelData:
    """The arrays of a MANO-format hand model, float64 numpy, in metres."""

    v_template: np.ndarray  # (V, 3) rest-pose template
    faces: np.ndarray  # (F, 3) int64, counter-clockwise from outside
    shapedirs: np.ndarray  # (V, 3, NB) shape blend shapes
    posedirs: np.ndarray  # (V, 3, P) pose blend shapes, P = 135
    j_regressor: np.ndarray  # (16, V) dense joint regressor
    lbs_weights: np.ndarray  # (V, 16) skinning weights
    hands_components: np.ndarray | None = None  # (45, 45) PCA basis of hand poses, rows are components
    hands_mean: np.ndarray | None = None  # (45,) mean hand pose, axis-angle, radians
    hands_coeffs: np.ndarray | None = None  # (N, 45) PCA coefficients of the training poses (the pose prior)
    fingertip_vertex_ids: np.ndarray | None = None  # (5,) int64 tip vertices, index/middle/pinky/ring/thumb
    left_shapedirs_ok: bool = False  # True when a left-hand file needs no shapedirs x-sign fix (our own files)

    @property
    def num_vertices(self) -> int:
        return self.v_template.shape[0]


# ----------------------------------------------------------------------------------------------------------------
# The restricted unpickler


class _ChumpyArray:
    """Stands in for any chumpy class; a plain `Ch` keeps its value in state['x']."""

    def __setstate__(self, state):
        self.state = state


class _SparseMatrix:
    """Stands in for scipy.sparse csc/csr matrices; keeps their pickled state."""

    format = ""

    def __setstate__(self, state):
        self.state = state

    def to_dense(self) -> np.ndarray:
        st = self.state
        shape = tuple(int(n) for n in st.get("_shape", st.get("shape")))
        data, indices, indptr = (np.asarray(st[k]) for k in ("data", "indices", "indptr"))
        major = shape[1] if self.format == "csc" else shape[0]
        if len(indptr) != major + 1:
            raise pickle.UnpicklingError(f"sparse {self.format} matrix of shape {shape} has {len(indptr)} indptr "
                                         "entries")
        dense = np.zeros(shape, dtype=np.float64)
        major_of = np.repeat(np.arange(major), np.diff(indptr))
        if self.format == "csc":
            np.add.at(dense, (indices, major_of), data)
        else:
            np.add.at(dense, (major_of, indices), data)
        return dense


class _CscMatrix(_SparseMatrix):
    format = "csc"


class _CsrMatrix(_SparseMatrix):
    format = "csr"


def _numpy_global(module: str, name: str):
    core = np._core if hasattr(np, "_core") else np.core  # numpy 2 renamed numpy.core
    return getattr(core.multiarray if module.endswith("multiarray") else core.numeric, name)


_ALLOWED = {
    ("numpy", "ndarray"): lambda m, n: np.ndarray,
    ("numpy", "dtype"): lambda m, n: np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_global,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_global,
    ("numpy.core.multiarray", "scalar"): _numpy_global,
    ("numpy._core.multiarray", "scalar"): _numpy_global,
    ("numpy.core.numeric", "_frombuffer"): _numpy_global,
    ("numpy._core.numeric", "_frombuffer"): _numpy_global,
    ("copyreg", "_reconstructor"): lambda m, n: __import__("copyreg")._reconstructor,
    ("builtins", "object"): lambda m, n: object,
    ("builtins", "set"): lambda m, n: set,
    ("builtins", "frozenset"): lambda m, n: frozenset,
    ("_codecs", "encode"): lambda m, n: __import__("codecs").encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _compat_pickle.NAME_MAPPING:  # Python 2 names, as pickle.Unpickler maps them
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)](module, name)
        if module == "chumpy" or module.startswith("chumpy."):
            return _ChumpyArray
        if module.startswith("scipy.sparse") and name in ("csc_matrix", "csr_matrix"):
            return _CscMatrix if name == "csc_matrix" else _CsrMatrix
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a MANO model file holds only numpy, "
                                     "chumpy and scipy.sparse arrays")


def _plain(value, key: str, path: Path):
    """Replace chumpy and sparse stand-ins by numpy arrays."""
    if isinstance(value, _ChumpyArray):
        if not isinstance(value.state, dict) or "x" not in value.state:
            raise InputError(f"{path}: key {key!r} is a chumpy expression, not a plain chumpy array; convert the file "
                             "with chumpy installed (np.array(model[key])) and save it as .npz")
        return np.asarray(value.state["x"])
    if isinstance(value, _SparseMatrix):
        return value.to_dense()
    return value


def _read_pickle(path: Path) -> dict:
    try:
        raw = _RestrictedUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except Exception as err:  # damaged bytes reach the unpickler as any exception (IndexError too)
        raise InputError(f"{path}: not a readable MANO model pickle ({err})") from err
    if not isinstance(raw, dict):
        raise InputError(f"{path}: a MANO model pickle holds a dict, this one holds {type(raw).__name__}")
    return {str(k): _plain(v, str(k), path) for k, v in raw.items()}


# ----------------------------------------------------------------------------------------------------------------
# Validation and conversion


def _array(raw: dict, key: str, path: Path, shape: tuple, *, dtype=np.float64, required: bool = True):
    """raw[key] as an array of `shape` (None entries match any size), or a ValueError naming the key."""
    if key not in raw:
        if required:
            raise InputError(f"{path}: missing key {key!r} (keys present: {sorted(raw)})")
        return None
    arr = np.asarray(raw[key])
    ok = arr.ndim == len(shape) and all(s is None or s == n for s, n in zip(shape, arr.shape))
    if not ok:
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise InputError(f"{path}: key {key!r} has shape {arr.shape}, expected {want}")
    arr = arr.astype(dtype)
    if dtype == np.float64 and not np.isfinite(arr).all():
        raise InputError(f"{path}: key {key!r} holds NaN or infinite values; the file is damaged: get it again")
    return arr


def _from_raw(raw: dict, path: Path) -> HandModelData:
    v_template = _array(raw, "v_template", path, (None, 3))
    nv = v_template.shape[0]
    faces = _array(raw, "f", path, (None, 3), dtype=np.int64)
    if faces.min() < 0 or faces.max() >= nv:
        raise InputError(f"{path}: key 'f' indexes vertices {faces.min()}..{faces.max()}, but there are {nv}")
    kintree = _array(raw, "kintree_table", path, (2, NUM_JOINTS), dtype=np.int64)
    parents = tuple(int(p) for p in kintree[0, 1:])
    if parents != PARENTS[1:]:
        raise InputError(f"{path}: key 'kintree_table' has parents {parents}, expected MANO's {PARENTS[1:]}")
    tips = _array(raw, "fingertip_vertex_ids", path, (5,), dtype=np.int64, required=False)
    return HandModelData(
        v_template=v_template,
        faces=faces,
        shapedirs=_array(raw, "shapedirs", path, (nv, 3, None)),
        posedirs=_array(raw, "posedirs", path, (nv, 3, 9 * (NUM_JOINTS - 1))),
        j_regressor=_array(raw, "J_regressor", path, (NUM_JOINTS, nv)),
        lbs_weights=_array(raw, "weights", path, (nv, NUM_JOINTS)),
        hands_components=_array(raw, "hands_components", path, (None, NUM_HAND_POSE), required=False),
        hands_mean=_array(raw, "hands_mean", path, (NUM_HAND_POSE,), required=False),
        hands_coeffs=_array(raw, "hands_coeffs", path, (None, None), required=False),
        fingertip_vertex_ids=tips,
        left_shapedirs_ok=bool(np.asarray(raw.get("left_shapedirs_ok", False))),
    )


def load_model_file(path: str | Path) -> HandModelData:
    """Read a MANO-format model (.pkl, as distributed by MANO, or .npz with the same keys).

    Args:
        path: the file.

    Returns:
        HandModelData, float64 arrays; a sparse J_regressor is made dense.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is unreadable, or a key is missing, wrongly shaped or not finite (the key is named).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"hand model file {path} does not exist. {MANO_DOWNLOAD_HINT}")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                raw = {k: npz[k] for k in npz.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
            raise InputError(f"{path}: not a readable .npz model file ({err})") from err
    else:
        raw = _read_pickle(path)
    return _from_raw(raw, path)


def save_model_file(data: HandModelData, path: str | Path, *, extra: dict | None = None) -> Path:
    """Write a model in the MANO format: a .pkl (plain numpy arrays, pickle protocol 2) or an .npz.

    Args:
        data: the model.
        path: destination; its suffix (.pkl or .npz) picks the format. Written atomically.
        extra: further string or array entries to store (e.g. licence and provenance).

    Returns:
        The path written.
    """
    path = Path(path)
    if path.suffix not in (".pkl", ".npz"):
        raise InputError(f"model file {path}: use a .pkl or .npz suffix")
    kintree = np.stack([np.asarray(PARENTS, dtype=np.int64), np.arange(NUM_JOINTS)])
    kintree[0, 0] = 4294967295  # MANO stores the root's parent as uint32 -1
    raw = {
        "v_template": data.v_template, "f": data.faces.astype(np.int64), "shapedirs": data.shapedirs,
        "posedirs": data.posedirs, "J_regressor": data.j_regressor, "weights": data.lbs_weights,
        "kintree_table": kintree, "J": data.j_regressor @ data.v_template,
        "bs_style": "lbs", "bs_type": "lrotmin", "left_shapedirs_ok": np.bool_(data.left_shapedirs_ok),
    }
    optional = {"hands_components": data.hands_components, "hands_mean": data.hands_mean,
                "hands_coeffs": data.hands_coeffs, "fingertip_vertex_ids": data.fingertip_vertex_ids}
    raw.update({k: v for k, v in optional.items() if v is not None})
    raw.update(extra or {})
    if path.suffix == ".npz":
        return atomic_write(path, lambda f: np.savez(f, **raw))
    return atomic_write(path, lambda f: pickle.dump(raw, f, protocol=2))

