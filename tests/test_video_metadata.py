"""The focal length a source states (segment.video.metadata): EXIF of photos, the QuickTime key of iPhone videos,
read from files written here, and its use by the intrinsics."""

import math
import struct

import cv2
import numpy as np
import pytest
from PIL import Image

from segment.video.frames import PHONE_FOV_DEG, extract_frames, focal_px_from_35mm, intrinsics
from segment.video.metadata import QUICKTIME_FOCAL_KEY, focal_35mm


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _keyed_meta(items: list[tuple[str, int, bytes]], *, iso: bool = False) -> bytes:
    """A QuickTime moov/meta box with keyed items (name, data type, value bytes)."""
    keys = struct.pack(">II", 0, len(items)) + b"".join(
        struct.pack(">I", 8 + len(name.encode())) + b"mdta" + name.encode() for name, _, _ in items)
    ilst = b"".join(_box(struct.pack(">I", k + 1), _box(b"data", struct.pack(">II", kind, 0) + value))
                    for k, (_, kind, value) in enumerate(items))
    payload = _box(b"hdlr", bytes(8) + b"mdta" + bytes(13)) + _box(b"keys", keys) + _box(b"ilst", ilst)
    return _box(b"meta", (bytes(4) if iso else b"") + payload)


def _with_moov_meta(video, meta: bytes) -> None:
    """Append `meta` to the file's moov box, which must be its last box (so no sample offset moves)."""
    data = bytearray(video.read_bytes())
    pos, last = 0, None
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        last = (pos, size, kind)
        pos += size
    assert last[2] == b"moov" and last[0] + last[1] == len(data), "the writer did not put moov last"
    data[last[0]:last[0] + 4] = struct.pack(">I", last[1] + len(meta))
    video.write_bytes(bytes(data) + meta)


def _video(path, count=3, size=(64, 48)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, size)
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MP4")
    for k in range(count):
        writer.write(np.full((size[1], size[0], 3), 40 * k, np.uint8))
    writer.release()


def test_focal_px_of_a_35mm_equivalent_is_the_focal_across_the_film_diagonal():
    assert focal_px_from_35mm(26, 3600, 2400) == pytest.approx(2600)  # 100 px per mm of a 36 x 24 frame
    # a 4:3 phone frame at 26 mm: about 67 degrees across the longer side, near the default 69
    focal = focal_px_from_35mm(26, 4000, 3000)
    assert math.degrees(2 * math.atan(2000 / focal)) == pytest.approx(67.3, abs=0.1)


def test_exif_focal_of_the_first_photo_that_states_one(tmp_path):
    Image.new("RGB", (32, 24)).save(tmp_path / "frame1.jpg")  # no EXIF
    (tmp_path / "frame2.jpg").write_bytes(b"not an image")
    assert focal_35mm(tmp_path) is None
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 26
    Image.new("RGB", (32, 24)).save(tmp_path / "frame10.jpg", exif=exif)  # after frame2 in frame order
    assert focal_35mm(tmp_path) == (26.0, "EXIF FocalLengthIn35mmFilm of frame10.jpg")
    focal, _, note = intrinsics(32, 24, stated=focal_35mm(tmp_path))
    assert focal == pytest.approx(26 / math.hypot(36, 24) * math.hypot(32, 24)) and "26 mm equivalent" in note
    assert intrinsics(32, 24, fov_deg=60, stated=(26.0, "x"))[0] == pytest.approx(16 / math.tan(math.radians(30)))


@pytest.mark.parametrize("kind, value, expected", [(21, bytes([28]), 28.0), (22, struct.pack(">H", 77), 77.0),
                                                   (23, struct.pack(">f", 13.5), 13.5), (1, b"52", 52.0)])
def test_quicktime_focal_of_an_iphone_style_video(tmp_path, kind, value, expected):
    video = tmp_path / "clip.mp4"
    _video(video)
    assert focal_35mm(video) is None  # OpenCV writes no focal length
    _with_moov_meta(video, _keyed_meta([("com.apple.quicktime.make", 1, b"Apple"), (QUICKTIME_FOCAL_KEY, kind, value)],
                                       iso=kind == 1))
    assert focal_35mm(video) == (expected, f"the video's QuickTime key {QUICKTIME_FOCAL_KEY}")
    frames, scale, _ = extract_frames(video, tmp_path / "frames", progress=False)
    assert len(frames) == 3 and scale == 1.0  # the video still plays
    focal, _, note = intrinsics(64, 48, stated=focal_35mm(video))
    assert focal == pytest.approx(focal_px_from_35mm(expected, 64, 48)) and "QuickTime" in note


def test_no_stated_focal_falls_back_to_the_phone_default(tmp_path):
    video = tmp_path / "clip.mp4"
    _video(video)
    _with_moov_meta(video, _keyed_meta([("com.apple.quicktime.make", 1, b"Apple")]))
    assert focal_35mm(video) is None
    (tmp_path / "broken.mov").write_bytes(struct.pack(">I4s", 4, b"moov") + b"\0" * 12)  # a box shorter than its header
    assert focal_35mm(tmp_path / "broken.mov") is None
    focal, _, note = intrinsics(64, 48, stated=None)
    assert focal == pytest.approx(32 / math.tan(math.radians(PHONE_FOV_DEG / 2))) and "states no focal" in note
