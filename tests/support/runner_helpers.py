"""Shared by test_workflows.py and the test_runner*.py files: patient folders, the runner's real CLI, and
what a server has run and has queued."""
import os
import shutil
import subprocess
import time

import requests
from cli_helpers import python_m
from host import TINY_CHECKPOINT, TINY_CONTROLNET, start_host
from PIL import Image
from real_faces import photo_paths

from palsysim.base.paths import REPO  # the checkout under test

WORKFLOWS = os.path.join(REPO, "workflows")
# The shipped model names mapped to the tiny models, and a tiny, fast sampling (64x64, 1 step).
TINY = ["--set", f"checkpoint.ckpt_name={TINY_CHECKPOINT}", "--set", f"controlnet.control_net_name={TINY_CONTROLNET}",
        "--set", "EmptyLatentImage.width=64", "--set", "EmptyLatentImage.height=64", "--set", "KSampler.steps=1"]
# Tiny models sample noise, not faces: the ArcFace checks (which need a face) are bypassed.
NO_ARCFACE = ["--bypass", "privacy gate"]  # the single-image workflows' gate
# A distinctive patient folder name: tests look for it where it must not be.
PATIENT = "zq_patient_7731"


def make_patients(root, expressions, photo="astronaut", size=256, patient=PATIENT, ext=".png", exif=None):
    """root/<patient>/<expression><ext>: one real face photo (scaled to size) per expression."""
    folder = os.path.join(root, patient)
    os.makedirs(folder, exist_ok=True)
    im = Image.open(photo_paths()[photo]).convert("RGB").resize((size, size))
    for e in expressions:
        kw = {"exif": exif} if exif is not None else {}
        im.save(os.path.join(folder, e + ext), **kw)
    return root


def api(name):
    return os.path.join(WORKFLOWS, "api", name + ".json")


def runner_cmd(workflow, server, patients, out, *extra, tiny=True, counts=None):
    """tiny: the shipped workflows' model names and sampling set to the tiny models' (TINY); counts: as
    cli_helpers.python_m's."""
    return python_m(counts) + ["palsysim", "run", str(workflow), "--server", server, "--patients", str(patients),
            "--out", str(out), "--quiet", *(TINY if tiny else []), *extra]


def run_runner(*args, timeout=600, **kw):
    """The real CLI in a subprocess -> CompletedProcess (text)."""
    return subprocess.run(runner_cmd(*args, **kw), cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": REPO})


def kill_mid_run(proc, server, ready, timeout=300):
    """SIGKILL `server` once ready() holds (polled) while the runner `proc` (Popen, text) runs, then let
    the runner finish -> (stdout, stderr); asserts the run was still going at the kill."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline and not ready():
        time.sleep(0.02)
    server.proc.kill()
    server.proc.wait()
    assert proc.poll() is None, "the run ended before the kill:\n" + proc.stderr.read()[-2000:]
    return proc.communicate(timeout=600)


def pngs(folder):
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(folder) for f in fs if f.endswith(".png"))


def png_chunks(path):
    """[(type, data)] of a PNG file, read raw (not through PIL's interpretation)."""
    import struct
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    out, pos = [], 8
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        out.append((kind.decode("ascii"), data[pos + 8:pos + 8 + n]))
        pos += 12 + n
    return out


def own_server(host, workdir):
    """A private server (tests may kill it; never the session's `host`) that borrows the host's tiny
    models; call .wait_ready() on it (several start side by side)."""
    server = start_host(str(workdir), wait=False)
    for folder, name in (("checkpoints", TINY_CHECKPOINT), ("controlnet", TINY_CONTROLNET)):
        src, dst = host.model_path(folder, name), server.model_path(folder, name)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
    return server


def history_seeds(host):
    """Seed of every prompt the server has run (the KSampler's), as a list with repeats."""
    seeds = []
    for entry in host.get("/history").values():
        graph = entry["prompt"][2]
        seeds += [n["inputs"]["seed"] for n in graph.values() if n["class_type"] == "KSampler"]
    return seeds


def queued(server):
    """The server's queue_remaining (prompts queued or running; 0 when it does not answer)."""
    try:
        return requests.get(server.url + "/prompt", timeout=5).json()["exec_info"]["queue_remaining"]
    except requests.RequestException:
        return 0


def make_video_patients(root, expressions, tag, frames=6, fps=12.0, patient=PATIENT):
    """root/<patient>/<expression>.mp4: the real-face grin of real_faces.write_expression_video, its container
    tagged with `tag` as title and comment (what a camera or an editor may write: names, dates)."""
    from real_faces import write_expression_video
    folder = os.path.join(root, patient)
    os.makedirs(folder, exist_ok=True)
    for e in expressions:
        write_expression_video(os.path.join(folder, e + ".mp4"), frames=frames, fps=fps, tag=tag)
    return root
