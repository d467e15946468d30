"""Core landmarks, asymmetry measures and synthetic palsy on real photographs."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import skimage
from real_faces import photo_paths

from palsysim.base.errors import InputError
from palsysim.base.photos import read_image
from palsysim.face import regions as R
from palsysim.face.asymmetry import MEASURES, measure
from palsysim.face.landmarks import N_POINTS, face_landmarks
from palsysim.face.synth import synth_palsy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def photos():
    return {name: read_image(path) for name, path in photo_paths().items() if name != "tom_hanks"}


def test_478_landmarks_inside_the_face(photos):
    for name, img in photos.items():
        face = face_landmarks(img, what=name)
        assert face.points.shape == (N_POINTS, 3) and face.points.dtype == np.float32
        assert face.image_size == img.shape[:2] and face.face_index == 0 and face.faces_found == 1
        oval = face.xy[list(R.FACE_OVAL)]
        lo, hi = oval.min(0), oval.max(0)
        assert ((face.xy >= lo - 2) & (face.xy <= hi + 2)).all(), name  # every point within the face outline
        # subject's right eye is on the image's left in a frontal photo
        assert face.xy[R.PUPIL["right"], 0] < face.xy[R.PUPIL["left"], 0]


def test_both_mediapipe_apis_give_one_result_format(photos, task_file):
    img = photos["grace_hopper"]
    legacy = face_landmarks(img, backend="legacy")
    tasks = face_landmarks(img, backend="tasks", task_file=task_file)
    assert type(legacy) is type(tasks) and legacy.points.shape == tasks.points.shape
    assert legacy.points.dtype == tasks.points.dtype and legacy.image_size == tasks.image_size
    assert np.abs(legacy.xy - tasks.xy).max() < 1.0


def test_tasks_api_without_its_model_file_names_file_and_folder(photos, tmp_path):
    with pytest.raises(InputError, match=r"face_landmarker\.task.*models/mediapipe"):
        face_landmarks(photos["astronaut"], backend="tasks", task_file=str(tmp_path / "missing.task"))


def test_two_faces_largest_first_and_choosable(photos):
    small = cv2.resize(photos["astronaut"][:256, 96:352], (300, 300))
    big = photos["grace_hopper"][:512]
    pair = np.zeros((512, 812, 3), np.uint8)
    pair[:, :512], pair[106:406, 512:] = big, small
    first = face_landmarks(pair, max_faces=2)
    second = face_landmarks(pair, max_faces=2, face_index=1)
    assert first.faces_found == second.faces_found == 2
    assert first.xy[:, 0].mean() < 512 < second.xy[:, 0].mean()
    with pytest.raises(InputError, match="face_index 2"):
        face_landmarks(pair, max_faces=2, face_index=2)


def test_no_face_and_tiny_image_are_clear_errors():
    coffee = read_image(os.path.join(os.path.dirname(skimage.__file__), "data", "coffee.png"))
    with pytest.raises(InputError, match="no face found"):
        face_landmarks(coffee)
    with pytest.raises(InputError, match="16x16 pixels"):
        face_landmarks(np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(InputError, match="NaN"):
        face_landmarks(np.full((128, 128, 3), np.nan, np.float32))


def test_grayscale_and_rgba_photos_are_converted(photos):
    img = photos["grace_hopper"]
    colour = face_landmarks(img)
    grey = face_landmarks(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY))
    rgba = face_landmarks(np.dstack([img, np.full(img.shape[:2], 255, np.uint8)]))
    assert np.abs(grey.xy - colour.xy).max() < 6.0
    assert np.abs(rgba.xy - colour.xy).max() < 0.01


def test_healthy_faces_measure_nearly_symmetric_and_scale_free(photos):
    img = photos["grace_hopper"]
    m = measure(face_landmarks(img).xy)
    assert m["asymmetry"]["commissure_height"]["percent"] < 5
    assert abs(m["asymmetry"]["smile_angle"]["difference"]) < 3
    assert m["asymmetry"]["brow_height"]["percent"] < 10
    half = measure(face_landmarks(cv2.resize(img, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)).xy)
    assert half["ipd_px"] == pytest.approx(m["ipd_px"] / 2, rel=0.05)
    for k in ("brow_height", "commissure_height", "commissure_excursion"):
        assert half["left"][k] == pytest.approx(m["left"][k], abs=0.03), k


# Sign of right - left that a palsy of each side produces, per measure.
PALSY_SIGN = {"brow_height": +1, "palpebral_fissure_height": -1, "commissure_height": -1, "smile_angle": +1}


@pytest.mark.parametrize("side", ["left", "right"])
def test_synthetic_palsy_moves_its_side_growing_with_severity(photos, side):
    flip = 1 if side == "left" else -1
    for name, img in photos.items():
        face = face_landmarks(img)
        base = measure(face.xy)["asymmetry"]
        carried, detected = [], []
        for severity in (0.5, 1.0):
            warped, moved = synth_palsy(img, face, side, severity)
            carried.append(measure(moved)["asymmetry"])
            detected.append(measure(face_landmarks(warped).xy)["asymmetry"])
        # Where the warp carried the landmarks: every measure moves the known way, more with severity.
        for k, sign in PALSY_SIGN.items():
            steps = [base[k]["difference"]] + [c[k]["difference"] for c in carried]
            assert np.all(np.diff(steps) * sign * flip > 0), (name, side, k, steps)
        # MediaPipe re-detecting the warped photo sees the mouth corner drop, more with severity.
        for k in ("commissure_height", "smile_angle"):
            steps = [base[k]["difference"]] + [d[k]["difference"] for d in detected]
            assert np.all(np.diff(steps) * PALSY_SIGN[k] * flip > 0), (name, side, k, steps)


def test_synthetic_palsy_leaves_the_healthy_side_and_severity_zero_alone(photos):
    img = photos["grace_hopper"]
    face = face_landmarks(img)
    same, moved0 = synth_palsy(img, face, "left", 0.0)
    assert np.abs(same.astype(int) - img).max() <= 1 and np.abs(moved0 - face.xy).max() < 1e-3
    _, moved = synth_palsy(img, face, "left", 1.0)
    right_side = list(R.eye_region("right")) + [R.MOUTH_CORNER["right"]]
    assert np.abs(moved[right_side] - face.xy[right_side]).max() < 0.5
    with pytest.raises(InputError, match="severity"):
        synth_palsy(img, face, "left", 1.5)


def test_cli_measure_landmarks_synth(tmp_path):
    photo = photo_paths()["grace_hopper"]
    run = lambda *a: subprocess.run([sys.executable, "-m", "palsysim", *a], cwd=ROOT, capture_output=True, text=True)  # noqa: E731
    r = run("measure", photo, "--json")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # none of MediaPipe's C++ log lines (TFLite's delegate notice, absl warnings)
    m = json.loads(r.stdout)
    assert set(m["asymmetry"]) == set(MEASURES) and set(m["right"]) == set(MEASURES)
    synth = str(tmp_path / "palsy.png")
    assert run("synth", photo, "--side", "right", "--severity", "0.7", "--out", synth).returncode == 0
    palsy = measure(face_landmarks(read_image(synth)).xy)
    assert palsy["asymmetry"]["smile_angle"]["difference"] < m["asymmetry"]["smile_angle"]["difference"] - 2
    r = run("landmarks", photo, synth, "--out", str(tmp_path / "lm"))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    saved = json.load(open(tmp_path / "lm" / "palsy_landmarks.json"))
    assert len(saved["points"]) == N_POINTS and "asymmetry" in saved["measures"]
    assert read_image(str(tmp_path / "lm" / "grace_hopper_landmarks.png")).shape == read_image(photo).shape
    r = run("measure", os.path.join(os.path.dirname(skimage.__file__), "data", "coffee.png"))
    assert r.returncode == 2 and "no face found" in r.stderr
