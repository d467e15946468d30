"""`torchrun --nproc-per-node 2 -m training` on the CPU (gloo): the same weights as one process with the same
global batch, rank 0 the only writer, and a rank killed with SIGKILL then --resume under torchrun giving the
unbroken result (issue 17, point 2)."""
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import torch
from real_faces import photos
from safetensors.torch import load_file
from tiny_models import write_tiny_checkpoint, write_tiny_controlnet

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 6


@pytest.fixture(scope="module")
def files(module_tmp):
    from palsysim.base.photos import write_image
    root = module_tmp("distributed")
    write_image(str(root / "data" / "p1" / "rest" / "a.png"), photos()["astronaut"])
    write_image(str(root / "data" / "p2" / "rest" / "b.png"), photos()["grace_hopper"])
    return {"checkpoint": write_tiny_checkpoint(str(root / "sd.safetensors")),
            "controlnet": write_tiny_controlnet(str(root / "cn.safetensors")), "data": str(root / "data"), "root": root}


def start(files, out, processes, *extra):
    training = ["--checkpoint", files["checkpoint"], "--controlnet", files["controlnet"], "--data", files["data"],
                "--out", str(files["root"] / out), "--resolution", "64", "--batch-size", "2", "--steps", str(STEPS),
                "--checkpoint-every", "1", "--lr", "1e-3", "--seed", "3", "--no-progress", *extra]
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)] if processes else []
    return subprocess.Popen([sys.executable, *launcher, "-m", "training", *training], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def finish(proc, timeout=600):
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def work(files, out):
    return files["root"] / out.replace(".safetensors", "_training")


def logged(files, out):
    try:
        return json.loads((work(files, out) / "train.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {"steps": []}


def flat(weights):
    return torch.cat([weights[k].flatten() for k in sorted(weights)])


def relative_difference(a, b):
    """|a - b| / |b| over all the weights of two ControlNet files (Euclidean norms).

    Not per element: AdamW's first step is lr * sign(gradient), so an element whose gradient is at the
    level of floating-point noise can step either way with another summation order (measured: 0.02% of
    the elements differ by more than 1e-6; the whole differs by 4e-6).
    """
    assert a.keys() == b.keys()
    return ((flat(a) - flat(b)).norm() / flat(b).norm()).item()


@pytest.fixture(scope="module")
def runs(files):
    """The one-process run and the unbroken two-process run, both finished."""
    one, two = start(files, "one.safetensors", 0), start(files, "two.safetensors", 2)
    for proc in (one, two):
        rc, log = finish(proc)
        assert rc == 0, log[-3000:]
    return {n: load_file(str(files["root"] / f"{n}.safetensors")) for n in ("one", "two")}


def test_two_processes_train_the_weights_of_one_with_the_same_global_batch(files, runs):
    assert relative_difference(runs["two"], runs["one"]) <= 1e-5
    first = load_file(files["controlnet"])
    update = (flat(runs["one"]) - flat(first)).norm()
    assert (flat(runs["two"]) - flat(runs["one"])).norm() <= 1e-3 * update  # training moved them far more
    one, two = logged(files, "one.safetensors"), logged(files, "two.safetensors")
    assert two["settings"]["processes"] == 2 and one["settings"]["processes"] == 1
    assert [s["timesteps"] for s in two["steps"]] == [s["timesteps"] for s in one["steps"]]
    assert all(abs(a["loss"] - b["loss"]) <= 1e-5 * b["loss"] for a, b in zip(two["steps"], one["steps"]))
    # rank 0 wrote every file, once: no second copy, no leftover temporary
    assert sorted(os.listdir(work(files, "two.safetensors"))) == ["loss.png", "train.json", "training_state.torch",
                                                                  "training_state.torch.prev"]


def rank_process(torchrun, rank, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(torchrun.pid).children(recursive=True):
            try:
                if child.environ().get("RANK") == str(rank) and "training" in " ".join(child.cmdline()):
                    return child
            except psutil.Error:
                continue
        time.sleep(0.1)
    raise AssertionError(f"no rank {rank} process under torchrun")


def test_a_killed_rank_stops_the_run_and_resume_under_torchrun_gives_the_unbroken_result(files, runs):
    out = "killed.safetensors"
    proc = start(files, out, 2)
    rank1 = rank_process(proc, 1)
    deadline = time.monotonic() + 600
    while len(logged(files, out)["steps"]) < 2:
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    rank1.send_signal(signal.SIGKILL)
    rc, log = finish(proc)
    assert rc != 0, log[-3000:]  # the run stopped: torchrun ended rank 0 too
    assert not os.path.exists(files["root"] / out)
    saved = torch.load(str(work(files, out) / "training_state.torch"), weights_only=True)
    assert 2 <= saved["step"] < STEPS  # the last good state is there, intact (its checksum holds on resume)

    rc, log = finish(start(files, out, 2, "--resume"))
    assert rc == 0, log[-3000:]
    resumed = load_file(str(files["root"] / out))
    assert all(torch.equal(resumed[k], runs["two"][k]) for k in runs["two"])  # the unbroken two-process run
    assert relative_difference(resumed, runs["one"]) <= 1e-5
    history = logged(files, out)["history"]
    assert history and history[0]["status"].startswith(("killed", "stopped: another process")), history
