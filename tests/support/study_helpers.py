"""Inputs for the study tests: real face photographs with synthetic palsy (no tests in this file).

Patient folders carry a name a real clinic might use (PATIENT_NAMES): the tests check it never
reaches the study's database, a page or an export. The generated images carry it in a PNG text
chunk too, as ComfyUI's workflow metadata would.
"""
import contextlib
import os
import re
import socket
import subprocess
import sys
import time

import requests
from PIL import Image, PngImagePlugin

from palsysim.base.paths import REPO as ROOT

PATIENT_NAMES = ("Doe_Jane_MRN4711", "Roe_Rich_MRN0815")
METHODS = ("codc_window", "pf_baseline")


def _faces():
    from real_faces import photos

    from palsysim.face.landmarks import face_landmarks
    out = {}
    for name, image in photos().items():
        out[name] = (image, face_landmarks(image, what=name))
    return out


def _save(path, image, secret=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    info = PngImagePlugin.PngInfo()
    if secret:
        info.add_text("prompt", secret)
    Image.fromarray(image).save(path, pnginfo=info)


def make_inputs(root, cells, methods=METHODS):
    """Write root/patients/<name>/<item>.png and root/generated/<method>/<name>/<item>/<stem>.png.

    cells: [(patient index, item)] per method; sources: grace_hopper (patient 0) and astronaut (patient 1)
    with a synthetic left palsy doing the item; generated: Tom Hanks / the other photo doing it with a
    method-specific severity. Returns (images dir, patients dir).
    """
    from palsysim.face.synth import synth_expression
    faces = _faces()
    who = ("grace_hopper", "astronaut")
    for p, item in {c for c in cells}:
        image, face = faces[who[p]]
        _save(os.path.join(root, "patients", PATIENT_NAMES[p], item + ".png"),
              synth_expression(image, face, item, "left", 0.7)[0])
    for m, method in enumerate(methods):
        for p, item in cells:
            donor = ("tom_hanks", "astronaut", "grace_hopper")[(p + m + 1) % 3]
            image, face = faces[donor]
            path = os.path.join(root, "patients", PATIENT_NAMES[p], item + ".png")
            _save(os.path.join(root, "generated", method, PATIENT_NAMES[p], item, "a_man_7.png"),
                  synth_expression(image, face, item, "left", 0.3 + 0.4 * m)[0], secret=path)
    return os.path.join(root, "generated"), os.path.join(root, "patients")


VIDEO_FRAMES, VIDEO_FPS = 12, 12.0  # one second: rest -> grin -> rest


def make_video_inputs(root, methods=METHODS[:1]):
    """A study's inputs with videos (issue 26): patient 0 (PATIENT_NAMES[0]) has grin.mp4, Grace Hopper's real face
    grinning with a left palsy, its container tagged with the patient's name and path, beside a rest.png; each
    method's generated tree holds the runner's video job output <name>/grin/a_man_7.mp4 (another real face, the
    same grin) and a rest image <name>/rest/a_man_7.png. Returns (images dir, patients dir)."""
    from real_faces import write_expression_video

    from palsysim.face.synth import synth_expression
    faces = _faces()
    patient = os.path.join(root, "patients", PATIENT_NAMES[0])
    os.makedirs(patient)
    write_expression_video(os.path.join(patient, "grin.mp4"), VIDEO_FRAMES, fps=VIDEO_FPS,
                           tag=os.path.join(patient, "grin.mp4"))
    _save(os.path.join(patient, "rest.png"), synth_expression(*faces["grace_hopper"], "rest", "left", 0.7)[0])
    for m, method in enumerate(methods):
        out = os.path.join(root, "generated", method, PATIENT_NAMES[0])
        os.makedirs(os.path.join(out, "grin"))
        write_expression_video(os.path.join(out, "grin", "a_man_7.mp4"), VIDEO_FRAMES, fps=VIDEO_FPS,
                               who=("astronaut", "tom_hanks")[m % 2])
        _save(os.path.join(out, "rest", "a_man_7.png"),
              synth_expression(*faces["astronaut"], "rest", "left", 0.3 + 0.4 * m)[0], secret=patient)
    return os.path.join(root, "generated"), os.path.join(root, "patients")


def assert_no_patient_names(text):
    """No patient folder name nor any file-system path of the inputs in text (bytes or str)."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    for name in PATIENT_NAMES:
        assert name not in text, f"patient folder name {name} leaked"
        assert name.split("_")[0] not in text, f"patient surname from {name} leaked"
    assert not re.search(r"/(tmp|work)/", text), "a file-system path leaked"


def hand_ordinal_alpha(data):
    """Krippendorff's alpha, ordinal, by the coincidence-matrix formulas (Krippendorff 2011), for
    data = [[value or None per unit] per rater]."""
    values = sorted({v for row in data for v in row if v is not None})
    o = {(c, k): 0.0 for c in values for k in values}
    for u in range(len(data[0])):
        vs = [row[u] for row in data if row[u] is not None]
        m = len(vs)
        if m < 2:
            continue
        for i, a in enumerate(vs):
            for j, b in enumerate(vs):
                if i != j:
                    o[(a, b)] += 1.0 / (m - 1)
    n_c = {c: sum(o[(c, k)] for k in values) for c in values}
    n = sum(n_c.values())

    def delta(c, k):
        lo, hi = sorted((values.index(c), values.index(k)))
        return (sum(n_c[values[g]] for g in range(lo, hi + 1)) - (n_c[c] + n_c[k]) / 2) ** 2
    observed = sum(o[(c, k)] * delta(c, k) for c in values for k in values)
    expected = sum(n_c[c] * n_c[k] * delta(c, k) for c in values for k in values)
    return 1 - (n - 1) * observed / expected


def hand_quadratic_kappa(reference, scores, labels=(0, 2, 4)):
    """Cohen's kappa with quadratic weights, from the observed and chance agreement tables."""
    k, n = len(labels), len(reference)
    obs = [[0.0] * k for _ in labels]
    for a, b in zip(reference, scores):
        obs[labels.index(a)][labels.index(b)] += 1
    rows = [sum(r) for r in obs]
    cols = [sum(obs[i][j] for i in range(k)) for j in range(k)]
    w = [[(i - j) ** 2 / (k - 1) ** 2 for j in range(k)] for i in range(k)]
    observed = sum(w[i][j] * obs[i][j] for i in range(k) for j in range(k))
    expected = sum(w[i][j] * rows[i] * cols[j] / n for i in range(k) for j in range(k))
    return 1 - observed / expected


# --- the study's command line and server, as a user runs them ---------------------------------------

def study_cli(*args):
    return subprocess.run([sys.executable, "-m", "palsysim", "study", *args], capture_output=True, text=True,
                          cwd=ROOT)


def created(inputs, out, *more):
    """A new study folder from inputs; returns its admin token."""
    r = study_cli("create", "--images", inputs[0], "--patients", inputs[1], "--out", out, *more)
    assert r.returncode == 0, r.stderr
    return re.search(r"/start/(\S+)", r.stdout).group(1)


def invited(study):
    """One new rater's token for the study folder."""
    r = study_cli("invite", study, "--raters", "1")
    assert r.returncode == 0, r.stderr
    return re.search(r"/start/(\S+)", r.stdout).group(1)


class Served:
    """`python -m palsysim study serve` on a free loopback port, stopped on exit."""

    def __init__(self, folder):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "palsysim", "study", "serve", folder, "--port",
                                      str(self.port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def __enter__(self):
        deadline = time.time() + 60
        while time.time() < deadline:
            assert self.proc.poll() is None, self.proc.stdout.read().decode()
            try:
                requests.get(self.url + "/", timeout=2)
                return self
            except requests.ConnectionError:
                time.sleep(0.2)
        raise AssertionError("the study server did not start")

    def __exit__(self, *_):
        self.proc.terminate()
        self.proc.wait(timeout=30)

    def session(self, token):
        s = requests.Session()
        r = s.get(f"{self.url}/start/{token}", allow_redirects=False, timeout=10)
        assert r.status_code == 303, r.status_code
        return s


def csrf_of(session, url):
    return re.search(r'name="csrf" value="(\w+)"', session.get(url, timeout=10).text).group(1)


@contextlib.contextmanager
def served_rater(inputs, folder, *create_args):
    """A new study in folder with one invited rater, served: yields (server, the rater's requests session,
    the rater's token, the admin token)."""
    admin = created(inputs, folder, *create_args)
    token = invited(folder)
    with Served(folder) as server:
        yield server, server.session(token), token, admin


# --- a real browser: Debian's chromium and chromedriver, driven by selenium ---------------------------

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
HAS_CHROMIUM = os.path.exists(CHROMIUM) and os.path.exists(DRIVER)


def chrome(profile, width=1100, height=950):
    """A headless chromium with its own profile folder (no state shared between tests)."""
    from selenium import webdriver
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
              f"--window-size={width},{height}"):
        opts.add_argument(a)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=opts)
