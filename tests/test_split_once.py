"""A split's annotation files are read once when the avatar's caches are built on first use: by the trainer (the
training subject, and the evaluation subject of its progress renders) and by `phase=val` (the evaluation subject,
and the training frames of the textured-mesh baseline). Each cache equals the one built alone; a current cache is read
back, not built again."""

import shutil
from collections import Counter

import numpy as np
import pytest

import handavatar.train as trainer
import segment.annotations
from handavatar.baseline.evaluate import training_crops
from handavatar.config import DEFAULTS, AvatarConfig, data_config
from handavatar.data.dataset import prepare_caches
from handavatar.validate import evaluation_dataset
from segment.annotations import Subject
from segment.preprocess import AnnotationCache, build_cache, cache_path, load_caches
from smplx.utils.config import load_config

TRAIN, EVAL = "test/Capture0/ROM04_RT_Occlusion", "test/Capture0/ROM03_RT_No_Occlusion"  # default.yaml's subjects


@pytest.fixture
def reads(monkeypatch) -> Counter:
    """How often each annotation file is read (segment.annotations' JSON reader, counted)."""
    counts, real_read = Counter(), segment.annotations._read_json

    def counted(path):
        counts[path.name] += 1
        return real_read(path)

    monkeypatch.setattr(segment.annotations, "_read_json", counted)
    return counts


def _config(root, *overrides) -> AvatarConfig:
    return load_config(AvatarConfig, [DEFAULTS], [f"data.root={root}", "smpl_cfg.model_path=open_hand",
                                                  "device=cpu", *overrides])


def _assert_same_cache(a: AnnotationCache, b: AnnotationCache) -> None:
    assert len(a) == len(b) > 0
    for name, value in vars(a).items():
        assert np.array_equal(value, vars(b)[name]) if isinstance(value, np.ndarray) else value == vars(b)[name], name


def test_two_subjects_of_a_split_read_it_once(synthetic_capture, tmp_path, reads):
    root = tmp_path / "capture"
    shutil.copytree(synthetic_capture, root)
    both = load_caches(root, [TRAIN, EVAL, TRAIN], model="open_hand", progress=False)
    assert sorted(reads.values()) == [1, 1, 1, 1], reads  # data, camera, joint_3d, MANO: once each
    assert both[0] is both[2]  # a subject named twice is built once
    for subject, cache in zip((TRAIN, EVAL), both):
        _assert_same_cache(cache, AnnotationCache.load(cache_path(root, Subject.parse(subject))))
        alone, _ = build_cache(root, Subject.parse(subject), model="open_hand", workers=1, progress=False)
        _assert_same_cache(cache, alone)
    reads.clear()
    again = load_caches(root, [TRAIN, EVAL], model="open_hand", progress=False)
    assert not reads  # current caches: read back, no annotation file read
    for cache, before in zip(again, both):
        _assert_same_cache(cache, before)


def test_the_trainer_and_validation_read_the_split_once(synthetic_capture, tmp_path, reads, monkeypatch):
    """The trainer up to its datasets (the model and the training loop replaced by a stop), then `phase=val` up to
    its datasets, each on a capture without caches."""

    class Stop(Exception):
        pass

    def datasets_then_stop(config, *args, **kwargs):
        evaluation_dataset(config)  # what the progress renders and validation read
        training_crops(config)  # what the baseline reads
        raise Stop

    for phase in ("train", "val"):
        root = tmp_path / phase
        shutil.copytree(synthetic_capture, root)
        config = _config(root, "train.progress_every=1", "train.accum_iter=2", "train.save_every=2",
                         f"out_root={tmp_path / 'runs'}")
        reads.clear()
        if phase == "train":
            monkeypatch.setattr(trainer, "build_avatar", lambda config, device: None)
            monkeypatch.setattr(trainer, "load_lpips", lambda *args, **kwargs: datasets_then_stop(config))
            with pytest.raises(Stop):
                trainer.train(config)
        else:
            monkeypatch.setattr(trainer, "load_avatar", lambda config, device: (None, root / "latest.tar", 0))
            monkeypatch.setattr(trainer, "validate", datasets_then_stop)
            with pytest.raises(Stop):
                trainer.run_validation(config)
        assert sorted(reads.values()) == [1, 1, 1, 1], (phase, reads)
        assert all(cache_path(root, Subject.parse(s)).is_file() for s in (TRAIN, EVAL))


def test_prepare_caches_groups_by_root(synthetic_capture, tmp_path, reads):
    """Datasets of two roots: each root's split read once, each cache in its own root."""
    roots = [tmp_path / "a", tmp_path / "b"]
    for root in roots:
        shutil.copytree(synthetic_capture, root)
    configs = [data_config(_config(root), split) for root in roots for split in ("train", "eval")]
    prepare_caches(*configs)
    assert sorted(reads.values()) == [2, 2, 2, 2], reads
    assert all(cache_path(c.root, Subject.parse(c.subject)).is_file() for c in configs)
