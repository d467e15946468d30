"""The experiment's video section (issue 26) on a small prepared experiment, not a whole run: a patient with a
real-face expression video (its container tagged with the patient's name) is prepared without the tag,
generated through the video workflow on the real host with the tiny models (the one generate entry), skipped
when nothing changed, then scored: a generated video equal to the patient's gives r = 1 and no private
frame in videos.csv's row and in report.md / report.html's video section, which name nobody."""
import os
import shutil

import pytest
from cli_helpers import experiment_cli
from host import TINY_CHECKPOINT, TINY_CONTROLNET
from real_faces import photo_paths
from runner_helpers import make_video_patients

from palsysim.base.photos import read_image, write_image
from palsysim.base.video_files import read_video
from palsysim.experiment import config, report, stages, videos

NAME = "zq_patient_gamma"  # the patient's folder and the video's tag: must reach no output
FRAMES = 12
FAST = {'run = ["zero_shot", "full", "partial", "partial_codc", "freeze", "lora"]': 'run = ["zero_shot"]',
        "windows = [[0, 200], [800, 999], [0, 999], [500, 700]]": "windows = []",
        "steps = 20": "steps = 1", "resolution = 512": "resolution = 64", 'identities = ["man", "woman"]':
        'identities = ["man"]', 'methods = ["partial_codc"]': 'methods = ["zero_shot"]'}


@pytest.fixture(scope="module")
def experiment(module_tmp):
    """EXP with one patient (rest photo, grin video), a donor; run zero_shot, videos with zero_shot. The model
    paths are stand-ins: the generation test points them at the host's tiny models."""
    root = module_tmp("expvideo")
    make_video_patients(root / "patients", ["grin"], NAME, frames=FRAMES, patient=NAME)
    rest = read_video(str(root / "patients" / NAME / "grin.mp4"))[0][0]
    write_image(str(root / "patients" / NAME / "rest.png"), rest)
    write_image(str(root / "donors" / "donor.png"), read_image(photo_paths()["astronaut"]))
    for name in ("ckpt.safetensors", "canny.safetensors"):
        (root / name).write_bytes(b"stand-in")
    exp_dir = str(root / "exp")
    path = config.write_template(exp_dir, str(root / "patients"), str(root / "donors" / "donor.png"),
                                 str(root / "ckpt.safetensors"), str(root / "canny.safetensors"))
    text = open(path, encoding="utf-8").read()
    for old, new in FAST.items():
        text = text.replace(old, new)
    open(path, "w", encoding="utf-8").write(text)
    return exp_dir


def prepared(exp_dir):
    exp = config.load(exp_dir)
    assert exp.problems == [] and exp.video_runs() == {"video_zero_shot": ("palsy_video", None, "pf")}
    state, found = stages.State(exp.root), stages.patients(exp)
    clips = videos.patient_videos(exp, found)
    assert list(clips) == ["patient_1"] and list(clips["patient_1"]) == ["grin"]
    videos.prepare(exp, state, clips, stages.Progress(1, quiet=True))
    return exp, state, found, clips


def test_the_video_runs_generate_once_through_the_video_workflow(experiment, host):
    exp, state, found, clips = prepared(experiment)
    copy = exp.path("prepared", "photos", "patient_1", "grin.mp4")
    assert len(read_video(copy)[0]) == FRAMES and NAME.encode() not in open(copy, "rb").read()
    exp.checkpoint = host.model_path("checkpoints", TINY_CHECKPOINT)
    exp.controlnet = host.model_path("controlnet", TINY_CONTROLNET)
    videos.generate(exp, state, found, clips, stages.Progress(1, quiet=True), servers=[host.url])
    (made,) = videos.generated(exp, "video_zero_shot")
    assert os.path.relpath(made, exp.path("generated")) == os.path.join("video_zero_shot", "patient_1", "grin",
                                                                        "man_1.mp4")
    frames, _ = read_video(made)
    assert len(frames) == FRAMES and frames[0].shape == (64, 64, 3)
    before = os.stat(made).st_mtime_ns
    videos.generate(exp, stages.State(exp.root), found, clips, stages.Progress(1, quiet=True),
                    servers=["http://127.0.0.1:9"])
    assert os.stat(made).st_mtime_ns == before  # unchanged inputs: skipped, no server asked


def test_the_report_gives_a_video_section_from_the_scores(experiment):
    exp, state, found, clips = prepared(experiment)
    # a generator that gave the patient's own video back: the dynamics kept exactly, and not private
    target = exp.path("generated", "video_zero_shot", "patient_1", "grin")
    shutil.rmtree(exp.path("generated", "video_zero_shot"), ignore_errors=True)
    os.makedirs(target)
    shutil.copy(exp.path("prepared", "photos", "patient_1", "grin.mp4"), os.path.join(target, "man_1.mp4"))
    (row,) = videos.evaluate(exp, state, clips, stages.Progress(1, quiet=True))
    assert (row["run"], row["generated"], row["images"], row["unpaired"]) == ("video_zero_shot", 1, 1, 0)
    assert row["dynamics_r_mean"] == pytest.approx(1.0) and row["dynamics_lag_mean"] == 0
    assert row["flicker_mean"] == pytest.approx(row["flicker_patient_mean"]) and row["passed"] == 0.0
    files = report.write_report(exp, [], [], [], found, [row])
    md, page = (open(f, encoding="utf-8").read() for f in files)
    assert "## Videos: expression dynamics" in md and "| video_zero_shot | 1 | 1 | 0 | 1.000 ± 0.000 |" in md
    assert "<h2>Videos: expression dynamics" in page
    for out in (md, page, open(exp.path("evaluation", "video_zero_shot", "report.md"), encoding="utf-8").read()):
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
