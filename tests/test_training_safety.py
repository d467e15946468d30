"""Training's data safety (issue 12): an output never replaces an input or a trained file, every output
location is checked before anything loads, bad photos and links out of DATA are listed, a killed run
is not "running" forever, and model files that cannot be used get a message naming them."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from real_faces import photos
from safetensors.torch import save_file
from tiny_models import tiny_controlnet_state_dict
from training_helpers import one_photo_files

from palsysim.base.errors import InputError
from training.dataset import DatasetError, load_dataset
from training.host import HostError, load_models, use_comfyui
from training.recipe import Config, run_dir, train
from training.report import read_log

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def files(module_tmp):
    return one_photo_files(module_tmp("safety"))


def config(files, out, **kw):
    kw = {"resolution": 64, "batch_size": 2, "steps": 1, "lr": 1e-4, "progress": False, **kw}
    return Config(checkpoint=files["checkpoint"], controlnet=files["controlnet"], data=files["data"],
                  out=str(out), **kw)


def digest(path):
    with open(path, "rb") as f:
        return hash(f.read())


def test_out_that_is_an_input_model_file_or_a_link_to_one_is_refused(files):
    link = files["root"] / "link.safetensors"
    link.symlink_to(files["controlnet"])
    before = {p: digest(p) for p in (files["checkpoint"], files["controlnet"])}
    for out, flag in ((files["checkpoint"], "--checkpoint"), (files["controlnet"], "--controlnet"), (link, "--controlnet")):
        with pytest.raises(ValueError, match=f"--out .* is {flag} .*: an output never replaces an input"):
            train(config(files, out, overwrite=True))
    assert before == {p: digest(p) for p in before}


def test_an_existing_trained_file_needs_overwrite(files):
    out = files["root"] / "trained.safetensors"
    out.write_bytes(b"an earlier run's ControlNet")  # its _training folder is gone
    with pytest.raises(FileExistsError, match="trained.safetensors already exists: add --overwrite"):
        train(config(files, out))
    assert out.read_bytes() == b"an earlier run's ControlNet"
    train(config(files, out, overwrite=True))
    assert out.stat().st_size > 1000


def test_unwritable_output_locations_are_found_before_anything_loads(files, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    missing = dict(files, checkpoint=str(tmp_path / "none.safetensors"), controlnet=str(tmp_path / "none_cn.safetensors"),
                   data=str(tmp_path / "no_data"))  # nothing may be read before the outputs are checked
    with pytest.raises(ValueError, match="cannot write .*a_file.*choose another --out"):
        train(config(missing, blocker / "out.safetensors"))
    (tmp_path / "x_training").write_text("a file where the run's folder belongs")
    with pytest.raises(ValueError, match="cannot write .*x_training"):
        train(config(missing, tmp_path / "x.safetensors"))
    with pytest.raises(ValueError, match="--out .* is inside the dataset folder"):
        train(config(files, os.path.join(files["data"], "p1", "x.safetensors")))


def test_empty_and_dangling_photos_are_listed_with_the_others(files, tmp_path):
    from palsysim.base.photos import write_image
    data = tmp_path / "data"
    write_image(str(data / "p1" / "rest" / "ok.png"), photos()["astronaut"])
    (data / "p1" / "rest" / "empty.png").write_bytes(b"")
    (data / "p1" / "rest" / "gone.jpg").symlink_to(tmp_path / "data" / "deleted.jpg")
    with pytest.raises(DatasetError) as e:
        load_dataset(str(data), 64)
    message = str(e.value)
    assert "2 problem(s)" in message and "p1/rest/empty.png" in message and "p1/rest/gone.jpg" in message


def test_links_out_of_the_dataset_are_not_followed(files, tmp_path):
    from palsysim.base.photos import write_image
    elsewhere = tmp_path / "elsewhere"
    write_image(str(elsewhere / "x.png"), photos()["grace_hopper"])
    data = tmp_path / "data"
    write_image(str(data / "p1" / "rest" / "ok.png"), photos()["astronaut"])
    (data / "p1" / "grin").symlink_to(elsewhere, target_is_directory=True)
    (data / "p1" / "rest" / "linked.png").symlink_to(elsewhere / "x.png")
    (data / "p1" / "rest" / "inside.png").symlink_to(data / "p1" / "rest" / "ok.png")  # inside DATA: fine
    with pytest.raises(DatasetError) as e:
        load_dataset(str(data), 64)
    message = str(e.value)
    assert "2 problem(s)" in message
    assert "p1/grin: a link to outside the dataset folder, not followed" in message
    assert "p1/rest/linked.png: a link to outside the dataset folder" in message


def test_a_photo_with_two_faces_gives_a_warning(files, tmp_path, capsys):
    import cv2

    from palsysim.base.photos import write_image
    pair = np.zeros((512, 812, 3), np.uint8)  # the composition in which MediaPipe finds both (test_core_faces)
    pair[:, :512] = photos()["grace_hopper"][:512]
    pair[106:406, 512:] = cv2.resize(photos()["astronaut"][:256, 96:352], (300, 300))
    data = tmp_path / "data"
    write_image(str(data / "p1" / "rest" / "two.png"), pair)
    dataset = load_dataset(str(data), 64)
    assert len(dataset) == 1
    assert dataset.warnings == ["p1/rest/two.png: more than one face; trained on the largest (crop the photo to "
                                "the patient to be sure)"]
    train(config(dict(files, data=str(data)), tmp_path / "two.safetensors"))
    assert "training: p1/rest/two.png: more than one face" in capsys.readouterr().err


def test_resume_with_fewer_steps_than_done_says_so(files):
    out = files["root"] / "five.safetensors"
    train(config(files, out, steps=3, checkpoint_every=1))
    with pytest.raises(ValueError, match="--steps 2: the saved run has already done 3 steps; give --steps above 3"):
        train(config(files, out, steps=2, resume=True, overwrite=True))


def test_after_kill_9_train_json_no_longer_says_running(files):
    out = files["root"] / "killed.safetensors"
    cmd = [sys.executable, "-m", "training", "--checkpoint", files["checkpoint"], "--controlnet", files["controlnet"],
           "--data", files["data"], "--out", str(out), "--resolution", "64", "--batch-size", "2", "--steps", "40",
           "--checkpoint-every", "1", "--lr", "1e-4", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log_path = os.path.join(run_dir(str(out)), "train.json")
    deadline = time.monotonic() + 300
    while not (os.path.exists(log_path) and json.load(open(log_path))["steps"]):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    assert read_log(log_path)["status"] == "running"  # while it runs
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.load(open(log_path))["status"] == "running"  # the file itself could not be updated...
    status = read_log(log_path)["status"]  # ...what reads it can tell
    assert status.startswith("killed: the process ended without a clean stop") and "--resume" in status
    report = subprocess.run([sys.executable, "-m", "training.report", str(out)], cwd=REPO, capture_output=True, text=True)
    assert report.returncode == 0 and "killed" in report.stdout
    log = train(config(files, out, steps=json.load(open(log_path))["steps"][-1]["step"] + 1, resume=True))
    assert log["status"] == "finished" and log["history"][0]["status"].startswith("killed")


def test_an_incomplete_controlnet_is_named_and_called_incomplete(files, tmp_path):
    use_comfyui()
    full = tiny_controlnet_state_dict()
    for name, drop in (("no_middle.safetensors", "middle_block"), ("no_hint.safetensors", "input_hint_block"),
                       ("no_blocks.safetensors", "input_blocks")):
        path = str(tmp_path / name)
        save_file({k: v for k, v in full.items() if drop not in k}, path)
        with pytest.raises((HostError, InputError)) as e:  # the core's reader or ComfyUI's loader finds it first
            load_models(files["checkpoint"], path)
        assert name in str(e.value) and "is an incomplete ControlNet" in str(e.value), str(e.value)
        assert "NoneType" not in str(e.value)


def test_the_command_line_prints_nothing_that_is_not_about_the_run(files):
    """No MediaPipe C++ log lines (the face crops' landmarks), no ComfyUI notes about its audio models."""
    out = files["root"] / "quiet.safetensors"
    r = subprocess.run([sys.executable, "-m", "training", "--checkpoint", files["checkpoint"], "--controlnet",
                        files["controlnet"], "--data", files["data"], "--out", str(out), "--resolution", "64",
                        "--batch-size", "1", "--steps", "1", "--no-progress"], cwd=REPO, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", r.stderr


def test_under_the_experiments_bar_the_step_bar_keeps_to_its_own_line_and_clears_it(files):
    """--progress-line 1 (as `experiment run` starts it): every draw goes one line down and back up, so the
    parent's bar on the line above is never overwritten, and the bar's line is blank when training ends."""
    out = files["root"] / "nested.safetensors"
    r = subprocess.run([sys.executable, "-m", "training", "--checkpoint", files["checkpoint"], "--controlnet",
                        files["controlnet"], "--data", files["data"], "--out", str(out), "--resolution", "64",
                        "--batch-size", "1", "--steps", "2", "--progress-line", "1"], cwd=REPO, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    draws = [d for d in r.stderr.split("\x1b[A") if d]
    assert draws and all(d.startswith("\n") for d in draws), repr(r.stderr)  # down a line, draw, back up
    assert "2/2" in r.stderr and draws[-1].strip() == "", repr(r.stderr)  # drawn to the end, then wiped
