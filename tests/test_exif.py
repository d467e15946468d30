"""EXIF orientation: a phone photo stored sideways with orientation 6 reads upright, as ComfyUI's LoadImage shows it."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from real_faces import photos

from palsysim.base.errors import InputError
from palsysim.base.photos import read_image
from palsysim.face.landmarks import face_landmarks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROTATE_90_CW = 6  # EXIF Orientation: the stored pixels must be turned 90 degrees clockwise to show


def _save(path, pixels, orientation=None, **kw):
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, exif=exif.tobytes(), **kw)


@pytest.fixture(scope="module")
def upright():
    return photos()["astronaut"]


def test_tagged_png_reads_as_the_upright_pixels(tmp_path, upright):
    _save(tmp_path / "sideways.png", np.ascontiguousarray(np.rot90(upright)), ROTATE_90_CW)
    assert np.array_equal(read_image(str(tmp_path / "sideways.png")), upright)


def test_tagged_phone_jpeg_gives_the_landmarks_of_the_upright_file(tmp_path, upright):
    _save(tmp_path / "upright.jpg", upright, quality=95)
    _save(tmp_path / "sideways.jpg", np.ascontiguousarray(np.rot90(upright)), ROTATE_90_CW, quality=95)
    sideways = np.asarray(Image.open(tmp_path / "sideways.jpg"))
    assert sideways.shape[:2] == upright.shape[1::-1]  # what an EXIF-blind reader sees
    a, b = read_image(str(tmp_path / "sideways.jpg")), read_image(str(tmp_path / "upright.jpg"))
    assert a.shape == b.shape == upright.shape
    err = np.linalg.norm(face_landmarks(a).xy - face_landmarks(b).xy, axis=1)
    assert np.median(err) < 1.5 and err.max() < 6, (np.median(err), err.max())

    # the CLI reads through the same reader
    out = tmp_path / "lm"
    env = {**os.environ, "PYTHONPATH": ROOT}
    for name in ("sideways", "upright"):
        r = subprocess.run([sys.executable, "-m", "palsysim", "landmarks", str(tmp_path / f"{name}.jpg"), "--out",
                            str(out)], capture_output=True, text=True, env=env, cwd=ROOT)
        assert r.returncode == 0, r.stderr
    pts = {n: np.array(json.load(open(out / f"{n}_landmarks.json"))["points"])[:, :2] for n in ("sideways", "upright")}
    assert np.median(np.linalg.norm(pts["sideways"] - pts["upright"], axis=1)) < 1.5


def test_unreadable_files_name_the_file(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match="broken.jpg is not a readable image"):
        read_image(str(tmp_path / "broken.jpg"))
    with pytest.raises(InputError, match="no such image file"):
        read_image(str(tmp_path / "missing.png"))
