"""The experiment pipeline end to end on tiny models: every method and window, figures, report, resume after SIGKILL."""
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time

import cv2
import pytest
from cli_helpers import experiment_cli as cli
from real_faces import photo_paths
from runner_helpers import pngs
from tiny_models import write_tiny_checkpoint, write_tiny_controlnet

from palsysim.base.photos import read_image, write_image
from palsysim.comfy.plan import content_name, photo_png
from palsysim.face.landmarks import face_landmarks
from palsysim.face.synth import synth_expression, synth_palsy

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATIENT_NAMES = ("zq_patient_alpha", "zq_patient_beta")  # must never appear in any output
# Training keeps the paper's two epochs at batch 4 (6 photos: 3 steps); generation starts from each item's first 2.
FAST = {"[train]": {"resolution = 512": "resolution = 64", "checkpoint_every = 100": "checkpoint_every = 1"},
        "[generate]": {"photos = 0": "photos = 2", 'identities = ["man", "woman"]': 'identities = ["man"]',
                       "steps = 20": "steps = 2", "resolution = 512": "resolution = 64"},
        "[ablation]": {"windows = [[0, 200], [800, 999], [0, 999], [500, 700]]": "windows = [[0, 200], [500, 700]]"}}


def make_inputs(root):
    """Two patients (a real photo, a synthetic palsy of another) x rest and grin, the first with three grin
    photos in a grin/ folder (the paper's many frames per expression), two donors, tiny SD1.5 files."""
    faces = {k: read_image(p) for k, p in photo_paths().items()}
    for name, photo in zip(PATIENT_NAMES, ("grace_hopper", "astronaut")):
        image = faces[photo]
        face = face_landmarks(image)
        rest = synth_palsy(image, face, "left", 0.6)[0] if name.endswith("beta") else image
        write_image(os.path.join(root, "patients", name, "rest.png"), rest)
        if name.endswith("beta"):
            write_image(os.path.join(root, "patients", name, "grin.jpg"), synth_expression(image, face, "grin")[0])
            continue
        for k, severity in enumerate((0.4, 0.6, 0.8), 1):  # file names carrying the patient's: none may reach an output
            write_image(os.path.join(root, "patients", name, "grin", f"{name}_grin_{k}.jpg"),
                        synth_expression(image, face, "grin", severity=severity)[0])
    donor = faces["astronaut"][:, ::-1]
    write_image(os.path.join(root, "donors", "donor.png"), donor)
    # a second person, so that patient_2 gets a donor of their own (patient k: donor k mod n)
    hanks = cv2.copyMakeBorder(cv2.resize(faces["tom_hanks"], (448, 448), interpolation=cv2.INTER_CUBIC),
                               56, 56, 56, 56, cv2.BORDER_REPLICATE)
    write_image(os.path.join(root, "donors", "donor_2.png"), hanks)
    write_tiny_checkpoint(os.path.join(root, "sd", "tiny_sd15.safetensors"))
    write_tiny_controlnet(os.path.join(root, "sd", "tiny_canny.safetensors"))


def init(root, exp):
    r = cli("init", exp, "--patients", os.path.join(root, "patients"), "--donors", os.path.join(root, "donors"),
            "--checkpoint", os.path.join(root, "sd", "tiny_sd15.safetensors"),
            "--controlnet", os.path.join(root, "sd", "tiny_canny.safetensors"))
    assert r.returncode == 0, r.stderr
    assert ": check the settings, then" in r.stdout and "fill in" not in r.stdout  # every path was given
    path = os.path.join(exp, "experiment.toml")
    text, section = [], None
    for line in open(path, encoding="utf-8").read().splitlines():
        section = line if line.startswith("[") else section
        for old, new in FAST.get(section, {}).items():
            line = line.replace(old, new) if line.startswith(old) else line
        text.append(line)
    open(path, "w", encoding="utf-8").write("\n".join(text) + "\n")


