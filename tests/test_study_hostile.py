"""The study commands and the study server under hostile input (issue 29): nothing the study did not write
is deleted or overwritten, a revoked admin link stops at once, malformed requests get a 400 with the
database untouched, and a decompression-bomb photo gets a message. Real photos, real `python -m palsysim
study` processes, real HTTP."""
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import requests
from hostile_files import png_claiming
from study_helpers import Served, created, csrf_of, make_inputs, served_rater, study_cli

from palsysim.base.photos import read_image, write_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def refused(r, *names):
    """A CLI run that refused with exit 2, a one-line message naming each of names, no traceback."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    for name in names:
        assert name in r.stderr, (name, r.stderr)


def database(folder):
    """Every row of the study's database, as SQL text (the server may hold it open: WAL readers see commits)."""
    with sqlite3.connect(os.path.join(folder, "study.sqlite")) as c:
        return list(c.iterdump())


@pytest.fixture(scope="module")
def inputs(module_tmp):
    return make_inputs(str(module_tmp("inputs")), [(0, "rest"), (1, "grin")], methods=("codc_window",))


# --- outputs: nothing deleted or overwritten that the study did not write --------------------------

def test_create_keeps_a_users_file_in_the_partial_folder(inputs, tmp_path):
    out = str(tmp_path / "S")
    os.makedirs(out + ".partial")
    note = os.path.join(out + ".partial", "notes.txt")
    with open(note, "w") as f:
        f.write("my notes")
    refused(study_cli("create", "--images", inputs[0], "--patients", inputs[1], "--out", out), out + ".partial")
    with open(note) as f:
        assert f.read() == "my notes"
    assert not os.path.exists(out)


