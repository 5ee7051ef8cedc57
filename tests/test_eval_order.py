"""The evaluation frames: every eval_skip-th usable frame in data.json's annotation order (the published loader), or in
(capture, frame, camera) order, on a capture whose data.json is NOT frame-major (it lists the frames camera by camera,
and the frames of each camera backwards), so the two selections differ."""

import json
import shutil

import pytest

from smplx.utils.config import load_config
from segment.interhand import annotation_path
from handavatar.config import DEFAULTS, AvatarConfig
from handavatar.data import DataConfig, InterHandDataset
from handavatar.validate import evaluation_dataset

SUBJECT = "test/Capture0/ROM04_RT_Occlusion"  # SMALL_CAPTURE: 5 frames x 2 cameras


@pytest.fixture(scope="module")
def camera_major(synthetic_capture, tmp_path_factory):
    """A copy of the tests' capture with data.json's annotations (and images) reordered: camera by camera, frames
    descending. Returns (root, the keys '<split>/<file_name>' in the new annotation order)."""
    root = tmp_path_factory.mktemp("order") / "capture"
    shutil.copytree(synthetic_capture, root)
    path = annotation_path(root, "test", "data")
    data = json.loads(path.read_text())
    images = {image["id"]: image for image in data["images"]}

    def camera_major_key(ann):
        image = images[ann["image_id"]]
        return str(image["camera"]), -int(image["frame_idx"])

    data["annotations"] = sorted(data["annotations"], key=camera_major_key)
    data["images"] = [images[ann["image_id"]] for ann in data["annotations"]]
    path.write_text(json.dumps(data))
    return root, [f"test/{images[ann['image_id']]['file_name']}" for ann in data["annotations"]]


def _keys(root, order: str, skip: int) -> list[str]:
    dataset = InterHandDataset(DataConfig(root=str(root), subject=SUBJECT, mode="image", background="black",
                                          skip=skip, order=order))
    return [str(k) for k in dataset.cache.keys]


@pytest.mark.parametrize("skip", [2, 3])
def test_published_order_takes_every_kth_frame_in_annotation_order(camera_major, skip):
    root, annotation_keys = camera_major
    usable = set(_keys(root, "sorted", 1))
    frame = {key: int(key.rsplit("image", 1)[1].split(".")[0]) for key in usable}
    camera = {key: key.split("/cam")[1].split("/")[0] for key in usable}
    # the references, from data.json itself: its annotation order, and (frame, camera) order
    published = [key for key in annotation_keys if key in usable][::skip]
    by_frame = sorted(usable, key=lambda key: (frame[key], camera[key]))[::skip]
    assert len(usable) == 10 and published != by_frame  # the fixture tells the two apart
    assert _keys(root, "published", skip) == published
    assert _keys(root, "sorted", skip) == by_frame


def test_eval_order_setting_reaches_the_evaluation_frames(camera_major):
    root, _ = camera_major
    chosen = {}
    for order in ("published", "sorted"):
        config = load_config(AvatarConfig, [DEFAULTS], [f"data.root={root}", f"data.eval_subject={SUBJECT}",
                                                        "data.eval_skip=3", f"data.eval_order={order}",
                                                        "smpl_cfg.model_path=open_hand"])
        chosen[order] = [str(k) for k in evaluation_dataset(config).cache.keys]
        assert chosen[order] == _keys(root, order, 3)
    assert chosen["published"] != chosen["sorted"]


def test_the_demo_capture_lists_frames_in_order(synthetic_capture, tmp_path):
    """The synthetic captures (the demo's) write data.json frame by frame, so both orders choose the same frames and
    the demo's figures do not depend on data.eval_order."""
    root = tmp_path / "capture"
    shutil.copytree(synthetic_capture, root)
    for skip in (1, 2, 3):
        assert _keys(root, "published", skip) == _keys(root, "sorted", skip)


def test_unknown_order_is_named(camera_major):
    with pytest.raises(ValueError, match="frame order 'random'"):
        _keys(camera_major[0], "random", 1)