def run_killed_at(exp, marker, timeout=900):
    """Start `experiment run`, SIGKILL it once `marker()` is true; True if it was killed before finishing."""
    proc = subprocess.Popen([sys.executable, "-m", "palsysim", "experiment", "run", exp, "--quiet"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if marker():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.05)
    proc.wait()
    return False


def report_numbers(exp):
    """The report's tables without the settings block (whose paths differ between folders)."""
    text = open(os.path.join(exp, "report.md"), encoding="utf-8").read()
    return text.split("## Table II")[1]


@pytest.fixture(scope="module")
def experiments(module_tmp):
    root = str(module_tmp("experiment"))
    make_inputs(root)
    plain, broken = os.path.join(root, "plain"), os.path.join(root, "broken")
    for exp in (plain, broken):
        init(root, exp)
    # the plain run counts how often it decodes and landmarks each photo (support/count_reads.py)
    r = subprocess.run([sys.executable, os.path.join(REPO, "tests", "support", "count_reads.py"),
                        os.path.join(root, "counts.json"), "-m", "palsysim", "experiment", "run", plain, "--quiet"],
                       cwd=REPO, capture_output=True, text=True, timeout=1800, env={**os.environ, "PYTHONPATH": REPO})
    assert r.returncode == 0, r.stdout + r.stderr
    # SIGKILL once a training has saved a state, then once generation has written an image; then finish.
    training = lambda: any(f.endswith("_training") and os.path.isfile(os.path.join(d, f, "training_state.torch"))
                           for d in [os.path.join(broken, "models", "controlnet")] if os.path.isdir(d)
                           for f in os.listdir(d))
    generating = lambda: os.path.isdir(os.path.join(broken, "generated")) and any(
        f.endswith(".png") for _, _, fs in os.walk(os.path.join(broken, "generated")) for f in fs)
    killed = [run_killed_at(broken, training), run_killed_at(broken, generating)]
    r = cli("run", broken, "--quiet", timeout=1800)
    assert r.returncode == 0, r.stdout + r.stderr
    return root, plain, broken, killed


def test_every_method_and_window_has_a_row_figures_and_a_report(experiments):
    root, plain, _, _ = experiments
    text = open(os.path.join(plain, "report.md"), encoding="utf-8").read()
    for run in ("zero_shot", "full", "partial", "partial_codc", "freeze", "lora", "window_0_200", "window_500_700"):
        assert any(line.startswith(f"| {run} | 5 |") for line in text.splitlines()), run
        with open(os.path.join(plain, "evaluation", run, "row.json")) as f:
            row = json.load(f)
        # 5 source photos (patient 1: rest and the first 2 of 3 grins; patient 2: rest, grin) x 1 identity x
        # 1 seed, each scored against its own source photo or listed as faceless (tiny models sample noise:
        # the face metrics are n/a there, and finite wherever a face was found)
        assert row["generated"] == 5 and row["images"] + row["no_face"] == 5 and row["unpaired"] == 0, row
        chart = row.pop("chart")
        assert all(v is None or math.isfinite(v) for v in row.values() if not isinstance(v, (str, list))), row
        assert len(chart["x"]) == len(chart["y"]) == row["images"], chart
        assert all(math.isfinite(v) for v in chart["x"] + chart["y"] if v is not None), chart
        tree = os.path.join(plain, "generated", run)
        assert sorted(os.path.relpath(p, tree) for p in pngs(tree)) == [
            "patient_1/grin/photo1/man_1.png", "patient_1/grin/photo2/man_1.png", "patient_1/rest/man_1.png",
            "patient_2/grin/man_1.png", "patient_2/rest/man_1.png"]
    # Fig. 8's window 500..700 is partial fine-tuning itself: its images are partial's, made once
    tree = lambda run: {os.path.relpath(p, os.path.join(plain, "generated", run)): open(p, "rb").read()
                        for p in pngs(os.path.join(plain, "generated", run))}
    assert tree("window_500_700") == tree("partial")
    assert "window_500_700 is partial's images (the same net, workflow and seeds: made and scored once)" in text
    # no AlexNet or ArcFace file given: the report says which of the paper's columns are missing, and why
    assert "Not measured here: LPIPS (needs AlexNet's weights" in text and "SER-FIQ (needs the ArcFace ONNX" in text
    for name in ("fig6.png", "fig7.png", "fig8.png", "privacy_fidelity.png", "loss.png"):
        image = read_image(os.path.join(plain, "figures", name))
        assert image.std() > 5, name  # not blank
    html = open(os.path.join(plain, "report.html"), encoding="utf-8").read()
    assert html.count("data:image/png;base64,") == 5 and "http" not in html.replace("http-equiv", "")
    assert "embeds face crops of your patients" in html.split("<h1>")[0]  # said before anything else


def test_each_patient_photo_is_decoded_once_and_landmarked_once(experiments):
    """In the experiment's own process, through prepare, generation of every run and evaluation."""
    root, plain, _, _ = experiments
    counts = json.load(open(os.path.join(root, "counts.json")))
    sources = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(root, "patients")) for f in fs]
    prepared = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(plain, "prepared", "photos")) for f in fs]
    assert len(sources) == len(prepared) == 6
    assert {p: counts["decoded"].get(p, 0) for p in sources} == {p: 1 for p in sources}, counts["decoded"]
    assert not any(counts["decoded"].get(p) for p in prepared), counts["decoded"]  # the copies: never decoded
    pixels = [hashlib.sha1(read_image(p).tobytes()).hexdigest() for p in sources]
    assert {k: counts["landmarked"].get(k, 0) for k in pixels} == {k: 1 for k in pixels}, counts["landmarked"]


