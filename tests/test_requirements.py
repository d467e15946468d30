"""What the pack asks of a host: loose requirements that never downgrade a current ComfyUI environment."""
import json
import os
import subprocess
import sys
import tomllib

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELD = ("numpy", "protobuf", "opencv-python", "opencv-contrib-python")


def requirement_lines():
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def test_pyproject_asks_what_requirements_txt_asks_with_lower_bounds_only():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)
    assert project["project"]["dependencies"] == requirement_lines()
    for line in requirement_lines():
        spec = line.split(";")[0]
        assert not any(op in spec for op in ("<", "==", "~=", "!=")), f"upper bound or pin: {line}"
    comfy = project["tool"]["comfy"]
    assert comfy["requires-comfyui"] == ">=0.3.75" and comfy["PublisherId"]
    assert project["project"]["urls"]["Repository"] and project["project"]["version"].count(".") == 2
    assert comfy.get("Icon", "https://").startswith("https://")  # a real URL or none, never ""


@pytest.fixture(scope="module")
def numpy2_env(module_tmp):
    """A fresh venv standing in for a current ComfyUI: numpy 2, protobuf 5+, the newest opencv."""
    env = module_tmp("numpy2_env")
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    python = str(env / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", "numpy>=2", "protobuf>=5", "opencv-python"],
                   check=True, capture_output=True)
    return python


def installed(python):
    out = subprocess.run([python, "-m", "pip", "list", "--format", "json"], check=True,
                         capture_output=True, text=True).stdout
    return {p["name"].lower(): p["version"] for p in json.loads(out)}


def test_installing_the_pack_into_a_numpy2_environment_changes_no_numpy_protobuf_or_opencv(numpy2_env, tmp_path):
    before = installed(numpy2_env)
    assert int(before["numpy"].split(".")[0]) >= 2 and int(before["protobuf"].split(".")[0]) >= 5
    report = tmp_path / "plan.json"
    r = subprocess.run([numpy2_env, "-m", "pip", "install", "--dry-run", "--quiet", "--report", str(report),
                        "-r", os.path.join(ROOT, "requirements.txt")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    plan = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.load(open(report))["install"]}
    assert "mediapipe" in plan and "insightface" in plan  # the resolver did plan the pack
    for name in HELD:
        if name in before:
            assert name not in plan, f"{name} {before[name]} would become {plan[name]}"
    assert installed(numpy2_env) == before  # a dry run
