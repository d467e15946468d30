"""`python -m palsysim models`: the table, and --fetch against a real HTTP server on loopback (the `server`
fixture, conftest.py)."""
import hashlib
import os
import socket
import subprocess
import sys

import pytest

from palsysim.base.model_files import MODELS, Model, fetch_hint
from palsysim.models.fetch import FetchError, Unreachable, fetch, manual_download_message

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAYLOAD = os.urandom(3 << 20)  # 3 MiB: several progress chunks
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


def model(server, name="tiny.safetensors", digest=DIGEST):
    return Model(name, "checkpoints", server.url(name), digest, len(PAYLOAD), "test", "tests")


def test_fetch_writes_the_verified_file_whole(server, tmp_path):
    server.files["tiny.safetensors"] = PAYLOAD
    path = fetch(model(server), str(tmp_path), progress=False)
    assert path == str(tmp_path / "checkpoints" / "tiny.safetensors")
    assert open(path, "rb").read() == PAYLOAD
    assert os.listdir(tmp_path / "checkpoints") == ["tiny.safetensors"]  # no .partial left
    assert fetch(model(server), str(tmp_path), progress=False) == path and len(server.ranges) == 1  # present: no request


def test_interrupted_fetch_resumes_with_a_range_request(server, tmp_path):
    server.files["tiny.safetensors"] = PAYLOAD
    server.cut_after = 1 << 20
    with pytest.raises(FetchError, match="again to resume"):
        fetch(model(server), str(tmp_path), progress=False)
    final = tmp_path / "checkpoints" / "tiny.safetensors"
    part = tmp_path / "checkpoints" / "tiny.safetensors.partial"
    assert not final.exists() and 0 < part.stat().st_size < len(PAYLOAD)
    have = part.stat().st_size
    fetch(model(server), str(tmp_path), progress=False)
    assert server.ranges == [None, f"bytes={have}-"]
    assert final.read_bytes() == PAYLOAD and not part.exists()


def test_a_file_that_does_not_match_its_digest_is_deleted_and_reported(server, tmp_path):
    server.files["tiny.safetensors"] = PAYLOAD[:-1] + bytes([PAYLOAD[-1] ^ 1])
    with pytest.raises(FetchError, match=f"not the pinned {DIGEST}; it was deleted"):
        fetch(model(server), str(tmp_path), progress=False)
    assert os.listdir(tmp_path / "checkpoints") == []


