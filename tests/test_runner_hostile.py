"""The headless runner leaves nothing of a patient on the servers it used: private real servers are
run on, one of two is killed mid-run (and started again for the check), and every byte of every file
under each server's folders, and its /history, is searched for the patient's photos, pixels and
names. And the summary counts what the privacy gate held back."""
import json
import os
import re
import subprocess
import sys
import uuid

import numpy as np
import requests
from host import start_host
from PIL import Image
from runner_helpers import (NO_ARCFACE, PATIENT, REPO, api, kill_mid_run, make_patients, own_server, pngs, queued,
                            run_runner, runner_cmd)

from palsysim.base.vocabulary import ITEMS
from palsysim.comfy.plan import content_name, photo_png

EXPRESSIONS = ["rest", "grin"]


def patient_secrets(patients, patient):
    """{what: bytes} that must not be found on a server: the patient's name and folder, each photo's
    file name, bytes, pixels, the PNG the runner uploads and the name it is uploaded under."""
    secrets = {"patient name": patient.encode(), "patients folder": str(patients).encode()}
    for f in sorted(os.listdir(patients / patient)):
        path = str(patients / patient / f)
        data, upload = open(path, "rb").read(), photo_png(path)
        pixels = np.asarray(Image.open(path).convert("RGB"))
        secrets.update({f"{f}: file name": f.encode(), f"{f}: file bytes": data[len(data) // 2:][:256],
                        f"{f}: uploaded PNG": upload[len(upload) // 2:][:256],
                        f"{f}: upload name": content_name(upload)[:-4].encode(),
                        f"{f}: pixel row": pixels[pixels.shape[0] // 2, 20:120].tobytes()})
    return secrets


def server_files(server):
    """{path: bytes} of every file under the server's folders (its models, which runs only read, aside)."""
    root = os.path.dirname(server.input_dir)
    files = {}
    for d, dirs, fs in os.walk(root):
        dirs[:] = [x for x in dirs if os.path.join(d, x) != server.models_dir]
        for f in fs:
            files[os.path.join(d, f)] = open(os.path.join(d, f), "rb").read()
    return files


def found_on(server, secrets):
    """Where on the server (file or /history) any secret is found."""
    places = dict(server_files(server))
    places[f"{server.url}/history"] = requests.get(server.url + "/history", timeout=30).content
    return [f"{what} in {where}" for where, data in places.items() for what, s in secrets.items() if s in data]


def new_patient(tmp_path):
    patient = f"zq_hostile_{uuid.uuid4().hex[:10]}"
    patients = make_patients(tmp_path / "p", EXPRESSIONS, patient=patient, size=236, ext=".jpg")
    return patients, patient


def test_a_run_leaves_on_its_server_only_its_anonymized_saves(host, tmp_path):
    server = own_server(host, tmp_path / "server")
    try:
        server.wait_ready()
        before = server_files(server)
        patients, patient = new_patient(tmp_path)
        out = tmp_path / "out"
        r = run_runner(api("palsy_pf"), server.url, patients, out, *NO_ARCFACE, "--seeds", "7901", "7902")
        assert r.returncode == 0, r.stdout + r.stderr
        assert len(pngs(out)) == 4
        saved = {open(p, "rb").read() for p in pngs(out)}
        # Nothing new on the server but the images the runner saved there and fetched: no preview
        # in temp/, no upload in input/ (the server's log aside).
        new = {p: data for p, data in server_files(server).items() if before.get(p) != data
               and p != server.log_path}
        assert all(os.path.commonpath([p, server.output_dir]) == server.output_dir for p in new), sorted(new)
        assert set(new.values()) == saved
        assert requests.get(server.url + "/history", timeout=30).json() == {}  # no entry names a file
        assert not found_on(server, patient_secrets(patients, patient))
    finally:
        server.stop()


def test_a_server_lost_mid_run_is_named_with_what_it_kept_and_holds_nothing_once_restarted(host, tmp_path):
    a, b = own_server(host, tmp_path / "a"), own_server(host, tmp_path / "b")
    try:
        a.wait_ready(), b.wait_ready()
        patients, patient = new_patient(tmp_path)
        out = tmp_path / "out"
        cmd = runner_cmd(api("palsy_pf"), a.url, patients, out, *NO_ARCFACE, "--server", b.url,
                         "--seeds", *[str(s) for s in range(7911, 7917)])
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        uploads = os.path.join(b.input_dir, "palsysim")
        # Killed once it holds our photo and a prompt of ours.
        stdout, stderr = kill_mid_run(proc, b, lambda: any(fs for _, _, fs in os.walk(uploads)) and queued(b))
        assert proc.returncode == 0, stdout + stderr
        assert len(pngs(out)) == 12  # every job finished on A
        left = os.listdir(uploads)
        assert len(left) == 1 and os.listdir(os.path.join(uploads, left[0]))  # the photo B still holds
        said = [line for line in stderr.splitlines() if f"input/palsysim/{left[0]}/" in line]
        assert said and b.url in said[0], stderr

        b = start_host(os.path.dirname(b.input_dir), port=int(b.url.rsplit(":", 1)[1]))  # as a user restarts it
        assert not any(fs for _, _, fs in os.walk(b.input_dir)), "the restarted server kept the photos"
        secrets = patient_secrets(patients, patient)
        assert not found_on(a, secrets) + found_on(b, secrets)
    finally:
        a.stop(), b.stop()


def test_the_summary_counts_every_grid_image_the_gate_held_back(host, tmp_path):
    # Tiny models draw noise, which has no face: the gate (dlib, without an ArcFace file) holds back
    # all 3 identities x 10 items; the sheet of grey tiles is still saved.
    patients = make_patients(tmp_path / "p", ITEMS)
    out = tmp_path / "out"
    r = run_runner(api("palsy_yanagihara_grid"), host.url, patients, out, "--seeds", "7920")
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"\b30 image\(s\) held back by the privacy gate", r.stdout), r.stdout
    job, = json.loads((out / "manifest.json").read_text())["jobs"].values()
    assert job["held_back"] == 30 and job["images"] == [f"{job['patient']}/grid_7920.png"]
    # The report the graph shows names each identity's outcome, first lines first.
    held = "0 of 10 passed, 10 held back (10 with no face: their identity cannot be checked). Nothing goes on"
    first = job["reports"]["gate report"].splitlines()[:4]
    assert first[3] == "" and all(line.startswith(f"- {who}: {held}")
                                  for line, who in zip(first, ("a man", "a woman", "an elderly woman"))), first


HIDE_LINUX_ONLY = '''
import ctypes, sys

class _NoFcntl:
    def find_spec(self, name, path=None, target=None):
        if name == "fcntl":
            raise ImportError("no module named 'fcntl' (hidden by the test)")

sys.modules.pop("fcntl", None)
sys.meta_path.insert(0, _NoFcntl())

class _NoPrctl(ctypes.CDLL):
    def __getattr__(self, name):
        if name == "prctl":
            raise AttributeError(name)
        return super().__getattr__(name)

ctypes.CDLL = _NoPrctl
print("fcntl and prctl hidden", file=sys.stderr)
'''


def test_without_fcntl_and_prctl_the_nodes_register_and_the_runner_says_what_needs_them(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(HIDE_LINUX_ONLY)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), REPO]))
    probe = subprocess.run([sys.executable, "-c", "import palsysim.runner, palsysim.comfy.host as r; import fcntl"], cwd=REPO,
                           capture_output=True, text=True)
    assert "hidden by the test" in probe.stderr, probe.stderr  # the hiding works
    probe = subprocess.run([sys.executable, "-c", "import palsysim.runner, palsysim.comfy.host as r; print(r.die_with_parent)"],
                           cwd=REPO, capture_output=True, text=True)
    assert probe.returncode == 0 and probe.stdout.strip() == "None", probe.stdout + probe.stderr

    patients = make_patients(tmp_path / "p", ["rest"])
    r = subprocess.run([sys.executable, "-m", "palsysim", "run", api("palsy_pf"), "--embedded", "--patients",
                        str(patients), "--out", str(tmp_path / "out"), "--quiet"], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2 and "--embedded needs POSIX file locks (fcntl)" in r.stderr, r.stdout + r.stderr
    assert "--server URL" in r.stderr and "Traceback" not in r.stderr

    server = start_host(str(tmp_path / "server"))
    try:
        assert "fcntl and prctl hidden" in server.log()
        names = set(server.object_info())
        assert {"PalsyFaceLandmarks", "PalsyPrivacyGate", "PalsySaveAnonymized", "PalsyPreview"} <= names
        assert requests.post(server.url + "/palsysim/uploads/delete", json={}).status_code == 400  # its route too
    finally:
        server.stop()


def test_an_oversized_photo_is_named_before_any_server_starts(tmp_path):
    """The runner decodes uploads with the one photo reader: a 40000x40000 PNG header (a decompression
    bomb) is refused by name with the limit, before a server is reached (the URL here answers nothing)."""
    import struct
    import zlib
    patients = make_patients(tmp_path / "p", EXPRESSIONS, size=236)
    bomb = next(p for p in (patients / PATIENT).iterdir() if p.stem == "grin")

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))
    r = run_runner(api("palsy_pf"), "http://127.0.0.1:9", patients, tmp_path / "out", timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "grin.png is 1,600,000,000 pixels, over the 80,000,000" in r.stderr and "Traceback" not in r.stderr
    assert "127.0.0.1:9" not in r.stderr and not (tmp_path / "out").exists()
