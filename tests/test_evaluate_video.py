"""`python -m palsysim evaluate` on generated videos against the patients' expression videos (issue 26): the
real-face grin with a left palsy as the patient's video; a copy of it (r = 1, lag 0, the patient's own
flicker, a frame the recognizer takes for the patient), the same grin two frames late (lag 2), a video of
an expression the patient has no video of (unpaired), all read back from videos.csv, video_records.csv and
report.md; a video that does not decode, generated or the patient's, is refused with its message before any
work; each video is decoded to frames once."""
import csv
import json
import os
import shutil

import pytest
from cli_helpers import palsysim_cli
from real_faces import photo_paths, write_expression_video

from palsysim.base.errors import InputError
from palsysim.base.video_files import read_video, write_video
from palsysim.measure import evaluate as ev
from palsysim.measure.metrics import keys

PATIENT = "Jane_Roe_MRN4471"  # a stand-in for a real name: must not leak
FRAMES, FPS, LATE = 24, 12.0, 2


@pytest.fixture(scope="module")
def tree(module_tmp):
    root = module_tmp("evalvideo")
    patient = root / "patients" / PATIENT
    patient.mkdir(parents=True)
    source = write_expression_video(patient / "grin.mp4", frames=FRAMES, width=360, fps=FPS)
    frames, fps = read_video(source)
    gen = root / "generated"
    for method in ("copy", "late"):
        (gen / method / PATIENT / "grin").mkdir(parents=True)
    shutil.copy(source, gen / "copy" / PATIENT / "grin" / "a_man_1.mp4")
    write_video(str(gen / "late" / PATIENT / "grin" / "a_man_1.mp4"), [frames[0]] * LATE + frames[:-LATE], fps)
    (gen / "late" / PATIENT / "whistle").mkdir()
    write_video(str(gen / "late" / PATIENT / "whistle" / "a_man_1.mp4"), frames, fps)  # no patient video of it
    return root


def _rows(path, key):
    with open(path, newline="") as fh:
        return {r[key]: r for r in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def evaluated(tree):
    out = tree / "out"
    r = palsysim_cli("evaluate", "--generated", str(tree / "generated"), "--patients",
                     str(tree / "patients"), "--backend", "dlib", "--out", str(out), counts=tree / "counts.json")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "copy: 1 videos, dynamics r 1.000, pass rate 0.0%" in r.stdout, r.stdout
    return out


def test_a_copy_keeps_the_dynamics_and_a_late_one_shows_its_lag(evaluated):
    assert sorted(os.listdir(evaluated)) == ["report.md", "video_records.csv", "videos.csv"]
    rows = _rows(evaluated / "videos.csv", "method")
    assert set(rows["copy"]) >= {f"{k}_mean" for k in keys("video")}
    copy, late = rows["copy"], rows["late"]
    assert (copy["videos"], copy["skipped"], copy["unpaired"]) == ("1", "0", "0")
    assert (late["videos"], late["unpaired"]) == ("2", "1")
    assert float(copy["dynamics_r_mean"]) == pytest.approx(1.0)
    assert float(copy["dynamics_lag_mean"]) == 0 and float(copy["peak_kept_mean"]) == pytest.approx(1.0)
    assert float(late["dynamics_r_mean"]) < 0.99
    # the same video, so the same flicker as the patient's own; the frames are the patient's: not private
    assert float(copy["flicker_mean"]) == pytest.approx(float(copy["flicker_patient_mean"]))
    assert float(copy["dlib_worst_mean"]) < 0.1 and float(copy["pass_rate"]) == 0.0
    assert 0 <= float(copy["dlib_spread_mean"]) < 0.2
    per_video = list(csv.DictReader(open(evaluated / "video_records.csv", newline="")))
    assert [(r["method"], r["video"]) for r in per_video] == [("copy", "patient 1, grin, video 1"),
                                                              ("late", "patient 1, grin, video 1"),
                                                              ("late", "patient 1, whistle, video 2")]
    assert per_video[2]["dynamics_r"] == "" and per_video[2]["dlib_worst"] != ""  # unpaired: identity only


def test_the_report_gives_each_measure_its_curve_and_names_nobody(evaluated):
    report = (evaluated / "report.md").read_text()
    assert "## Videos" in report and "| copy | 1 |" in report
    per_measure = report.split("### Expression dynamics per asymmetry measure")[1].split("###")[0]
    lags = sorted(float(line.split("|")[4]) for line in per_measure.splitlines() if line.startswith("| late |"))
    assert len(lags) == 5 and lags[2] == LATE, lags  # each curve runs two frames behind (the median over measures)
    assert "patient has no video of whistle" in report
    for out in os.listdir(evaluated):
        assert PATIENT not in (evaluated / out).read_text() and "MRN" not in (evaluated / out).read_text()


def test_each_video_is_checked_up_front_and_decoded_to_frames_once(tree, evaluated):
    """The generated videos and the patient's are checked before any work (keeping no frame: there may be many, each up to
    MAX_FRAMES long), then each video, the patient's too, is decoded to frames once (support/count_reads.py)."""
    counts = json.loads((tree / "counts.json").read_text())
    generated = sorted(str(p) for p in (tree / "generated").rglob("*.mp4"))
    videos = generated + [str(tree / "patients" / PATIENT / "grin.mp4")]
    assert {p: counts["video_decoded"].get(p, 0) for p in videos} == {p: 1 for p in videos}, counts["video_decoded"]
    assert {p: counts["video_checked"].get(p, 0) for p in videos} == {p: 1 for p in videos}, counts


def test_a_video_that_does_not_decode_is_refused_with_its_message(tree, tmp_path):
    gen = tmp_path / "generated" / "broken" / PATIENT / "grin"
    gen.mkdir(parents=True)
    (gen / "a_man_1.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    with pytest.raises(InputError, match=r"(?s)1 video\(s\) cannot be read.*not a readable video"):
        ev.evaluate(str(tmp_path / "generated"), str(tree / "patients"), None, str(tmp_path / "out"), backend="dlib")


def test_a_cut_patient_video_is_refused_before_any_photo_is_read(tree, tmp_path):
    """The patient's own video, beside their photo, is checked with the generated ones: refused before the
    photo is read or a video decoded to frames, not after the photos were scored."""
    patient = tmp_path / "patients" / PATIENT
    patient.mkdir(parents=True)
    whole = (tree / "patients" / PATIENT / "grin.mp4").read_bytes()
    (patient / "grin.mp4").write_bytes(whole[:len(whole) // 2])  # cut short, as by a failed copy
    photo = patient / "rest.png"
    shutil.copy(photo_paths()["grace_hopper"], photo)
    r = palsysim_cli("evaluate", "--generated", str(tree / "generated"), "--patients", str(tmp_path / "patients"),
                     "--backend", "dlib", "--out", str(tmp_path / "out"), counts=tmp_path / "counts.json")
    assert r.returncode != 0 and "1 video(s) cannot be read: move them away or replace them" in r.stderr, r.stderr
    assert str(patient / "grin.mp4") in r.stderr
    counts = json.loads((tmp_path / "counts.json").read_text())
    assert counts["decoded"].get(str(photo), 0) == 0 and not counts["video_decoded"], counts
    assert not (tmp_path / "out").exists()