def test_create_removes_only_its_own_leftovers(inputs, tmp_path):
    """A create killed midway leaves S.partial; the next create removes it, unless a user's file is in it."""
    images = tmp_path / "many"
    for k in range(60):  # enough images that the kill lands while the copies are being written
        tree = os.path.join(inputs[0], "codc_window")
        for d, _, files in os.walk(tree):
            for f in files:  # each method's own pixels: identical images in two methods are refused
                image = read_image(os.path.join(d, f)).copy()
                image[0, 0] = (k, k, k)
                write_image(str(images / f"m{k}" / os.path.relpath(os.path.join(d, f), tree)), image)
    out = str(tmp_path / "S")
    p = subprocess.Popen([sys.executable, "-m", "palsysim", "study", "create", "--images", str(images), "--patients",
                          inputs[1], "--out", out], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    copies = os.path.join(out + ".partial", "images")
    while p.poll() is None and not (os.path.isdir(copies) and len(os.listdir(copies)) > 5):
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert os.path.isdir(copies) and not os.path.exists(out), "the kill came too late to leave a partial study"

    mine = os.path.join(copies, "0123456789abcdef0123456789abcdef.png.txt")
    with open(mine, "w") as f:
        f.write("not the study's")
    refused(study_cli("create", "--images", str(images), "--patients", inputs[1], "--out", out), out + ".partial")
    assert os.path.isfile(mine)
    os.unlink(mine)
    created((str(images), inputs[1]), out)
    assert not os.path.exists(out + ".partial")
    assert len(os.listdir(os.path.join(out, "images"))) == 60 * 2 + 2


def test_create_refuses_an_out_inside_its_inputs(inputs, tmp_path):
    for inside in (os.path.join(inputs[0], "S"), os.path.join(inputs[1], "S")):
        refused(study_cli("create", "--images", inputs[0], "--patients", inputs[1], "--out", inside), inside)
        assert not os.path.exists(inside) and not os.path.exists(inside + ".partial")


def test_results_overwrites_only_its_own_files(inputs, tmp_path):
    study = str(tmp_path / "S")
    created(inputs, study)
    users = tmp_path / "mine"
    users.mkdir()
    (users / "results.md").write_text("my own results")
    refused(study_cli("results", study, "--out", str(users)), str(users), "results.md")
    assert (users / "results.md").read_text() == "my own results"
    assert sorted(os.listdir(users)) == ["results.md"], "nothing is written beside a refused file"

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    refused(study_cli("results", study, "--out", str(a_file)), str(a_file))
    assert a_file.read_text() == "x"
    refused(study_cli("results", study, "--out", os.path.join(study, "images")), os.path.join(study, "images"))

    out = str(tmp_path / "results")
    for _ in range(2):  # again into the folder it wrote: its own files are replaced
        r = study_cli("results", study, "--out", out, "--bootstrap", "20")
        assert r.returncode == 0, r.stderr
    with open(os.path.join(out, "results.md")) as f:
        assert "Table I" in f.read()


# --- the admin link -----------------------------------------------------------------------------

def test_a_new_admin_link_revokes_the_old_one_while_serving(inputs, tmp_path):
    study = str(tmp_path / "S")
    old = created(inputs, study)
    with Served(study) as server:
        leaked = server.session(old)
        assert leaked.get(server.url + "/admin", timeout=10).status_code == 200
        r = study_cli("invite", study, "--admin")
        assert r.returncode == 0, r.stderr
        new = re.search(r"/start/(\S+)", r.stdout).group(1)
        assert leaked.get(server.url + "/admin", timeout=10).status_code == 403, "the leaked session still works"
        assert requests.get(f"{server.url}/start/{old}", allow_redirects=False, timeout=10).status_code == 403
        assert server.session(new).get(server.url + "/admin", timeout=10).status_code == 200


def test_opening_a_wrong_link_logs_out_whoever_was_logged_in(inputs, tmp_path):
    # A shared ward computer: rater 1's cookie must not answer for the next person, whose link was mistyped.
    with served_rater(inputs, str(tmp_path / "S")) as (server, browser, token, _):
        assert browser.get(server.url + "/task/1", timeout=10).status_code == 200
        r = browser.get(f"{server.url}/start/{token[:-2]}xx", allow_redirects=False, timeout=10)
        assert r.status_code == 403 and "not valid" in r.text
        r = browser.get(server.url + "/task/1", timeout=10)
        assert r.status_code == 403 and "personal link" in r.text, "the previous rater is still logged in"


# --- malformed requests: 400, database untouched, server serving -------------------------------

def multipart(fields, boundary="palsysimboundary"):
    """fields: [(name, value bytes, file name or None)] -> (body, content type)."""
    parts = []
    for name, value, filename in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        parts.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def assert_bad_requests_refused(server, folder, session, page, cases):
    """Each (path, body, content type) POST, or (path, None, None) GET, gets a 400 with a message, leaves
    the database as it was, and the server answers the page after it."""
    for path, body, content_type in cases:
        before = database(folder)
        if body is None:
            r = session.get(server.url + path, timeout=10)
        else:
            r = session.post(server.url + path, data=body, headers={"Content-Type": content_type},
                             allow_redirects=False, timeout=10)
        assert r.status_code == 400, (path, body[:80] if body else None, r.status_code, r.text[:300])
        assert 'class="error"' in r.text and "Traceback" not in r.text, r.text[:300]
        assert database(folder) == before, path
        assert session.get(server.url + page, timeout=10).status_code == 200


def test_rating_answers_malformed_are_400(inputs, tmp_path):
    study = str(tmp_path / "S")
    with served_rater(inputs, study) as (server, rater, token, _):
        csrf = csrf_of(rater, server.url + "/task/1").encode()
        as_file, kind = multipart([("csrf", csrf, None), ("value", b"3", "answer.txt")])
        cut, _ = multipart([("csrf", csrf, None), ("value", b"3", None)])
        form = "application/x-www-form-urlencoded"
        assert_bad_requests_refused(server, study, rater, "/task/1", [
            ("/task/1", as_file, kind),
            ("/task/1", cut[:len(cut) - 30], kind),
            ("/task/1", b"csrf=" + csrf + b"&value=\xff\xfe3", form),
            ("/task/1", b"csrf=" + csrf + b"&value=%ff%fe", form),
            ("/task/1", b"csrf=" + csrf + b"&value=3", form + "; charset=no-such-charset"),
            ("/task/%C2%B2", None, None),
        ])
        r = rater.post(server.url + "/task/1", data={"csrf": csrf, "value": "3"}, allow_redirects=False, timeout=10)
        assert r.status_code == 303, "a good answer after the bad ones is saved"
        for cookie in (b"palsysim_study=\xe9t\xe9", b"palsysim_study=" + token.encode() + b"\xff"):
            r = requests.get(server.url + "/", headers={"Cookie": cookie}, timeout=10)
            assert r.status_code == 403 and "personal link" in r.text, "a cookie that is no token is no session"
        assert requests.get(server.url + "/start/%ED%A0%80", timeout=10).status_code == 403


def test_reference_scores_malformed_are_400(inputs, tmp_path):
    study = str(tmp_path / "S")
    admin = created(inputs, study, "--mode", "trainer")
    with Served(study) as server:
        session = server.session(admin)
        csrf = csrf_of(session, server.url + "/admin/reference").encode()
        upload = [("csrf", csrf, None)]
        extra_cell = b"patient,rest,grin\npatient 1,4,2,0\n"
        extra_later = b"patient,rest,grin\npatient 1,4,\n2,,2,4\n"
        nul = b"patient,rest,grin\npatient 1,4\x00,\n"
        as_file, kind = multipart(upload + [("1:rest", b"4", "score.txt")])
        assert_bad_requests_refused(server, study, session, "/admin/reference", [
            ("/admin/reference/import", multipart(upload + [("csv", extra_cell, "scores.csv")])[0], kind),
            ("/admin/reference/import", multipart(upload + [("csv", extra_later, "scores.csv")])[0], kind),
            ("/admin/reference/import", multipart(upload + [("csv", nul, "scores.csv")])[0], kind),
            ("/admin/reference/import", multipart(upload + [("csv", b"\xff\xfe\x00p", "scores.csv")])[0], kind),
            ("/admin/reference", as_file, kind),
        ])
        good, _ = multipart(upload + [("csv", b"patient,rest,grin\npatient 1,4,\n2,,2\n", "scores.csv")])
        r = session.post(server.url + "/admin/reference/import", data=good, headers={"Content-Type": kind}, timeout=10)
        assert r.status_code == 200 and "Imported 2 scores" in r.text


# --- a decompression bomb among the photos ------------------------------------------------------

def test_create_with_a_decompression_bomb_photo_exits_2(inputs, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(inputs[0], images)
    patient = sorted(os.listdir(images / "codc_window"))[0]
    expression = os.listdir(images / "codc_window" / patient)[0]
    png_claiming(images / "codc_window" / patient / expression / "huge.png", 40000, 40000)
    out = str(tmp_path / "S")
    refused(study_cli("create", "--images", str(images), "--patients", inputs[1], "--out", out), "huge.png", "pixels")
    assert not os.path.exists(out) and not os.path.exists(out + ".partial")


# --- numbers out of range on the command line -------------------------------------------------------

def test_numbers_out_of_range_exit_2(inputs, tmp_path):
    study = str(tmp_path / "S")
    created(inputs, study)
    for args, name in ((("create", "--images", inputs[0], "--patients", inputs[1], "--out", str(tmp_path / "T"),
                         "--per-method", "-1"), "--per-method"),
                       (("results", study, "--out", str(tmp_path / "R"), "--bootstrap", "-5"), "--bootstrap"),
                       (("serve", study, "--port", "99999"), "--port"),
                       (("invite", study), "--raters")):
        refused(study_cli(*args), name)
    assert not os.path.exists(tmp_path / "T") and not os.path.exists(tmp_path / "R")
