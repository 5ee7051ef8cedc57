"""Write a model the way the official MANO_*.pkl files are written: a protocol-2 pickle in which the blend shapes
are `chumpy.ch.Ch` objects, J_regressor is a `scipy.sparse.csc.csc_matrix`, numpy arrays reference
`numpy.core.multiarray._reconstruct` with their bytes as (latin-1) strings, and copyreg is spelled `copy_reg`.

Fake `chumpy.ch`, `scipy.sparse.csc` and `numpy.core.multiarray` modules exist only while pickling, so the file
really references those names while neither chumpy nor the old scipy module is imported to read it.
"""

from __future__ import annotations

import copyreg
import pickle
import sys
import types
from contextlib import contextmanager

import numpy as np
import scipy.sparse

from smplx.model_file import HandModelData


def _reconstruct(*args):  # only its name is pickled
    raise AssertionError("never called")


class Ch:
    def __init__(self, x):
        self.x = x

    def __reduce_ex__(self, protocol):
        state = {"x": self.x, "_dirty_vars": set(), "_itr": None, "_make_dense": False, "_make_sparse": False}
        return copyreg._reconstructor, (Ch, object, None), state


class csc_matrix:  # noqa: N801  (the name the pickle must carry)
    def __init__(self, dense):
        m = scipy.sparse.csc_matrix(dense)
        self.state = {"_shape": m.shape, "maxprint": 50, "indices": m.indices, "indptr": m.indptr, "data": m.data}

    def __reduce_ex__(self, protocol):
        return copyreg._reconstructor, (csc_matrix, object, None), self.state


class _Py2Pickler(pickle.Pickler):
    def reducer_override(self, obj):
        if type(obj) is np.ndarray:  # as numpy 1 on Python 2 wrote arrays: raw bytes as a str
            arr = np.ascontiguousarray(obj)
            state = (1, arr.shape, arr.dtype, False, arr.tobytes().decode("latin1"))
            return _reconstruct, (np.ndarray, (0,), "b"), state
        return NotImplemented


@contextmanager
def _fake_modules():
    fakes = {"chumpy": types.ModuleType("chumpy"), "chumpy.ch": types.ModuleType("chumpy.ch"),
             "scipy.sparse.csc": types.ModuleType("scipy.sparse.csc"),
             "numpy.core.multiarray": types.ModuleType("numpy.core.multiarray")}
    for obj, module in ((Ch, "chumpy.ch"), (csc_matrix, "scipy.sparse.csc"), (_reconstruct, "numpy.core.multiarray")):
        name = obj.__name__.lstrip("_") if obj is not _reconstruct else "_reconstruct"
        obj.__module__, obj.__qualname__ = module, name
        setattr(fakes[module], name, obj)
    saved = {k: sys.modules.get(k) for k in fakes}
    sys.modules.update(fakes)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def write_official_style_pickle(data: HandModelData, path) -> None:
    kintree = np.stack([np.array([4294967295, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14]), np.arange(16)])
    raw = {
        "hands_components": data.hands_components, "f": data.faces.astype(np.uint32),
        "J_regressor": csc_matrix(data.j_regressor), "kintree_table": kintree, "J": data.j_regressor @ data.v_template,
        "bs_style": "lbs", "hands_coeffs": data.hands_coeffs, "weights": data.lbs_weights,
        "posedirs": data.posedirs, "hands_mean": data.hands_mean, "v_template": data.v_template,
        "shapedirs": Ch(data.shapedirs), "bs_type": "lrotmin",
    }
    with _fake_modules(), open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump(raw)
