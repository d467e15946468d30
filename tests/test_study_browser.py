"""The study web app in a real browser (Debian chromium + chromedriver, selenium), against the real
`python -m palsysim study serve` process. Screenshots of every page go to out/test-artifacts/study/."""
import csv
import http.server
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from host import free_port
from study_helpers import (HAS_CHROMIUM, assert_no_patient_names, chrome, hand_ordinal_alpha, hand_quadratic_kappa,
                           make_inputs)

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.skipif(not HAS_CHROMIUM,
                                reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS = os.path.join(ROOT, "out", "test-artifacts", "study")
CELLS = [(0, "rest"), (0, "grin"), (1, "grin")]  # x 2 methods = six generated images


def cli(*args):
    r = subprocess.run([sys.executable, "-m", "palsysim", "study", *args], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return r.stdout


def links(text):
    return re.findall(r"http://\S+/start/\S+", text)


class Server:
    def __init__(self, study, port):
        self.study, self.port, self.proc = study, port, None

    def start(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "palsysim", "study", "serve", self.study, "--port",
                                      str(self.port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                assert self.proc.poll() is None, self.proc.stdout.read().decode()
                time.sleep(0.2)
        raise AssertionError("the study server did not start")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


@pytest.fixture(scope="module")
def inputs(module_tmp):
    return make_inputs(str(module_tmp("inputs")), CELLS)


@pytest.fixture
def study(inputs, tmp_path):
    """(study folder, admin link, port, server) of a fresh six-image rating study, served."""
    port = free_port()
    out = str(tmp_path / "study")
    admin = links(cli("create", "--images", inputs[0], "--patients", inputs[1], "--out", out, "--seed", "3",
                      "--url", f"http://127.0.0.1:{port}"))[0]
    server = Server(out, port).start()
    yield out, admin, port, server
    if server.proc.poll() is None:
        server.proc.terminate()
        server.proc.wait()


@pytest.fixture
def browsers(tmp_path):
    made = []

    def make(width=1100, height=950):
        b = chrome(tmp_path / f"profile{len(made)}", width, height)
        made.append(b)
        return b
    yield make
    for b in made:
        b.quit()


def shot(browser, name):
    os.makedirs(ARTIFACTS, exist_ok=True)
    browser.save_screenshot(os.path.join(ARTIFACTS, name + ".png"))
    assert_no_patient_names(browser.page_source)
    for m in ("codc_window", "pf_baseline"):
        if "/admin" not in browser.current_url:
            assert m not in browser.page_source, "a method name reached a rater's page"


def position(browser):
    return int(re.search(r"/task/(\d+)", browser.current_url).group(1))


def current(browser):
    if not browser.find_elements(By.CSS_SELECTOR, "img[alt]"):
        raise AssertionError(browser.current_url + " " + browser.page_source[:1500])
    """(generated image id, criterion title) of the question on screen."""
    img = browser.find_element(By.CSS_SELECTOR, 'img[alt="Generated face"], img[alt="Image to score"]')
    return img.get_attribute("src").rsplit("/", 1)[1], browser.find_element(By.TAG_NAME, "h1").text


def go(browser, action):
    """Do action (a click or a key) and wait until the browser shows the page it leads to."""
    before = browser.current_url
    action()
    WebDriverWait(browser, 15).until(lambda b: b.current_url != before and b.execute_script(
        "return document.readyState") == "complete")


def key(browser, k):
    go(browser, lambda: browser.find_element(By.TAG_NAME, "body").send_keys(k))


def start(browser):
    go(browser, lambda: browser.find_element(By.LINK_TEXT, "Start").click())


def answer(browser, value, by_key):
    if by_key:
        key(browser, str(value))
    else:
        go(browser, lambda: browser.find_element(By.CSS_SELECTOR, f'button[value="{value}"]').click())


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def methods_of(folder):
    with sqlite3.connect(os.path.join(folder, "study.sqlite")) as c:
        return dict(c.execute("SELECT i.id, m.name FROM images i JOIN methods m ON m.id = i.method_id"))


KEYS = {"Naturalness": "naturalness", "Expression accuracy": "expression_accuracy",
        "Identity difference": "identity_difference"}


def test_rater_completes_six_image_study_by_mouse_and_keyboard(study, browsers, tmp_path):
    folder, admin_link, port, _ = study
    link = links(cli("invite", folder, "--raters", "1", "--url", f"http://127.0.0.1:{port}"))[0]
    b = browsers()
    b.get(link)
    shot(b, "01_welcome")
    start(b)
    given, seen = {}, []
    for k in range(18):
        image, title = current(b)
        if title not in {t for _, t in seen}:
            shot(b, f"02_question_{KEYS[title]}")
        seen.append((image, title))
        value = (k * 3) % 5 + 1
        given[(image, KEYS[title])] = value
        if k == 4:  # arrows: back one, the earlier answer is marked; forward again
            key(b, Keys.ARROW_LEFT)
            assert b.find_element(By.CSS_SELECTOR, "button.chosen").get_attribute("value") == str((3 * 3) % 5 + 1)
            key(b, Keys.ARROW_RIGHT)
        answer(b, value, by_key=k % 2 == 1)
    assert "/done" in b.current_url
    shot(b, "03_thank_you")
    assert len(given) == 18 and len({i for i, _ in seen}) == 6
    # naturalness is judged before the patient's photo is seen; the photo sits beside the others
    assert [t for _, t in seen[:6]] == ["Naturalness"] * 6

    b.set_window_size(820, 1180)  # a tablet, upright
    b.get(f"http://127.0.0.1:{port}/task/8")
    shot(b, "04_tablet_question")

    out = str(tmp_path / "results")
    cli("results", folder, "--out", out, "--bootstrap", "50")
    rows = read_csv(os.path.join(out, "answers.csv"))
    assert {(r["image"], r["criterion"]): int(r["value"]) for r in rows} == given
    method = methods_of(folder)
    for r in read_csv(os.path.join(out, "table1.csv")):
        values = [v for (i, c), v in given.items() if method[i] == r["method"] and c == r["criterion"]]
        assert int(r["n"]) == len(values) == 3
        assert float(r["mean"]) == pytest.approx(sum(values) / len(values))
    for name in os.listdir(out):
        with open(os.path.join(out, name), "rb") as f:
            assert_no_patient_names(f.read())
    for name in os.listdir(folder):
        if name.startswith("study.sqlite"):
            with open(os.path.join(folder, name), "rb") as f:
                assert_no_patient_names(f.read())

    b.get(admin_link)
    shot(b, "05_admin")
    b.find_element(By.LINK_TEXT, "Results so far").click()
    shot(b, "06_admin_results")
    assert "Table I" in b.page_source


def test_two_raters_in_parallel_and_alpha_equals_hand_computation(study, browsers, tmp_path):
    folder, _, port, _ = study
    la, lb = links(cli("invite", folder, "--raters", "2", "--url", f"http://127.0.0.1:{port}"))
    a, b = browsers(), browsers()
    for br, link in ((a, la), (b, lb)):
        br.get(link)
        start(br)
    ids = sorted(methods_of(folder))
    plan = {"a": {}, "b": {}}

    def value(who, image, criterion):
        base = (ids.index(image) + list(KEYS.values()).index(criterion)) % 5 + 1
        return base if who == "a" else min(5, base + (ids.index(image) % 2))
    orders = {"a": [], "b": []}
    for k in range(18):  # interleaved: each rater's answer lands between the other's
        for who, br in (("a", a), ("b", b)):
            image, title = current(br)
            orders[who].append((image, KEYS[title]))
            plan[who][(image, KEYS[title])] = value(who, image, KEYS[title])
            answer(br, plan[who][(image, KEYS[title])], by_key=who == "a")
    assert orders["a"] != orders["b"], "each rater gets their own order"
    with sqlite3.connect(os.path.join(folder, "study.sqlite")) as c:
        recorded = [list(c.execute("SELECT image_id, criterion FROM tasks WHERE rater_id = ? ORDER BY position",
                                   (r,))) for r in (1, 2)]
    assert [list(map(tuple, o)) for o in recorded] == [orders["a"], orders["b"]]

    out = str(tmp_path / "results")
    cli("results", folder, "--out", out, "--bootstrap", "200")
    alphas = {r["criterion"]: r for r in read_csv(os.path.join(out, "alpha.csv"))}
    for c in KEYS.values():
        imgs = sorted({i for i, cc in plan["a"] if cc == c})
        hand = hand_ordinal_alpha([[plan[w][(i, c)] for i in imgs] for w in ("a", "b")])
        assert float(alphas[c]["alpha"]) == pytest.approx(hand, abs=1e-9)
        assert float(alphas[c]["low"]) <= float(alphas[c]["high"])
    assert os.path.getsize(os.path.join(out, "boxplots.png")) > 0


def test_server_killed_mid_study_loses_no_saved_answer(study, browsers):
    folder, _, port, server = study
    link = links(cli("invite", folder, "--raters", "1", "--url", f"http://127.0.0.1:{port}"))[0]
    b = browsers()
    b.get(link)
    start(b)
    given = {}
    for k in range(7):
        given[position(b)] = k % 5 + 1
        answer(b, k % 5 + 1, by_key=True)
    server.kill()
    server.start()
    b.get(f"http://127.0.0.1:{port}/")
    shot(b, "07_resume")
    assert "Continue with question 8" in b.page_source
    for p, v in given.items():
        b.get(f"http://127.0.0.1:{port}/task/{p}")
        assert b.find_element(By.CSS_SELECTOR, "button.chosen").get_attribute("value") == str(v)
    with sqlite3.connect(os.path.join(folder, "study.sqlite")) as c:
        assert dict(c.execute("SELECT position, value FROM answers")) == given


def _request(url, data=None, cookie=None, headers=None):
    req = urllib.request.Request(url, data=data, headers={**({"Cookie": cookie} if cookie else {}), **(headers or {})})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as ex:
        return ex.code, ex.read()


def _session(link):
    """A link -> the session cookie its /start answer sets (followed by hand, without redirects)."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None
    try:
        urllib.request.build_opener(NoRedirect).open(link)
    except urllib.error.HTTPError as ex:
        return ex.headers["Set-Cookie"].split(";")[0]
    raise AssertionError("no redirect")


def test_refused_requests(study, browsers, tmp_path):
    folder, admin_link, port, _ = study
    base = f"http://127.0.0.1:{port}"
    la, lb = links(cli("invite", folder, "--raters", "2", "--url", base))
    ca, cb = _session(la), _session(lb)
    with sqlite3.connect(os.path.join(folder, "study.sqlite")) as c:
        image = c.execute("SELECT id FROM images LIMIT 1").fetchone()[0]

    def answers():
        with sqlite3.connect(os.path.join(folder, "study.sqlite")) as c:
            return c.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
    # no token
    for path in ("/", "/task/1", f"/img/{image}", "/admin", "/admin/results", "/done"):
        assert _request(base + path)[0] == 403, path
    assert _request(base + "/start/not-a-token")[0] == 403
    assert _request(base + "/task/1", data=b"value=3&csrf=x")[0] == 403
    # another rater's token: a rater is no admin, and rater A's form field does not pass for rater B
    assert _request(base + "/admin", cookie=ca)[0] == 403
    b = browsers()
    b.get(la)
    b.get(base + "/task/1")
    csrf_a = b.find_element(By.NAME, "csrf").get_attribute("value")
    status, _ = _request(base + "/task/1", data=f"value=3&csrf={csrf_a}".encode(), cookie=cb,
                         headers={"Sec-Fetch-Site": "same-origin"})
    assert status == 403 and answers() == 0
    # B answers; A's pages never show it
    status, _ = _request(base + "/task/1", data=f"value=5&csrf={csrf_a}".encode(), cookie=ca)
    assert status == 200 and answers() == 1  # A's own, via its own field (redirect followed to /task/2)
    b.get(base + "/task/1")
    page_b = _request(base + "/task/1", cookie=cb)[1].decode()
    assert "class=chosen" not in page_b
    assert "class=chosen" in _request(base + "/task/1", cookie=ca)[1].decode()
    # traversal in an image id
    for bad in ("../study.sqlite", "..%2Fstudy.sqlite", "%2e%2e%2fstudy.sqlite", f"{image}.png",
                "..%2F..%2F..%2Fetc%2Fpasswd", f"{image}%00", image.upper()):
        status, body = _request(f"{base}/img/{bad}", cookie=ca)
        assert status in (403, 404), bad
        assert b"SQLite format" not in body and b"root:" not in body
    assert _request(f"{base}/img/{image}", cookie=ca)[0] == 200
    # DNS rebinding: a foreign Host header
    assert _request(base + "/", cookie=ca, headers={"Host": "evil.example"})[0] == 421
    # a cross-site POST: another origin's page submits a form to the study in A's browser
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "index.html").write_text(f'<form id=f method=post action="{base}/task/2"><input name=value value=1>'
                                     f'<input name=csrf value="{csrf_a}"></form><script>f.submit()</script>')
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(evil))  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        b.get(f"http://127.0.0.1:{httpd.server_address[1]}/index.html")
        WebDriverWait(b, 15).until(lambda br: f":{port}/task/2" in br.current_url
                                   and "did not come from this study" in br.page_source)
        shot(b, "08_refused_cross_site")
    finally:
        httpd.shutdown()
    assert answers() == 1
    b.get(base + "/admin")
    shot(b, "09_refused_admin_for_rater")


def test_trainer_three_images_kappa(inputs, browsers, tmp_path):
    gen, patients = make_inputs(str(tmp_path / "in"), CELLS, methods=("codc_window",))
    port, folder = free_port(), str(tmp_path / "trainer")
    base = f"http://127.0.0.1:{port}"
    admin = links(cli("create", "--images", gen, "--patients", patients, "--mode", "trainer", "--out", folder,
                      "--url", base))[0]
    trainee = links(cli("invite", folder, "--raters", "1", "--url", base))[0]
    server = Server(folder, port).start()
    try:
        t = browsers()
        t.get(trainee)
        shot(t, "10_trainer_waiting")
        assert "Not ready yet" in t.page_source
        a = browsers(1100, 1300)
        a.get(admin)
        a.find_element(By.LINK_TEXT, "Reference scores").click()
        reference = {("1", "rest"): 4, ("1", "grin"): 2, ("2", "grin"): 0}
        for (p, item), s in reference.items():
            a.find_element(By.CSS_SELECTOR, f'select[name="{p}:{item}"] option[value="{s}"]').click()
        a.find_element(By.XPATH, "//button[text()='Save all scores']").click()
        shot(a, "11_admin_reference")
        assert "Saved." in a.page_source
        with sqlite3.connect(os.path.join(folder, "study.sqlite")) as c:
            item_of = dict(c.execute("SELECT i.id, p.label || ':' || i.expression FROM images i "
                                     "JOIN patients p ON p.id = i.patient_id"))
        trainee_scores = {"patient 1:rest": 4, "patient 1:grin": 4, "patient 2:grin": 0}
        t.get(base + "/")
        start(t)
        got = []
        for k in range(3):
            image, _ = current(t)
            if k == 0:
                shot(t, "12_trainee_item")
            s = trainee_scores[item_of[image]]
            answer(t, s, by_key=k != 1)
            assert "/feedback" in t.current_url
            if k == 0:
                shot(t, "13_trainee_feedback")
            ref = reference[(item_of[image].split(":")[0].split()[1], item_of[image].split(":")[1])]
            assert f"Reference: <b>{ref}</b>" in t.page_source
            got.append((ref, s))
            key(t, Keys.ARROW_RIGHT)
        assert "/done" in t.current_url
        shot(t, "14_trainee_results")
        hand = hand_quadratic_kappa([r for r, _ in got], [s for _, s in got])
        assert f"{hand:.2f}" in t.page_source
        out = str(tmp_path / "results")
        cli("results", folder, "--out", out)
        rows = {r["item"]: r for r in read_csv(os.path.join(out, "trainees.csv"))}
        assert float(rows["all"]["kappa"]) == pytest.approx(hand)
        assert float(rows["grin"]["kappa"]) == pytest.approx(hand_quadratic_kappa([2, 0], [4, 0]))
        totals = read_csv(os.path.join(out, "totals.csv"))
        assert sorted(int(r["difference"]) for r in totals) == [0, 2]  # patient 2: 0-0; patient 1: (4+4)-(4+2)
        a.get(base + "/admin/results")
        shot(a, "15_admin_trainer_results")
    finally:
        server.proc.terminate()
        server.proc.wait()
