"""`python -m training` killed (SIGKILL) or interrupted (Ctrl-C) mid-run, then --resume: same weights as unbroken."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from real_faces import photos
from tiny_models import write_tiny_checkpoint, write_tiny_controlnet

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 8


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from palsysim.images import write_image
    root = tmp_path_factory.mktemp("resume")
    faces = photos()
    write_image(str(root / "data" / "p1" / "rest" / "a.png"), faces["astronaut"])
    write_image(str(root / "data" / "p2" / "grin" / "b.jpg"), faces["grace_hopper"])
    return {"checkpoint": write_tiny_checkpoint(str(root / "sd.safetensors")),
            "controlnet": write_tiny_controlnet(str(root / "cn.safetensors")), "data": str(root / "data"), "root": root}


def start(files, out, *extra):
    cmd = [sys.executable, "-m", "training", "--checkpoint", files["checkpoint"], "--controlnet", files["controlnet"],
           "--data", files["data"], "--out", str(files["root"] / out), "--resolution", "64", "--batch-size", "2",
           "--steps", str(STEPS), "--checkpoint-every", "2", "--lr", "1e-4", "--seed", "5", "--no-progress", *extra]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc, timeout=300):
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def logged_steps(files, out):
    """Steps in train.json, which is rewritten right after each saved state (0 before the first)."""
    path = files["root"] / (out.replace(".safetensors", "_training")) / "train.json"
    try:
        return len(json.loads(path.read_text())["steps"])
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def losses(files, out):
    path = files["root"] / (out.replace(".safetensors", "_training")) / "train.json"
    return [s["loss"] for s in json.loads(path.read_text())["steps"]]


def wait_for_state(proc, files, out, more_than, timeout=300):
    deadline = time.monotonic() + timeout
    while logged_steps(files, out) <= more_than:
        assert proc.poll() is None, f"training ended early:\n{proc.communicate()[0][-3000:]}"
        assert time.monotonic() < deadline, "no training state was saved in time"
        time.sleep(0.05)
    return logged_steps(files, out)


def test_sigkill_and_ctrl_c_then_resume_give_the_unbroken_weights(files):
    rc, log = finish(start(files, "unbroken.safetensors"))
    assert rc == 0, log
    unbroken = load_file(str(files["root"] / "unbroken.safetensors"))

    out = "broken.safetensors"
    proc = start(files, out)
    wait_for_state(proc, files, out, more_than=0)
    proc.send_signal(signal.SIGKILL)  # mid-step: the state on disk is the one saved at step 2
    rc, _ = finish(proc)
    assert rc == -signal.SIGKILL and not os.path.exists(files["root"] / out)

    proc = start(files, out, "--resume")
    saved = wait_for_state(proc, files, out, more_than=2)
    proc.send_signal(signal.SIGINT)  # Ctrl-C: the step in flight completes, the state is saved
    rc, log = finish(proc)
    assert rc == 130, log
    assert "--resume" in log
    state = json.loads((files["root"] / "broken_training" / "train.json").read_text())
    assert state["status"] == "interrupted" and saved <= len(state["steps"]) < STEPS

    rc, log = finish(start(files, out, "--resume"))
    assert rc == 0, log
    assert losses(files, out) == losses(files, "unbroken.safetensors")
    resumed = load_file(str(files["root"] / out))
    assert resumed.keys() == unbroken.keys()
    assert all(torch.equal(resumed[k], unbroken[k]) for k in unbroken)
    first = load_file(files["controlnet"])
    assert not all(torch.equal(resumed[k], first[k]) for k in first)  # it did train


def test_a_second_run_into_the_same_folder_needs_resume(files):
    work = files["root"] / "again_training"
    work.mkdir()
    (work / "training_state.torch").write_bytes(b"x")
    rc, log = finish(start(files, "again.safetensors"))
    assert rc == 2 and "add --resume" in log
