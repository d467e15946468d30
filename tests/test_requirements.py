"""What the pack asks of a host: loose requirements (the nodes' own, and the command-line apps' as extras) that
never downgrade a current ComfyUI environment; the registry's fields; one cv2 in the project's environments."""
import json
import os
import subprocess
import sys
import tomllib

import pytest

from requirement_files import requirement_lines

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELD = ("numpy", "protobuf", "opencv-python", "opencv-contrib-python")


EXTRAS = ("run", "study", "evaluate", "train")


def pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def test_pyproject_asks_what_requirements_txt_asks_with_lower_bounds_only():
    project = pyproject()
    assert project["project"]["dependencies"] == requirement_lines()
    # Each extra is also a requirements file with the same lines: the form a missing-extra message names.
    assert sorted(project["project"]["optional-dependencies"]) == sorted(EXTRAS)
    for extra in EXTRAS:
        assert project["project"]["optional-dependencies"][extra] == requirement_lines(f"requirements-{extra}.txt")
    for line in requirement_lines() + [line for e in EXTRAS for line in requirement_lines(f"requirements-{e}.txt")]:
        spec = line.split(";")[0]
        assert not any(op in spec for op in ("<", "==", "~=", "!=")), f"upper bound or pin: {line}"


def test_pyproject_carries_the_registrys_fields():
    project = pyproject()
    comfy = project["tool"]["comfy"]
    assert comfy["requires-comfyui"] == ">=0.3.75" and comfy["PublisherId"] and comfy["DisplayName"]
    assert project["project"]["version"].count(".") == 2
    urls = project["project"]["urls"]
    for key in ("Repository", "Documentation", "Issues"):
        assert urls[key].startswith("https://"), key
    # The icon the registry shows is a file of this repository, at the URL's path on its main branch.
    assert comfy["Icon"].startswith("https://raw.githubusercontent.com/") and "/main/" in comfy["Icon"]
    icon = os.path.join(ROOT, comfy["Icon"].split("/main/", 1)[1])
    assert open(icon, "rb").read(8) == b"\x89PNG\r\n\x1a\n", icon
    classifiers = project["project"]["classifiers"]
    # What the registry reads: operating systems and accelerators, from its fixed vocabulary.
    assert any(c.startswith("Operating System :: ") for c in classifiers)
    assert any(c.startswith("Environment :: GPU :: ") for c in classifiers)


def test_the_environment_has_one_cv2_distribution():
    """mediapipe needs opencv-contrib-python, insightface opencv-python: both write site-packages/cv2/, so
    the later one's files win over the other's. scripts/setup.sh keeps one."""
    import importlib.metadata
    assert importlib.metadata.packages_distributions()["cv2"] == ["opencv-contrib-python"]
    import cv2
    assert hasattr(cv2, "Canny") and hasattr(cv2, "face")  # the contrib build's own modules are there


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
                        "-r", os.path.join(ROOT, "requirements.txt"),
                        *[a for e in EXTRAS for a in ("-r", os.path.join(ROOT, f"requirements-{e}.txt"))]],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    plan = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.load(open(report))["install"]}
    assert {"mediapipe", "insightface", "krippendorff", "lpips"} <= set(plan)  # the resolver did plan the pack
    for name in HELD:
        if name in before:
            assert name not in plan, f"{name} {before[name]} would become {plan[name]}"
    assert installed(numpy2_env) == before  # a dry run
