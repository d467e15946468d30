"""`python -m palsysim evaluate` on a folder tree of real photographs."""
import csv
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from real_faces import photos
from tiny_arcface import write_tiny_arcface

from palsysim.base.errors import InputError
from palsysim.base.photos import write_image
from palsysim.face.landmarks import face_landmarks
from palsysim.face.synth import synth_palsy
from palsysim.identity import dlib_face as identity_dlib
from palsysim.measure import evaluate as ev
from palsysim.measure import image_report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATIENT_NAMES = ("Jane_Roe_MRN4471", "John_Doe_MRN9923")  # stand-ins for real names: must not leak


@pytest.fixture(scope="module")
def tree(module_tmp):
    """patients/<two people>, generated/<three methods>/<patient>/..., as a real run would lay them out.

    copy: the patient's own photo (a total privacy failure); other_person: someone else's photo;
    palsied_other: someone else with a synthetic palsy, plus a photo with no face (skipped).
    """
    root = module_tmp("eval")
    f = photos()
    people = {PATIENT_NAMES[0]: f["astronaut"], PATIENT_NAMES[1]: f["grace_hopper"]}
    stand_in = {PATIENT_NAMES[0]: f["grace_hopper"], PATIENT_NAMES[1]: f["astronaut"]}
    for name, im in people.items():
        palsy, _ = synth_palsy(im, face_landmarks(im), "left", 0.6)
        write_image(str(root / "patients" / name / "rest.png"), palsy)
        write_image(str(root / "generated" / "copy" / name / "rest.png"), palsy)
        write_image(str(root / "generated" / "other_person" / name / "rest.png"), stand_in[name])
        other = stand_in[name]
        write_image(str(root / "generated" / "palsied_other" / f"{name}_1.png"),
                    synth_palsy(other, face_landmarks(other), "left", 0.6)[0])
    write_image(str(root / "generated" / "palsied_other" / PATIENT_NAMES[0] / "blank.png"),
                np.full((256, 256, 3), 180, np.uint8))
    model = write_tiny_arcface(str(root / "models" / "tiny_arcface.onnx"))
    return root, model


def test_evaluate_writes_report_csv_and_chart_one_row_per_method(tree):
    root, model = tree
    out = root / "out"
    proc = subprocess.run([sys.executable, "-m", "palsysim", "evaluate", "--generated", str(root / "generated"),
                           "--patients", str(root / "patients"), "--arcface", model, "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(os.listdir(out)) == ["metrics.csv", "report.md", "report.png"]

    with open(out / "metrics.csv", newline="") as fh:
        rows = {r["method"]: r for r in csv.DictReader(fh)}
    assert list(rows) == ["copy", "other_person", "palsied_other"]
    assert set(rows["copy"]) == set(image_report.COLUMNS)
    copy, other, palsied = rows["copy"], rows["other_person"], rows["palsied_other"]
    assert (int(copy["images"]), int(copy["patients"]), int(copy["skipped"])) == (2, 2, 0)
    assert (int(palsied["images"]), int(palsied["skipped"])) == (2, 1)  # the blank image has no face
    assert float(copy["arcface_mean"]) == pytest.approx(1.0, abs=1e-4)
    assert float(copy["arcface_std"]) == pytest.approx(0.0, abs=1e-4)
    assert float(other["arcface_mean"]) < 0.999
    assert float(copy["fidelity_mean"]) == pytest.approx(1.0)  # same picture, same asymmetry
    assert float(other["fidelity_mean"]) < 1.0
    assert float(copy["pass_rate"]) == 0.0
    assert copy["lpips_mean"] == ""  # not asked for
    for r in rows.values():  # the tiny model's raw q sits far below 0.88: calibrated near 0
        assert 0.0 < float(r["serfiq_raw_mean"]) <= 1.0 and 0.0 <= float(r["serfiq_mean"]) <= 1.0
    # <patient>_1.png names no expression: unpaired, its paired columns empty, never filled from another photo
    assert int(palsied["unpaired"]) == 2 and palsied["fidelity_mean"] == "" and palsied["arcface_mean"] == ""
    assert float(palsied["arcface_max_mean"]) < 0.999

    report = (out / "report.md").read_text()
    assert "| copy | 2 |" in report and "patient 1" in report and "patient 2" in report
    assert "| palsied_other | patient 1, no expression, image 2 | unpaired" in report
    assert "| palsied_other | patient 1, blank, image 1 | no face found |" in report
    for secret in PATIENT_NAMES + ("MRN", str(root)):
        assert secret not in report and secret not in (out / "metrics.csv").read_text()
    png_bytes = (out / "report.png").read_bytes()
    assert not any(s.encode() in png_bytes for s in PATIENT_NAMES + (str(root),))
    chart = cv2.imread(str(out / "report.png"))
    assert chart is not None and chart.shape[0] > 300 and chart.std() > 10  # a drawn chart, not blank


def test_threshold_decides_the_pass_rate(tree):
    root, model = tree
    low = ev.evaluate(str(root / "generated"), str(root / "patients"), model, str(root / "o1"),
                      threshold=1.01, serfiq_passes=4)
    assert {r["method"]: r["pass_rate"] for r in low["rows"]} == {
        "copy": 1.0, "other_person": 1.0, "palsied_other": 1.0}
    none = ev.evaluate(str(root / "generated"), str(root / "patients"), model, str(root / "o2"),
                       threshold=-1.0, serfiq_passes=4)
    assert all(r["pass_rate"] == 0.0 for r in none["rows"])


def test_lpips_columns_filled_when_weights_given_and_a_clear_error_when_missing(tree, tmp_path):
    import torchvision
    root, model = tree
    with pytest.raises(InputError, match="alexnet-owt-7be5be79.pth"):
        ev.evaluate(str(root / "generated"), str(root / "patients"), model, str(tmp_path / "x"), lpips=True,
                    lpips_weights=str(tmp_path / "alexnet-owt-7be5be79.pth"))
    assert not os.path.exists(tmp_path / "x")  # failed before writing anything
    torch.manual_seed(0)
    weights = str(tmp_path / "alexnet-owt-7be5be79.pth")
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), weights)
    res = ev.evaluate(str(root / "generated"), str(root / "patients"), model, str(tmp_path / "y"), lpips=True,
                      lpips_weights=weights, serfiq_passes=4)
    rows = {r["method"]: r for r in res["rows"]}
    assert rows["copy"]["lpips_mean"] == pytest.approx(0.0, abs=1e-6)
    assert rows["other_person"]["lpips_mean"] > 0.0


