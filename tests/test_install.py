"""install.py, run as ComfyUI-Manager runs it after installing requirements.txt (`python install.py` in the
pack's folder, COMFYUI_PATH and COMFYUI_FOLDERS_BASE_PATH set): on a mediapipe without the legacy API it
fetches face_landmarker.task into models/mediapipe/ from the loopback `server` (conftest.py), named
through PALSYSIM_MODEL_MIRROR as `models --fetch` reads it. The Tasks-API cases run under an interpreter
whose mediapipe lacks the legacy API (this one, else .venv-current's), the legacy case under one that has it."""
import os
import shutil
import socket
import subprocess
import sys
import zipfile

import pytest

from palsysim.base.model_files import by_key, task_bundle_problem
from palsysim.base.paths import REPO
from palsysim.face.landmarks import TASK_FILE, has_legacy_api

LEGACY = has_legacy_api()
VENV_PYTHON = {True: os.path.join(REPO, ".venv", "bin", "python"),
               False: os.path.join(REPO, ".venv-current", "bin", "python")}
OWN_VARIABLES = ("COMFYUI_DIR", "MODELS_DIR", "COMFYUI_PATH", "COMFYUI_FOLDERS_BASE_PATH", "PALSYSIM_NO_DOWNLOAD",
                 "PALSYSIM_MODEL_MIRROR", "PALSYSIM_FACE_LANDMARKER")


def python(legacy):
    """An interpreter whose mediapipe has (legacy=True) or lacks the legacy Face Mesh API."""
    if LEGACY == legacy:
        return sys.executable
    if not os.path.isfile(VENV_PYTHON[legacy]):
        pytest.skip(f"needs {VENV_PYTHON[legacy]} (make setup{'' if legacy else '-current'})")
    return VENV_PYTHON[legacy]


def fake_comfyui(tmp_path):
    comfy = tmp_path / "ComfyUI"
    (comfy / "comfy").mkdir(parents=True)
    (comfy / "custom_nodes").mkdir()
    (comfy / "main.py").write_text("")
    return comfy


