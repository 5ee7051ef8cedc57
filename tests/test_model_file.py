import pickle
import pickletools

import numpy as np
import pytest

from smplx.model_file import load_model_file, save_model_file
from tests.mano_pickle import write_official_style_pickle


def _globals_in(path):
    names = set()
    ops = list(pickletools.genops(path.read_bytes()))
    for op, arg, _ in ops:
        if op.name == "GLOBAL":
            names.add(arg.replace(" ", "."))
    return names


def test_official_style_pickle_loads_without_chumpy(tube_data, tmp_path):
    path = tmp_path / "MANO_RIGHT.pkl"
    write_official_style_pickle(tube_data, path)
    refs = _globals_in(path)
    assert {"chumpy.ch.Ch", "scipy.sparse.csc.csc_matrix", "numpy.core.multiarray._reconstruct",
            "copy_reg._reconstructor"} <= refs
    loaded = load_model_file(path)
    for key in ("v_template", "shapedirs", "posedirs", "j_regressor", "lbs_weights", "hands_components",
                "hands_mean", "hands_coeffs"):
        np.testing.assert_array_equal(getattr(loaded, key), getattr(tube_data, key), err_msg=key)
    np.testing.assert_array_equal(loaded.faces, tube_data.faces)
    assert loaded.fingertip_vertex_ids is None and not loaded.left_shapedirs_ok


@pytest.mark.parametrize("suffix", [".pkl", ".npz"])
def test_save_load_round_trip(tube_data, tmp_path, suffix):
    path = save_model_file(tube_data, tmp_path / f"model{suffix}", extra={"license": "CC0-1.0"})
    assert not list(tmp_path.glob("*tmp*"))
    loaded = load_model_file(path)
    for key in ("v_template", "faces", "shapedirs", "posedirs", "j_regressor", "lbs_weights",
                "fingertip_vertex_ids"):
        np.testing.assert_array_equal(getattr(loaded, key), getattr(tube_data, key), err_msg=key)


def test_pickle_with_other_classes_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"

    class Boom:
        def __reduce__(self):
            return (print, ("code ran",))

    path.write_bytes(pickle.dumps({"v_template": Boom()}, protocol=2))
    with pytest.raises(ValueError, match=r"evil\.pkl.*refusing to load builtins\.print"):
        load_model_file(path)


def test_missing_and_misshaped_keys_are_named(tube_data, tmp_path):
    raw = dict(np.load(save_model_file(tube_data, tmp_path / "m.npz")))
    del raw["weights"]
    np.savez(tmp_path / "no_weights.npz", **raw)
    with pytest.raises(ValueError, match=r"no_weights\.npz: missing key 'weights'"):
        load_model_file(tmp_path / "no_weights.npz")
    raw = dict(np.load(tmp_path / "m.npz"))
    raw["J_regressor"] = raw["J_regressor"][:15]
    np.savez(tmp_path / "bad_jreg.npz", **raw)
    with pytest.raises(ValueError, match=r"key 'J_regressor' has shape \(15, 265\), expected \(16, 265\)"):
        load_model_file(tmp_path / "bad_jreg.npz")
    raw = dict(np.load(tmp_path / "m.npz"))
    raw["v_template"][3, 1] = np.nan
    np.savez(tmp_path / "nan.npz", **raw)
    with pytest.raises(ValueError, match="'v_template' holds NaN"):
        load_model_file(tmp_path / "nan.npz")


def test_corrupt_and_missing_files(tmp_path):
    (tmp_path / "cut.pkl").write_bytes(b"\x80\x02}q\x00(X")
    with pytest.raises(ValueError, match=r"cut\.pkl: not a readable MANO model pickle"):
        load_model_file(tmp_path / "cut.pkl")
    with pytest.raises(FileNotFoundError, match="mano.is.tue.mpg.de"):
        load_model_file(tmp_path / "absent.pkl")
