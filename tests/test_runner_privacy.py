"""`palsysim run --embedded [N]` killed mid-batch by SIGHUP (a closed terminal) or SIGKILL: no embedded
ComfyUI outlives it, and no patient file name, path or pixels are left anywhere (every byte
of every file written meanwhile under the temp folder and the ComfyUI host is searched)."""
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import numpy as np
import pytest
from PIL import Image
from runner_helpers import NO_ARCFACE, REPO, TINY, api, make_patients

from palsysim.base.paths import comfyui_dir
from palsysim.comfy.host import HOST_PREFIX
from palsysim.comfy.plan import photo_png


def host_folders(tmp=None):
    return set(glob.glob(os.path.join(tmp or tempfile.gettempdir(), HOST_PREFIX + "*")))


def processes_naming(text):
    """pids of processes whose command line contains text."""
    pids = []
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            if text.encode() in open(cmdline, "rb").read():
                pids.append(int(cmdline.split("/")[2]))
        except OSError:
            pass
    return pids


def files_written_since(roots, since, skip):
    for root in roots:
        for d, dirs, fs in os.walk(root):
            dirs[:] = [x for x in dirs if not any(os.path.join(d, x).startswith(s) for s in skip)]
            for f in fs:
                path = os.path.join(d, f)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if os.path.isfile(path) and not os.path.islink(path) and st.st_mtime >= since \
                        and st.st_size < 300 * 2 ** 20:
                    yield path


@pytest.mark.parametrize("sig, hosts", [(signal.SIGHUP, 1), (signal.SIGKILL, 2)])
def test_a_killed_embedded_run_leaves_no_server_and_no_patient_data(host, tmp_path, tmp_path_factory, sig, hosts):
    patient = f"zq_private_{uuid.uuid4().hex[:10]}"
    patients = make_patients(tmp_path / "p", ["rest", "grin"], patient=patient, size=240)
    photo = str(patients / patient / "rest.png")
    upload = photo_png(photo)
    pixels = np.asarray(Image.open(photo).convert("RGB"))
    secrets = {"patient name": patient.encode(), "patients path": str(patients).encode(),
               "uploaded PNG": upload[len(upload) // 2:len(upload) // 2 + 256],
               "raw pixel row": pixels[120, 40:140].tobytes()}
    # The run's own temp folder (TMPDIR), so that the host folders it makes are told from those of runs beside it
    # (CI runs two suites at once); the secrets are looked for in it and in the system's.
    out, run_tmp = tmp_path / "out", tmp_path / "tmp"
    run_tmp.mkdir()
    before, started = host_folders(run_tmp), time.time() - 1
    cmd = [sys.executable, "-m", "palsysim", "run", api("palsy_pf"), "--embedded", str(hosts), "--patients", str(patients),
           "--out", str(out), "--quiet", *TINY, *NO_ARCFACE, "--seeds", *map(str, range(1, 25))]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "MODELS_DIR": host.models_dir, "TMPDIR": str(run_tmp)})
    # 48 jobs: the run is killed as soon as every host holds a photo, and on a loaded machine the first
    # host to start must not finish all of them before the last one has started (4 seeds did once)
    ours, deadline = set(), time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:  # until every host has a photo
        ours = host_folders(run_tmp) - before
        if len(ours) == hosts and all(glob.glob(os.path.join(f, "input", "palsysim", "*", "*.png")) for f in ours):
            break
        time.sleep(0.05)
    assert len(ours) == hosts, f"the embedded hosts never got the uploads:\n{proc.stdout.read().decode()[-3000:] if proc.poll() is not None else ''}"
    for folder in ours:  # the keeper and ComfyUI, named by their private folder
        assert [p for p in processes_naming(folder) if p != proc.pid]
    proc.send_signal(sig)
    proc.wait(timeout=60)

    deadline = time.monotonic() + 60
    while any(os.path.exists(f) or processes_naming(f) for f in ours) and time.monotonic() < deadline:
        time.sleep(0.2)
    for folder in ours:
        assert not processes_naming(folder), "an embedded ComfyUI outlived the runner"
        assert not os.path.exists(folder), f"{folder} was left behind"

    skip = [str(patients), str(out)]  # the inputs themselves, and results named as the output layout says
    # In the system's temp, the test sessions' own folders are not the runner's: a suite beside this one (CI runs
    # two) writes patients of the same pixels there. The runner's temp is run_tmp, searched whole.
    sessions = str(tmp_path_factory.getbasetemp().parent)
    written = [*files_written_since([str(run_tmp)], started, skip),
               *files_written_since([tempfile.gettempdir(), comfyui_dir()], started, skip + [sessions])]
    found = []
    for path in written:
        try:
            data = open(path, "rb").read()
        except OSError:
            continue
        found += [f"{what} in {path}" for what, secret in secrets.items() if secret in data]
    assert not found, found


def test_a_new_run_removes_what_a_killed_keeper_left_and_spares_live_runs(tmp_path):
    import fcntl

    from palsysim.comfy.host import remove_stale_hosts
    left, live = (tempfile.mkdtemp(prefix=HOST_PREFIX) for _ in range(2))
    for folder in (left, live):
        os.makedirs(os.path.join(folder, "input", "palsysim"))
        Image.new("RGB", (8, 8)).save(os.path.join(folder, "input", "palsysim", "a.png"))
        open(os.path.join(folder, "lock"), "w").close()
    born = tempfile.mkdtemp(prefix=HOST_PREFIX)  # a run's folder being made: its lock not yet in place
    open(os.path.join(born, "lock.new"), "w").close()
    fd = os.open(os.path.join(live, "lock"), os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a running keeper holds it
    try:
        remove_stale_hosts()
        assert not os.path.exists(left) and os.path.isfile(os.path.join(live, "input", "palsysim", "a.png"))
        assert os.path.isfile(os.path.join(born, "lock.new"))
    finally:
        os.close(fd)
    remove_stale_hosts()
    assert not os.path.exists(live)
    shutil.rmtree(born)
