"""Shared pytest fixtures. The real ComfyUI host with the pack: see support/host.py and the `host` fixture.

Helper modules (no tests in them) live in tests/support/, put on sys.path here, so test files import
them by name (`from host import ...`, `from real_faces import ...`). What several test files share
is there or here, never imported from another test file.
"""
import os
import shutil
import subprocess
import sys

import pytest

# One compute thread per process (torch's OpenMP, and so every host, trainer and command the tests start): a test
# often runs a ComfyUI host, a client and a trainer at once on CI's two cores, where each process's spinning
# OpenMP threads wait on the others' (one training test file: 4x the CPU time and 3x the wall time with two).
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "support"))

from file_server import Server  # noqa: E402
from host import TINY_CHECKPOINT, TINY_CONTROLNET, start_host  # noqa: E402
from tiny_models import write_tiny_checkpoint, write_tiny_controlnet  # noqa: E402

from palsysim.base.paths import REPO  # noqa: E402
from palsysim.face.landmarks import has_legacy_api  # noqa: E402

# Builds a face_landmarker.task offline from the legacy models of mediapipe <= 0.10.21.
BUILD_TASK = os.path.join(REPO, "..", "shared", "tools", "face_landmarker_task", "build.sh")

# Without mediapipe's legacy API (the "current" environment: make test-current) every landmark call,
# in this process, its subprocesses and the host, uses the Tasks API with the face_landmarker.task
# that set-up builds beside the venv (scripts/setup.sh), handed over as PALSYSIM_FACE_LANDMARKER.
LEGACY = has_legacy_api()
if not LEGACY and os.path.isfile(os.path.join(sys.prefix, "face_landmarker.task")):
    os.environ.setdefault("PALSYSIM_FACE_LANDMARKER", os.path.join(sys.prefix, "face_landmarker.task"))

# Tests that cannot run in one environment, and why.
NEEDS_LEGACY = {
    "test_both_mediapipe_apis_give_one_result_format": "compares with the legacy Face Mesh API, absent after 0.10.21",
    "test_thumbnails_are_what_the_script_draws_now":
        "the thumbnails are drawn with the legacy Face Mesh's landmarks; the Tasks API's move a face crop's edges "
        "in 0.85-1% of each sheet's pixels, as much as some stale sheets differ",
}
NEEDS_NO_DEFAULT_TASK = {
    "tasks backend without its model file": "PALSYSIM_FACE_LANDMARKER gives every process a face_landmarker.task",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if not LEGACY and item.originalname in NEEDS_LEGACY:
            item.add_marker(pytest.mark.skip(reason=NEEDS_LEGACY[item.originalname]))
        for case, why in NEEDS_NO_DEFAULT_TASK.items():
            if os.environ.get("PALSYSIM_FACE_LANDMARKER") and f"[{case}" in item.name:
                item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture(scope="module")
def module_tmp(request, tmp_path_factory):
    """module_tmp(name) -> a new folder for a module's shared files (tiny models, trained nets),
    deleted when the module ends with no test failed: a whole suite's such files reach 11 GB, more
    than CI's disk holds beside two venvs (one CI run ran out of space)."""
    made, failed = [], request.session.testsfailed

    def mktemp(name):
        made.append(tmp_path_factory.mktemp(name))
        return made[-1]
    yield mktemp
    if request.session.testsfailed == failed:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def task_file(tmp_path_factory):
    """A working MediaPipe face_landmarker.task: the one set-up builds beside a venv whose mediapipe has
    no legacy models (scripts/setup.sh, the "current" environment), else one built once from this
    mediapipe's legacy models (BUILD_TASK)."""
    beside = os.path.join(sys.prefix, "face_landmarker.task")
    if os.path.isfile(beside):
        return beside
    out = str(tmp_path_factory.mktemp("mediapipe") / "face_landmarker.task")
    r = subprocess.run(["bash", BUILD_TASK, out, sys.executable], capture_output=True, text=True)
    assert r.returncode == 0, f"{BUILD_TASK} failed (exit {r.returncode}):\n{r.stdout}{r.stderr}"
    return out


@pytest.fixture(scope="session")
def host(tmp_path_factory):
    """A running ComfyUI server with the pack, shared by the whole test session.

    Its models_dir (host.models_dir, or host.model_path(folder, name)) holds checkpoints/
    TINY_CHECKPOINT and controlnet/TINY_CONTROLNET; mediapipe/ and insightface/ start empty.
    Tests may add model files (then call host.refresh_models()); they must not stop the server.
    """
    workdir = str(tmp_path_factory.mktemp("comfyui"))
    models = os.path.join(workdir, "models")
    server = start_host(workdir, wait=False)
    try:
        # Built while the server starts; each file appears whole (written aside, then renamed).
        write_tiny_checkpoint(os.path.join(models, "checkpoints", TINY_CHECKPOINT))
        write_tiny_controlnet(os.path.join(models, "controlnet", TINY_CONTROLNET))
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    yield server
    server.stop()
    # pytest keeps the last few runs' temp folders; the log and outputs are small, the models not.
    shutil.rmtree(models, ignore_errors=True)


@pytest.fixture
def server():
    """A loopback HTTP file server (support/file_server.py): put bytes in server.files[name], fetch
    server.url(name); it records each request's Range header in server.ranges."""
    s = Server()
    yield s
    s.shutdown()
    s.server_close()
