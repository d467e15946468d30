"""The experiment's video section (issue 26) through `experiment run` on a small experiment (zero_shot only, 64 px,
one step): a patient with a real-face expression video (its container tagged with the patient's name) is
prepared without the tag, generated through the video workflow on the real host with the tiny models, scored
into evaluation/video_* and the report (a generated video equal to the patient's gives r = 1 and no private
frame), which name nobody; a rerun redoes only what changed. A patient folder of videos alone is refused."""
import csv
import os
import shutil

import pytest
from cli_helpers import experiment_cli
from host import TINY_CHECKPOINT, TINY_CONTROLNET
from real_faces import photo_paths
from runner_helpers import make_video_patients

from palsysim.base.photos import read_image, write_image
from palsysim.base.video_files import read_video
from palsysim.experiment import config, run, videos

NAME = "zq_patient_gamma"  # the patient's folder and the video's tag: must reach no output
FRAMES = 12
FAST = {'run = ["zero_shot", "full", "partial", "partial_codc", "freeze", "lora"]': 'run = ["zero_shot"]',
        "windows = [[0, 200], [800, 999], [0, 999], [500, 700]]": "windows = []",
        "steps = 20": "steps = 1", "resolution = 512": "resolution = 64", 'identities = ["man", "woman"]':
        'identities = ["man"]', 'methods = ["partial_codc"]': 'methods = ["zero_shot"]'}


@pytest.fixture(scope="module")
def experiment(module_tmp, host):
    """EXP with one patient (rest photo, grin video), a donor, the host's tiny models; run zero_shot, videos with
    zero_shot."""
    root = module_tmp("expvideo")
    make_video_patients(root / "patients", ["grin"], NAME, frames=FRAMES, patient=NAME)
    rest = read_video(str(root / "patients" / NAME / "grin.mp4"))[0][0]
    write_image(str(root / "patients" / NAME / "rest.png"), rest)
    write_image(str(root / "donors" / "donor.png"), read_image(photo_paths()["astronaut"]))
    exp_dir = str(root / "exp")
    path = config.write_template(exp_dir, str(root / "patients"), str(root / "donors" / "donor.png"),
                                 host.model_path("checkpoints", TINY_CHECKPOINT),
                                 host.model_path("controlnet", TINY_CONTROLNET))
    text = open(path, encoding="utf-8").read()
    for old, new in FAST.items():
        text = text.replace(old, new)
    open(path, "w", encoding="utf-8").write(text)
    return exp_dir


def csv_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_a_run_generates_and_scores_the_videos_and_reruns_only_what_changed(experiment, host):
    """`experiment run` (run()) with a [video] section, on the real host with the tiny models: the patient's
    video prepared without its tag, generated through the video workflow, paired with it in evaluation/video_*
    (the tiny models draw no face: skipped, not scored) and in the report's video section. Run again: nothing is
    redone, no server asked. Then a generator that gave the patient's own video back (swapped in): only the
    scores are redone, and they keep the dynamics exactly (r = 1) with no private frame."""
    run(experiment, servers=[host.url], quiet=True)
    exp = config.load(experiment)
    copy = exp.path("prepared", "photos", "patient_1", "grin.mp4")
    assert len(read_video(copy)[0]) == FRAMES and NAME.encode() not in open(copy, "rb").read()
    (made,) = videos.generated(exp, "video_zero_shot")
    assert os.path.relpath(made, exp.path("generated")) == os.path.join("video_zero_shot", "patient_1", "grin",
                                                                        "man_1.mp4")
    frames, _ = read_video(made)
    assert len(frames) == FRAMES and frames[0].shape == (64, 64, 3)
    scores = exp.path("evaluation", "video_zero_shot")
    (row,) = csv_rows(os.path.join(scores, "videos.csv"))
    assert (row["method"], row["videos"], row["skipped"], row["unpaired"]) == ("video_zero_shot", "0", "1", "0")
    assert "| video_zero_shot | 1 | 0 | 1 | n/a |" in open(exp.path("report.md"), encoding="utf-8").read()

    written = {p: os.stat(p).st_mtime_ns for p in (made, os.path.join(scores, "videos.csv"))}
    run(experiment, servers=["http://127.0.0.1:9"], quiet=True)
    assert {p: os.stat(p).st_mtime_ns for p in written} == written  # unchanged inputs: skipped

    shutil.copy(copy, made)
    files = run(experiment, servers=["http://127.0.0.1:9"], quiet=True)
    (row,) = csv_rows(os.path.join(scores, "videos.csv"))
    assert (row["videos"], row["skipped"], row["pass_rate"]) == ("1", "0", "0.000000")
    assert float(row["dynamics_r_mean"]) == pytest.approx(1.0) and float(row["dynamics_lag_mean"]) == 0
    assert float(row["flicker_mean"]) == pytest.approx(float(row["flicker_patient_mean"]))
    (record,) = csv_rows(os.path.join(scores, "video_records.csv"))
    assert record["passed"] == "0" and float(record["dynamics_r"]) == pytest.approx(1.0)
    md, page = (open(f, encoding="utf-8").read() for f in files)
    assert "## Videos: expression dynamics" in md and "| video_zero_shot | 1 | 1 | 0 | 1.000 ± 0.000 |" in md
    assert "<h2>Videos: expression dynamics" in page
    for out in (md, page, *(open(os.path.join(scores, f), encoding="utf-8").read() for f in os.listdir(scores))):
        assert NAME not in out


def test_a_patient_folder_of_videos_only_is_refused_up_front(experiment, tmp_path):
    """The patients are numbered by their photos, which training and the image methods use and CODC's rest
    comes from; a folder of videos alone would be left out of the video comparison without a word."""
    exp = config.load(experiment)
    patients = tmp_path / "patients"
    shutil.copytree(exp.patients, patients)
    (patients / "zq_patient_delta").mkdir()
    shutil.copy(patients / NAME / "grin.mp4", patients / "zq_patient_delta" / "grin.mp4")
    exp_dir = tmp_path / "exp"
    exp_dir.mkdir()
    with open(os.path.join(experiment, "experiment.toml"), encoding="utf-8") as f:
        text = f.read().replace(f'patients = "{exp.patients}"', f'patients = "{patients}"')
    (exp_dir / "experiment.toml").write_text(text, encoding="utf-8")
    r = experiment_cli("run", str(exp_dir), "--quiet")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert (f"[data] patients: {patients / 'zq_patient_delta'} holds videos but no photo" in r.stderr
            and f"add its photos (at least {patients / 'zq_patient_delta' / 'rest.png'})" in r.stderr), r.stderr
    assert sorted(os.listdir(exp_dir)) == ["experiment.toml"]  # refused before any stage