def test_the_report_says_what_made_it(experiments):
    root, plain, _, _ = experiments
    text = open(os.path.join(plain, "report.md"), encoding="utf-8").read()
    head = text.split("## Table II")[0]
    assert "with PalsySim 0.1.0, Python " in head and "ComfyUI 0.3.75" in head and " UTC " in head, head
    for key, name in (("checkpoint", "tiny_sd15.safetensors"), ("controlnet", "tiny_canny.safetensors")):
        digest = hashlib.sha256(open(os.path.join(root, "sd", name), "rb").read()).hexdigest()
        assert f"| {key} | {name} | {digest} | unverified: not a published file PalsySim lists |" in head, head
    # the values training used, read from each net's train.json: 2 epochs at batch 4 over 6 photos = 3 steps
    for net in ("full_0_999", "partial_500_700", "partial_0_200", "freeze_0_999", "lora_0_999"):
        assert any(line.startswith(f"| {net} | ") and "| 3 | 4 |" in line and "| 6 |" in line
                   for line in head.splitlines()), (net, head)
    rows = [json.load(open(os.path.join(plain, "evaluation", run, "row.json"))) for run in os.listdir(
        os.path.join(plain, "evaluation"))]
    assert ("No image was scored" in head) == (not any(r["images"] for r in rows)), head


def test_no_patient_folder_or_file_name_in_any_output(experiments):
    root, plain, _, _ = experiments
    for d, _, files in os.walk(plain):
        for f in files:
            if f == "experiment.toml":
                continue  # the user's own settings: where their patients are is theirs to write
            assert not any(n in f for n in PATIENT_NAMES), os.path.join(d, f)
            data = open(os.path.join(d, f), "rb").read()
            for n in PATIENT_NAMES + (os.path.join(root, "patients"),):
                assert n.encode() not in data, (os.path.join(d, f), n)


def test_each_patient_is_generated_on_the_donor_prepare_gave_them(experiments):
    root, plain, _, _ = experiments
    donors = [content_name(photo_png(p)) for p in sorted(os.path.join(root, "donors", f)
                                                           for f in os.listdir(os.path.join(root, "donors")))]
    with open(os.path.join(plain, "generated", "partial_codc", "manifest.json")) as f:
        jobs = json.load(f)["jobs"]
    assert len(donors) == 2 and len(jobs) == 5
    for key, job in jobs.items():
        k = int(key.split("/")[0].split("_")[1]) - 1
        assert job["made_from"]["donor"] == donors[k % len(donors)], key


def test_every_net_trains_two_epochs_at_batch_4_over_every_photo(experiments):
    _, plain, _, _ = experiments
    folder = os.path.join(plain, "models", "controlnet")
    runs = sorted(f for f in os.listdir(folder) if f.endswith("_training"))
    assert runs, os.listdir(folder)
    for run in runs:
        with open(os.path.join(folder, run, "train.json")) as f:
            log = json.load(f)
        # 2 patients: rest + 3 grins, rest + 1 grin = 6 photos; 2 epochs at batch 4 = ceil(12 / 4) steps
        assert log["dataset"]["photos"] == 6 and log["settings"]["batch_size"] == 4, (run, log["dataset"])
        assert log["settings"]["steps"] == 3 and len(log["steps"]) == 3, run


def test_killed_in_training_and_generation_then_rerun_gives_the_unbroken_report(experiments):
    _, plain, broken, killed = experiments
    assert killed == [True, True]
    assert report_numbers(broken) == report_numbers(plain)