def run_install(comfy, mirror, legacy=False, pack=REPO, manager=True, **env):
    """install.py as the Manager runs it: in the pack's folder, with the Manager's two variables (manager)."""
    env = {**{k: v for k, v in os.environ.items() if k not in OWN_VARIABLES}, "PALSYSIM_MODEL_MIRROR": mirror, **env}
    if manager:
        env.update(COMFYUI_PATH=str(comfy), COMFYUI_FOLDERS_BASE_PATH=str(comfy))
    r = subprocess.run([python(legacy), "install.py"], cwd=pack, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def files_under(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


def test_install_py_fetches_the_task_bundle_whole_and_checked_once(server, task_file, tmp_path):
    server.files[TASK_FILE] = open(task_file, "rb").read()
    comfy = fake_comfyui(tmp_path)
    mirror = server.url("").rstrip("/")
    r = run_install(comfy, mirror)
    target = comfy / "models" / "mediapipe" / TASK_FILE
    assert f"installed at {target}" in r.stdout, r.stdout + r.stderr
    assert target.read_bytes() == server.files[TASK_FILE] and task_bundle_problem(str(target)) is None
    assert files_under(comfy / "models") == [os.path.join("mediapipe", TASK_FILE)]  # no .partial left
    r = run_install(comfy, mirror)  # the Manager's update or fix runs it again
    assert f"found at {target}" in r.stdout and len(server.ranges) == 1, r.stdout  # nothing downloaded


def dead_port():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case", ["forbidden", "offline"])
def test_forbidden_or_offline_install_py_downloads_nothing_and_names_file_url_and_folder(server, task_file, tmp_path,
                                                                                         case):
    server.files[TASK_FILE] = open(task_file, "rb").read()
    comfy = fake_comfyui(tmp_path)
    if case == "forbidden":
        mirror, env = server.url("").rstrip("/"), {"PALSYSIM_NO_DOWNLOAD": "1"}
    else:
        mirror, env = f"http://127.0.0.1:{dead_port()}", {}
    r = run_install(comfy, mirror, **env)
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1, r.stdout
    folder = os.path.join(str(comfy), "models", "mediapipe") + os.sep
    assert f"{TASK_FILE} was not downloaded" in lines[0] and f"download {mirror}/{TASK_FILE} into {folder}" in lines[0]
    assert ("PALSYSIM_NO_DOWNLOAD is set" in lines[0]) == (case == "forbidden"), lines[0]
    assert server.ranges == [] and files_under(comfy) == ["main.py"]


def test_install_py_refuses_a_broken_bundle_and_leaves_nothing(server, tmp_path):
    broken = tmp_path / "broken.task"
    with zipfile.ZipFile(broken, "w") as z:  # big enough, a zip, but not the face landmarker's members
        z.writestr("face_detector.tflite", os.urandom(2 << 20))
    server.files[TASK_FILE] = broken.read_bytes()
    comfy = fake_comfyui(tmp_path)
    r = run_install(comfy, server.url("").rstrip("/"))
    assert "without face_landmarks_detector.tflite" in r.stdout and "deleted" in r.stdout, r.stdout
    assert len(server.ranges) == 1 and files_under(comfy) == ["main.py"]


def test_install_py_does_nothing_where_mediapipe_has_the_legacy_api(server, task_file, tmp_path):
    server.files[TASK_FILE] = open(task_file, "rb").read()
    comfy = fake_comfyui(tmp_path)
    r = run_install(comfy, server.url("").rstrip("/"), legacy=True)
    assert r.stdout == "" and server.ranges == [] and files_under(comfy) == ["main.py"], r.stdout


def test_install_py_in_custom_nodes_finds_its_comfyui_and_the_folders_its_yaml_declares(server, task_file, tmp_path):
    """Without the Manager's variables (a manual `python install.py` after a git clone) the ComfyUI is the one
    the pack sits in, and a face_landmarker.task its extra_model_paths.yaml declares counts as found."""
    server.files[TASK_FILE] = open(task_file, "rb").read()
    comfy = fake_comfyui(tmp_path)
    pack = comfy / "custom_nodes" / "palsysim"
    shutil.copytree(os.path.join(REPO, "palsysim"), pack / "palsysim", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(os.path.join(REPO, "install.py"), pack)
    mirror = server.url("").rstrip("/")
    shared = tmp_path / "shared" / "mediapipe"
    shared.mkdir(parents=True)
    shutil.copy(task_file, shared / TASK_FILE)
    (comfy / "extra_model_paths.yaml").write_text("shared:\n    base_path: ../shared\n    mediapipe: mediapipe\n")
    r = run_install(comfy, mirror, pack=pack, manager=False)
    assert f"found at {shared / TASK_FILE}" in r.stdout and server.ranges == [], r.stdout + r.stderr
    (comfy / "extra_model_paths.yaml").unlink()
    r = run_install(comfy, mirror, pack=pack, manager=False)
    assert (comfy / "models" / "mediapipe" / TASK_FILE).read_bytes() == server.files[TASK_FILE], r.stdout + r.stderr


def test_the_tasks_api_message_names_the_file_its_url_and_its_folder(tmp_path, monkeypatch):
    from palsysim.face.landmarks import missing_task_file
    url = by_key(TASK_FILE).url
    given = missing_task_file(str(tmp_path / "elsewhere" / TASK_FILE))
    assert f"download {url} into {tmp_path / 'elsewhere'}{os.sep}" in given, given
    monkeypatch.setenv("MODELS_DIR", str(tmp_path / "models"))
    searched = missing_task_file()
    assert f"download {url} into {tmp_path / 'models' / 'mediapipe'}{os.sep}" in searched, searched
    assert f"python -m palsysim models --fetch {TASK_FILE} downloads it" in searched
