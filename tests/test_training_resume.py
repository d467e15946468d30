"""`python -m training` killed (SIGKILL, at random points too) or interrupted (Ctrl-C) mid-run, then --resume:
same weights as unbroken; a saved state cut short (or with a flipped bit) is detected and the previous one used."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from real_faces import photos
from safetensors.torch import load_file
from tiny_models import write_tiny_checkpoint, write_tiny_controlnet

from training import checkpointing as ckpt

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 8


@pytest.fixture(scope="module")
def files(module_tmp):
    from palsysim.base.photos import write_image
    root = module_tmp("resume")
    faces = photos()
    write_image(str(root / "data" / "p1" / "rest" / "a.png"), faces["astronaut"])
    write_image(str(root / "data" / "p2" / "grin" / "b.jpg"), faces["grace_hopper"])
    return {"checkpoint": write_tiny_checkpoint(str(root / "sd.safetensors")),
            "controlnet": write_tiny_controlnet(str(root / "cn.safetensors")), "data": str(root / "data"), "root": root}


@pytest.fixture(scope="module")
def unbroken(files):
    """The run every broken one must equal: "unbroken.safetensors" (train.json beside it)."""
    rc, log = finish(start(files, "unbroken.safetensors"))
    assert rc == 0, log
    return load_file(str(files["root"] / "unbroken.safetensors"))


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


def test_sigkill_and_ctrl_c_then_resume_give_the_unbroken_weights(files, unbroken):
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


def test_random_kills_then_a_truncated_state_still_give_the_unbroken_weights(files, unbroken):
    out = "faulty.safetensors"
    state = files["root"] / "faulty_training" / ckpt.STATE_FILE
    rng = random.Random(8)
    # Three kills at seeded random steps, each a random fraction of a step late; a save at every step
    # (--checkpoint-every 1) so they land mid-step, mid-save or between the save's two renames.
    for kill, at_step in enumerate(sorted(rng.sample(range(1, STEPS - 1), 3))):
        proc = start(files, out, "--checkpoint-every", "1", *(("--resume",) if kill else ()))
        wait_for_state(proc, files, out, more_than=max(at_step - 1, logged_steps(files, out)))
        time.sleep(rng.uniform(0.0, 0.2))
        proc.send_signal(signal.SIGKILL)
        rc, log = finish(proc)
        assert rc == -signal.SIGKILL, f"kill {kill} came too late: the run ended with {rc}\n{log[-2000:]}"
        saved, used, skipped = ckpt.load_latest(str(state))  # what the next --resume starts from
        assert skipped in ([], [f"{ckpt.STATE_FILE} is missing"]), skipped  # missing: killed between renames
        assert 1 <= saved["step"] < STEPS

    # The newest state cut short (as a full disk or a broken copy leaves it): the previous one is used.
    assert state.exists() and (state.parent / (ckpt.STATE_FILE + ckpt.PREVIOUS)).exists()
    previous = torch.load(str(state) + ckpt.PREVIOUS, weights_only=True)["step"]
    data = state.read_bytes()
    state.write_bytes(data[:len(data) // 2])

    rc, log = finish(start(files, out, "--resume"))
    assert rc == 0, log
    assert f"{ckpt.STATE_FILE} is unreadable, cut short or damaged" in log, log
    assert f"resuming from {ckpt.STATE_FILE}{ckpt.PREVIOUS} (step {previous})" in log, log
    assert losses(files, out) == losses(files, "unbroken.safetensors")
    resumed = load_file(str(files["root"] / out))
    assert resumed.keys() == unbroken.keys() and all(torch.equal(resumed[k], unbroken[k]) for k in unbroken)
    assert not [f for f in os.listdir(state.parent) if f.endswith(".tmp")]  # killed saves' leftovers removed


def small_state(step):
    return {"step": step, "trainable": {"w": torch.randn(64, 64)}, "log": [{"step": step, "loss": 0.5}]}


def test_a_flipped_bit_is_caught_by_the_checksum_and_the_previous_state_used(tmp_path):
    path = str(tmp_path / ckpt.STATE_FILE)
    ckpt.save_state(path, small_state(1))
    ckpt.save_state(path, small_state(2))
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x01  # inside the tensor bytes: torch.load alone reads this without complaint
    open(path, "wb").write(bytes(data))
    state, used, skipped = ckpt.load_latest(path)
    assert state["step"] == 1 and used == path + ckpt.PREVIOUS
    assert skipped == [f"{ckpt.STATE_FILE} is damaged (its contents do not match the checksum saved with it)"]


def test_no_intact_state_says_so_and_names_the_fix(tmp_path):
    path = str(tmp_path / ckpt.STATE_FILE)
    ckpt.save_state(path, small_state(1))
    ckpt.save_state(path, small_state(2))
    for p in (path, path + ckpt.PREVIOUS):
        open(p, "r+b").truncate(100)
    with pytest.raises(ckpt.NoIntactState) as e:
        ckpt.load_latest(path)
    msg = str(e.value)
    assert "training_state.torch is unreadable" in msg and "training_state.torch.prev is unreadable" in msg
    assert "delete that folder and train again without --resume" in msg and str(tmp_path) in msg
