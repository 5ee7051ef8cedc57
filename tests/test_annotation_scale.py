"""Annotation files at scale (bench/annotation_scale.py writes them with the release's layout): a split is read and
indexed once for all its subjects, and selecting a subject through the per-sequence index gives exactly the frames a
scan of the whole split gives. The full-scale time and memory are in docs/reliability.md."""

from collections import Counter

import numpy as np

import segment.annotations
import segment.preprocess
from bench.annotation_scale import SUBJECT_SEQUENCE, link_subject_images, write_split
from segment.annotations import SplitAnnotations, Subject
from segment.preprocess import AnnotationCache, cache_path


def _scan(annotations: SplitAnnotations, subject: Subject, hand: str) -> tuple[list[str], int]:
    """A scan of every image of the split (the reference): the keys of the subject's images annotated with `hand`, in
    (frame, camera) order, and how many images the subject has."""
    rows = sorted((int(i["frame_idx"]), str(i["camera"]), i["file_name"], annotations.annotations[key]["hand_type"])
                  for key, i in annotations.images.items()
                  if int(i["capture"]) == subject.capture and i["seq_name"] == subject.seq_name
                  and (subject.camera is None or str(i["camera"]) == subject.camera))
    return [f"{annotations.split}/{name}" for _, _, name, kind in rows if kind == hand], len(rows)


def test_generated_split_is_read_and_each_subject_selects_its_own_frames(tmp_path):
    """Every frame of the generated files is usable but for its hand type, so a subject's records are the scan's."""
    per_sequence = write_split(tmp_path, "test", 700, captures=2, cameras=3, sequences=4)
    annotations = SplitAnnotations(tmp_path, "test")
    assert len(annotations.images) == len(annotations.annotations) == 700
    assert per_sequence == 700 // (2 * 4 * 3)
    counts = Counter()
    for capture in range(2):
        for name in ("ROM04_RT_Occlusion", "SEQ01_left", "SEQ02_interacting", "SEQ03_right", "NOT_THERE"):
            for camera in (None, "400002"):
                subject = Subject("test", capture, name, camera)
                for hand in ("right", "left"):
                    records, rejected = annotations.frames(subject, hand)
                    keys, images = _scan(annotations, subject, hand)
                    assert [r.key for r in records] == keys, (subject, hand)
                    assert len(records) + sum(rejected.values()) == images, (subject, hand)
                    counts[hand] += len(records)
    assert counts["right"] and counts["left"]  # both hands were generated and selected


def test_preprocess_reads_a_split_once_for_all_its_subjects(tmp_path, monkeypatch):
    """Two subjects of one split on one command line: each annotation file is read once, and each cache equals the
    one built for that subject alone."""
    frames = write_split(tmp_path, "test", 48, captures=1, cameras=2, sequences=2)
    assert link_subject_images(tmp_path, "test", cameras=2, frames=frames) == 24
    reads, real_read = Counter(), segment.annotations._read_json

    def counted(path):
        reads[path.name] += 1
        return real_read(path)

    monkeypatch.setattr(segment.annotations, "_read_json", counted)
    subjects = [Subject("test", 0, SUBJECT_SEQUENCE), Subject("test", 0, SUBJECT_SEQUENCE, "400002")]
    arguments = ["--root", str(tmp_path), "--model", "open_hand", "--quiet", "--workers", "1"]
    assert segment.preprocess.main([*arguments, *[a for s in subjects for a in ("--subject", str(s))]]) == 0
    assert sorted(reads.values()) == [1, 1, 1, 1], reads
    together = [AnnotationCache.load(cache_path(tmp_path, s)) for s in subjects]
    for subject, cache in zip(subjects, together):
        alone, _ = segment.preprocess.build_cache(tmp_path, subject, model="open_hand", workers=1, progress=False)
        assert len(alone) == len(cache) > 0
        for name, value in vars(alone).items():
            if isinstance(value, np.ndarray):
                assert np.array_equal(value, vars(cache)[name]), name