def test_a_second_run_redoes_nothing_and_a_new_seed_only_generates_and_scores(experiments):
    _, plain, _, _ = experiments
    state = os.path.join(plain, "state.json")
    before = open(state).read()
    nets = {f: os.stat(os.path.join(plain, "models", "controlnet", f)).st_mtime_ns
            for f in os.listdir(os.path.join(plain, "models", "controlnet")) if f.endswith(".safetensors")}
    r = cli("run", plain, "--quiet", timeout=600)
    assert r.returncode == 0, r.stderr
    assert open(state).read() == before
    path = os.path.join(plain, "experiment.toml")
    text = open(path).read().replace("seeds = [1]", "seeds = [1, 2]")
    open(path, "w").write(text)
    r = cli("run", plain, "--quiet", timeout=900)
    assert r.returncode == 0, r.stderr
    assert os.path.isfile(os.path.join(plain, "generated", "partial", "patient_2", "grin", "man_2.png"))
    assert os.path.isfile(os.path.join(plain, "generated", "partial", "patient_1", "grin", "photo2", "man_2.png"))
    assert nets == {f: os.stat(os.path.join(plain, "models", "controlnet", f)).st_mtime_ns for f in nets}


def test_a_model_file_named_like_a_published_one_with_other_bytes_is_refused_unless_accepted(tmp_path):
    root = str(tmp_path)
    os.makedirs(os.path.join(root, "patients", "p1"))
    write_image(os.path.join(root, "patients", "p1", "grin.png"), read_image(photo_paths()["astronaut"]))
    write_tiny_checkpoint(os.path.join(root, "v1-5-pruned-emaonly.safetensors"))  # a wrong download, say
    write_tiny_controlnet(os.path.join(root, "tiny_canny.safetensors"))
    exp = os.path.join(root, "exp")
    r = cli("init", exp, "--patients", os.path.join(root, "patients"), "--checkpoint",
            os.path.join(root, "v1-5-pruned-emaonly.safetensors"), "--controlnet", os.path.join(root, "tiny_canny.safetensors"))
    assert r.returncode == 0 and ": fill in donors, check the settings" in r.stdout, r.stdout
    path = os.path.join(exp, "experiment.toml")
    text = open(path).read().replace('"partial_codc", ', "")  # no donors: CODC's problems aside
    open(path, "w").write(text.replace("windows = [[0, 200], [800, 999], [0, 999], [500, 700]]", "windows = []"))
    r = cli("run", exp)
    assert r.returncode == 2 and "v1-5-pruned-emaonly.safetensors: its SHA-256 is not the published file's" in r.stderr
    assert "accept_mismatch = true" in r.stderr and "models --fetch v1-5-pruned-emaonly.safetensors" in r.stderr
    text = open(path).read().replace("accept_mismatch = false", "accept_mismatch = true")
    open(path, "w").write(text.replace("seed = 0", "seed = -1"))  # another problem: the run stops at the checks
    r = cli("run", exp)
    assert r.returncode == 2 and "seed = -1" in r.stderr and "SHA-256" not in r.stderr, r.stderr


def test_every_problem_is_listed_before_any_work(tmp_path):
    root = str(tmp_path)
    os.makedirs(os.path.join(root, "patients", "p1"))
    write_image(os.path.join(root, "patients", "p1", "grin.png"), read_image(photo_paths()["astronaut"]))
    write_image(os.path.join(root, "donors", "blank.png"), (read_image(photo_paths()["astronaut"]) * 0))
    exp = os.path.join(root, "exp")
    init_text = cli("init", exp, "--patients", os.path.join(root, "patients"), "--donors",
                    os.path.join(root, "donors"), "--checkpoint", os.path.join(root, "none.safetensors"),
                    "--controlnet", os.path.join(root, "control_sd15_canny.pth"))
    assert init_text.returncode == 0
    path = os.path.join(exp, "experiment.toml")
    text = open(path).read().replace('"freeze", "lora"]', '"freeze", "lora", "dreambooth"]')
    text = text.replace("[800, 999]", "[800, 1200]")
    open(path, "w").write(text)
    r = cli("run", exp)
    assert r.returncode == 2
    for needle in ("dreambooth", "[800, 1200]"):
        assert needle in r.stderr, r.stderr
    open(path, "w").write(text.replace(', "dreambooth"', "").replace("[800, 1200]", "[800, 999]"))
    r = cli("run", exp)
    assert r.returncode == 2
    for needle in ("none.safetensors", "control_sd15_canny.pth", "models --fetch", "no rest photo", "donors"):
        assert needle in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(exp, "prepared")) and not os.path.exists(os.path.join(exp, "state.json"))