def test_bad_folders_get_messages(tree, tmp_path):
    root, model = tree
    with pytest.raises(InputError, match="is not a folder"):
        ev.evaluate(str(tmp_path / "none"), str(root / "patients"), model, str(tmp_path / "o"))
    (tmp_path / "empty" / "method").mkdir(parents=True)
    with pytest.raises(InputError, match="no images or videos that match a patient.*<expression>"):
        ev.evaluate(str(tmp_path / "empty"), str(root / "patients"), model, str(tmp_path / "o"))


needs_dlib = pytest.mark.skipif(identity_dlib.unavailable() is not None, reason=str(identity_dlib.unavailable()))


@needs_dlib
def test_runner_layout_both_backends_paired_to_the_source_expression(tmp_path):
    """PATIENTS/<patient>/<expression>.png and METHOD=OUT trees as the runner writes them; every paired
    column compares with the photo of the same expression; a face dlib cannot find is listed, not a crash."""
    import torchvision
    f = photos()
    astro, grace = f["astronaut"], f["grace_hopper"]
    rest = synth_palsy(astro, face_landmarks(astro), "left", 0.6)[0]
    rotated = cv2.warpAffine(grace, cv2.getRotationMatrix2D((256, 300), 50, 1.0), (512, 600),
                             borderMode=cv2.BORDER_REPLICATE)  # MediaPipe finds it, dlib's detector does not
    pats, copy_out, other_out = tmp_path / "PATIENTS", tmp_path / "OUT_copy", tmp_path / "OUT_other"
    write_image(str(pats / PATIENT_NAMES[0] / "rest.png"), rest)
    write_image(str(pats / PATIENT_NAMES[0] / "grin.png"), astro)
    write_image(str(pats / PATIENT_NAMES[1] / "rest.png"), grace)
    write_image(str(copy_out / PATIENT_NAMES[0] / "rest" / "a_man_1.png"), rest)
    write_image(str(copy_out / PATIENT_NAMES[0] / "grin" / "a_man_1.png"), astro)
    write_image(str(copy_out / PATIENT_NAMES[0] / "whistle" / "a_man_1.png"), astro)  # no whistle photo
    write_image(str(other_out / PATIENT_NAMES[0] / "rest" / "a_woman_1.png"), grace)
    write_image(str(other_out / PATIENT_NAMES[1] / "rest" / "a_woman_1.png"), rotated)
    (copy_out / "manifest.json").write_text("{}")  # the runner's own file beside the tree
    model = write_tiny_arcface(str(tmp_path / "tiny_arcface.onnx"))
    torch.manual_seed(0)
    weights = str(tmp_path / "alexnet-owt-7be5be79.pth")
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), weights)
    out = tmp_path / "evaluation"
    proc = subprocess.run([sys.executable, "-m", "palsysim", "evaluate", "--patients", str(pats),
                           "--generated", f"copy={copy_out}", "--generated", f"other={other_out}",
                           "--arcface", model, "--backend", "both", "--threshold", "1.01", "--lpips",
                           "--lpips-weights", weights, "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "metrics.csv", newline="") as fh:
        rows = {r["method"]: r for r in csv.DictReader(fh)}
    copy, other = rows["copy"], rows["other"]
    assert (int(copy["images"]), int(copy["unpaired"]), int(copy["skipped"])) == (3, 1, 0)
    # paired with its own expression's photo: identical pixels everywhere (rest with rest, grin with grin)
    assert float(copy["lpips_mean"]) == pytest.approx(0.0, abs=1e-6) and float(copy["lpips_std"]) < 1e-6
    assert float(copy["dlib_mean"]) == pytest.approx(0.0, abs=1e-6)
    assert float(copy["arcface_mean"]) == pytest.approx(1.0, abs=1e-4)
    assert float(copy["pass_rate"]) == 0.0  # dlib: the patient herself
    assert (int(other["images"]), int(other["skipped"])) == (1, 1)
    assert float(other["dlib_mean"]) > 0.6 and float(other["dlib_min_mean"]) > 0.6
    assert float(other["pass_rate"]) == 1.0 and float(other["lpips_mean"]) > 0.0
    report = (out / "report.md").read_text()
    assert "| copy | patient 1, whistle, image 3 | unpaired" in report
    assert "| other | patient 2, rest, image 1 | no face found by dlib |" in report
    assert "dlib distance (paired)" in report and "ArcFace max over photos" in report
    for secret in PATIENT_NAMES + (str(tmp_path),):
        assert secret not in report and secret not in (out / "metrics.csv").read_text()
