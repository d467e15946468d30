"""README's run -> evaluate sequence, verbatim: the runner (embedded ComfyUI, tiny models), then evaluate on its output."""
import csv
import os
import shlex
import subprocess
import sys

import pytest
from runner_helpers import NO_ARCFACE, PATIENT, REPO, TINY, make_patients, pngs

from palsysim.identity import dlib_face as identity_dlib


def readme_lines(*starts):
    lines = [line.strip() for line in open(os.path.join(REPO, "README.md"), encoding="utf-8")]
    return [next(line for line in lines if line.startswith(s)) for s in starts]


@pytest.mark.skipif(identity_dlib.unavailable() is not None, reason=str(identity_dlib.unavailable()))
def test_readme_run_then_evaluate_works_verbatim(host, tmp_path):
    run, evaluate = readme_lines(".venv/bin/python -m palsysim run workflows/api/palsy_pf.json",
                                 ".venv/bin/python -m palsysim evaluate --patients PATIENTS --generated pf=OUT_PF")
    make_patients(str(tmp_path / "PATIENTS"), ["rest", "grin"])
    os.symlink(os.path.join(REPO, "workflows"), tmp_path / "workflows")  # README's paths are the checkout's

    def argv(line, *extra):
        words = shlex.split(line)
        assert words[0] == ".venv/bin/python"
        return [sys.executable, *words[1:], *extra]

    # The tiny models sample noise, not faces: the gate would hold every image back, so it is bypassed
    # (README's own --bypass option) and the tiny models replace the shipped names.
    proc = subprocess.run(argv(run, "--models-dir", host.models_dir, "--quiet", *TINY, *NO_ARCFACE), cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": REPO})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    made = pngs(tmp_path / "OUT_PF")
    assert sorted(os.path.relpath(p, tmp_path / "OUT_PF") for p in made) == [
        f"{PATIENT}/grin/a_man_1.png", f"{PATIENT}/rest/a_man_1.png"]

    proc = subprocess.run(argv(evaluate), cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": REPO})
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / "evaluation" / "metrics.csv", newline="") as fh:
        (row,) = csv.DictReader(fh)
    # both images were read from the runner's layout; the noise images have no face: listed, not a crash
    assert row["method"] == "pf" and int(row["skipped"]) == 2 and int(row["images"]) == 0
    report = (tmp_path / "evaluation" / "report.md").read_text()
    assert "| pf | patient 1, grin, image 1 | no face found |" in report
    assert "| pf | patient 1, rest, image 2 | no face found |" in report
    assert PATIENT not in report