def test_no_network_gives_one_message_with_every_url_and_folder(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PALSYSIM_MODEL_MIRROR": f"http://127.0.0.1:{port}", "TORCH_HOME": str(tmp_path / "torch")}
    r = subprocess.run([sys.executable, "-m", "palsysim", "models", "--fetch", "all", "--quiet",
                        "--models-dir", str(tmp_path / "models")], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 1, r.stderr
    assert r.stderr.count("could not be downloaded here") == 1, r.stderr
    for m in MODELS:
        assert m.url in r.stderr
    assert os.path.join(str(tmp_path / "models"), "controlnet") in r.stderr
    assert os.path.join(str(tmp_path / "torch"), "hub", "checkpoints") in r.stderr
    files = [f for _, _, fs in os.walk(tmp_path) for f in fs]
    assert files == [], files
    with pytest.raises(Unreachable):
        fetch(Model("x.onnx", "insightface", f"http://127.0.0.1:{port}/x.onnx"), str(tmp_path), progress=False)
    assert "x.onnx" in manual_download_message([Model("x.onnx", "insightface", "http://a/x.onnx")], str(tmp_path))


def test_cli_fetch_refuses_a_mirror_file_with_the_wrong_digest(server, tmp_path):
    server.files["w600k_r50.onnx"] = b"not the ArcFace model"
    env = {**os.environ, "PALSYSIM_MODEL_MIRROR": server.url("").rstrip("/")}
    r = subprocess.run([sys.executable, "-m", "palsysim", "models", "--fetch", "w600k_r50.onnx", "--quiet",
                        "--models-dir", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 1 and "4c06341c33c2ca1f86781dab0e829f88ad5b64be9fba56e56bc9ebdefc619e43" in r.stderr, r.stderr
    assert "deleted" in r.stderr and os.listdir(tmp_path / "insightface" / "buffalo_l") == []


def test_models_lists_what_a_fresh_models_folder_has_and_lacks(tmp_path):
    (tmp_path / "controlnet").mkdir()
    (tmp_path / "controlnet" / "control_sd15_canny.pth").write_bytes(b"a damaged download")
    (tmp_path / "mediapipe").mkdir()
    (tmp_path / "mediapipe" / "face_landmarker.task").write_bytes(b"some bundle")
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch")}
    r = subprocess.run([sys.executable, "-m", "palsysim", "models", "--models-dir", str(tmp_path)],
                       cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    blocks = {b.split()[0]: b for b in r.stdout.split("\n\n")[1:]}
    assert set(blocks) == {m.name for m in MODELS}
    for m in MODELS:
        assert m.url in blocks[m.name] and m.licence in blocks[m.name]
    for name in ("v1-5-pruned-emaonly.safetensors", "buffalo_l/w600k_r50.onnx", "alexnet-owt-7be5be79.pth"):
        assert "MISSING" in blocks[name] and fetch_hint(os.path.basename(name)) in blocks[name]
    assert "MISMATCH" in blocks["control_sd15_canny.pth"] and "0.0 MB" in blocks["control_sd15_canny.pth"]
    digest = hashlib.sha256(b"some bundle").hexdigest()
    assert f"unverified (no public digest; this file's is {digest})" in blocks["face_landmarker.task"]


def test_missing_model_messages_name_the_fetch_line(tmp_path):
    from palsysim.base.errors import InputError
    from palsysim.face.landmarks import detector
    from palsysim.identity.arcface import load_model
    from palsysim.measure.fidelity import alexnet_weights
    cases = [(lambda: load_model(str(tmp_path / "w600k_r50.onnx")), "w600k_r50.onnx"),
             (lambda: alexnet_weights(str(tmp_path / "alexnet.pth")), "alexnet-owt-7be5be79.pth"),
             (lambda: detector(backend="tasks", task_file=str(tmp_path / "none.task")), "face_landmarker.task")]
    for call, name in cases:
        with pytest.raises(InputError, match=f"python -m palsysim models --fetch {name} downloads it"):
            call()


def test_models_and_the_demo_find_files_in_the_folders_extra_model_paths_yaml_declares(tmp_path):
    # A ComfyUI that keeps its ControlNets with an A1111 install, as its extra_model_paths.yaml says.
    comfy = tmp_path / "ComfyUI"
    (comfy / "comfy").mkdir(parents=True)
    (comfy / "main.py").write_text("")
    webui = tmp_path / "webui" / "models" / "ControlNet"
    webui.mkdir(parents=True)
    (webui / "control_sd15_canny.pth").write_bytes(b"a damaged download")
    (comfy / "extra_model_paths.yaml").write_text(
        "a111:\n    base_path: ../webui\n    controlnet: |\n        models/ControlNet\n        models/none\n")
    env = {k: v for k, v in os.environ.items() if k != "MODELS_DIR"}
    env.update(COMFYUI_DIR=str(comfy), TORCH_HOME=str(tmp_path / "torch"))
    r = subprocess.run([sys.executable, "-m", "palsysim", "models"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"and for controlnet: {webui}, {tmp_path / 'webui' / 'models' / 'none'} (extra_model_paths.yaml)" in r.stdout
    blocks = {b.split()[0]: b for b in r.stdout.split("\n\n")[1:]}
    assert f"found {webui / 'control_sd15_canny.pth'}" in blocks["control_sd15_canny.pth"], r.stdout
    assert "MISSING" in blocks["v1-5-pruned-emaonly.safetensors"]
    probe = "from palsysim.base.model_files import find_model; print(find_model('controlnet', 'control_sd15_canny.pth'))"
    r = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.stdout.strip() == str(webui / "control_sd15_canny.pth"), r.stdout + r.stderr  # what make demo looks for
