"""`make demo`'s identity numbers: real same-person and different-person distances, no download."""
import os
import re
import subprocess
import sys

import pytest

from palsysim.identity import dlib_face as identity_dlib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(identity_dlib.unavailable() is not None, reason=str(identity_dlib.unavailable()))
def test_demo_reports_the_synthetic_patient_recognisable_and_the_donor_not(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MODELS_DIR"}
    proc = subprocess.run([sys.executable, "-m", "palsysim", "demo", "--out", str(tmp_path), "--backend", "dlib"],
                          cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (tmp_path / "identity.md").read_text()
    assert text in proc.stdout
    same = re.search(r"\| grace_hopper vs patient_left_palsy \(same person\) \| n/a \| ([0-9.]+) \| yes \|", text)
    other = re.search(r"\| grace_hopper vs astronaut donor \(different person\) \| n/a \| ([0-9.]+) \| no \|", text)
    assert same and other, text
    assert float(same.group(1)) < 0.6 < float(other.group(1))


def test_the_demo_names_the_images_the_gate_held_back_and_why(host, tmp_path):
    # The demo reads what the runner's manifest says of its jobs; tiny models draw noise, which has no face,
    # so the gate (dlib, no ArcFace file) holds the image back, and the demo's table says so rather than
    # printing an empty table.
    from runner_helpers import api, make_patients, run_runner

    from palsysim.demo import held_back
    out = tmp_path / "generated"
    r = run_runner(api("palsy_pf"), host.url, make_patients(tmp_path / "p", ["rest"]), out, "--seeds", "1",
                   "--identities", "a man")
    assert r.returncode == 0, r.stdout + r.stderr
    assert held_back(str(out)) == {"a man": "held back by the privacy gate: 0 of 1 passed, 1 held back (1 with no "
                                            "face: its identity cannot be checked). Nothing goes on: the nodes fed "
                                            "by the gate's images (the save) do not run."}
