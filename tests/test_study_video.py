"""Expression videos in the rating study (issue 26): a patient's video and a generated video of a real face
grinning with a left palsy, imported beside images, copied as the study's own mp4 and webm, served by the study
server itself (range requests included) and played in a real browser, rated and counted like images."""
import csv
import json
import os
import re
import shutil
import sqlite3
import time

import numpy as np
import pytest
import requests
from cli_helpers import palsysim_cli
from real_faces import tagged_copy
from study_helpers import (HAS_CHROMIUM, PATIENT_NAMES, VIDEO_FPS, VIDEO_FRAMES, assert_no_patient_names, chrome,
                           csrf_of, make_video_inputs, served_rater, study_cli)

from palsysim.base.errors import InputError
from palsysim.base.video_files import read_video, write_video
from palsysim.condition.facecrop import face_crop
from palsysim.face.landmarks import face_landmarks
from palsysim.study.inputs import chosen_methods
from palsysim.study.questions import CRITERIA, worded
from palsysim.study.store import create_study

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS = os.path.join(ROOT, "out", "test-artifacts", "study")


@pytest.fixture(scope="module")
def inputs(module_tmp):
    return make_video_inputs(str(module_tmp("inputs")))


def items(folder):
    """{(kind, item): (id, media)} of a study folder's database."""
    with sqlite3.connect(os.path.join(folder, "study.sqlite")) as c:
        return {(k, x): (i, m) for i, k, m, x in c.execute("SELECT id, kind, media, expression FROM images")}


def mean_error(a, b):
    return np.abs(a.astype(float) - b.astype(float)).mean()


def test_create_copies_videos_as_mp4_and_webm_beside_images_without_names(inputs, tmp_path):
    out = str(tmp_path / "S")
    create_study(out, *inputs)
    found = items(out)
    assert {k: m for k, (_, m) in found.items()} == {
        ("generated", "grin"): "video", ("generated", "rest"): "image",
        ("source", "grin"): "video", ("source", "rest"): "image"}
    stored = sorted(os.listdir(os.path.join(out, "images")))
    assert stored == sorted(f"{i}{ext}" for i, m in found.values()
                            for ext in ((".mp4", ".webm") if m == "video" else (".png",)))
    generated, _ = read_video(os.path.join(inputs[0], "codc_window", PATIENT_NAMES[0], "grin", "a_man_7.mp4"))
    patient = os.path.join(inputs[1], PATIENT_NAMES[0], "grin.mp4")
    source, _ = read_video(patient)
    xy = face_landmarks(source[0]).xy
    for ext in (".mp4", ".webm"):
        copy, fps = read_video(os.path.join(out, "images", found[("generated", "grin")][0] + ext))
        assert len(copy) == VIDEO_FRAMES and fps == pytest.approx(VIDEO_FPS)
        assert mean_error(copy[6], generated[6]) < 6  # re-encoded, the same picture
        crop, fps = read_video(os.path.join(out, "images", found[("source", "grin")][0] + ext))
        assert len(crop) == VIDEO_FRAMES and fps == pytest.approx(VIDEO_FPS)
        # the patient's video as the 512 face crop of its first frame, every frame in that one square
        assert crop[0].shape == (512, 512, 3)
        assert mean_error(crop[6], face_crop(source[6], xy, 512)[0]) < 6
    with open(patient, "rb") as f:
        assert PATIENT_NAMES[0].encode() in f.read()  # the input's own tags name the patient ...
    for name in stored + ["study.sqlite"]:
        with open(os.path.join(out, "images" if name != "study.sqlite" else "", name), "rb") as f:
            assert_no_patient_names(f.read())  # ... the study's copies do not


def test_a_study_of_videos_only(inputs, tmp_path):
    """Made by the command line, its decodes counted: a generated video twice (its digest, the check of every
    input before any work, and its copy: keeping its frames between the two could take gigabytes for a
    study's hundreds of videos), the patient's once."""
    copy = str(tmp_path / "in")
    shutil.copytree(os.path.dirname(inputs[0]), copy)
    shutil.rmtree(os.path.join(copy, "generated", "codc_window", PATIENT_NAMES[0], "rest"))
    out = str(tmp_path / "S")
    r = palsysim_cli("study", "create", "--images", os.path.join(copy, "generated"), "--patients",
                     os.path.join(copy, "patients"), "--out", out, counts=tmp_path / "counts.json")
    assert r.returncode == 0, r.stderr
    assert {k: m for k, (_, m) in items(out).items() if k[0] == "generated"} == {("generated", "grin"): "video"}
    counts = json.loads((tmp_path / "counts.json").read_text())["video_decoded"]
    assert counts == {os.path.join(copy, "generated", "codc_window", PATIENT_NAMES[0], "grin", "a_man_7.mp4"): 2,
                      os.path.join(copy, "patients", PATIENT_NAMES[0], "grin.mp4"): 1}, counts


def test_two_methods_with_the_same_video_frames_are_refused(inputs, tmp_path):
    """Identical pixels in two methods (one video a stream copy of the other: other bytes, the same frames)
    would be rated twice: refused, naming both methods; a video of other frames is not."""
    video = os.path.join(inputs[0], "codc_window", PATIENT_NAMES[0], "grin", "a_man_7.mp4")
    copy = tagged_copy(video, tmp_path / "copy.mp4", "another container")
    assert open(copy, "rb").read() != open(video, "rb").read()
    frames, fps = read_video(video)
    other = write_video(str(tmp_path / "other.mp4"), frames[::-1], fps)
    with pytest.raises(InputError, match="methods a and b hold identical images or videos"):
        chosen_methods([("a", "p", "grin", video), ("b", "p", "grin", copy)])
    assert len(chosen_methods([("a", "p", "grin", video), ("b", "p", "grin", other)])) == 2


@pytest.mark.parametrize("broken", ["generated", "patient"])
def test_a_video_that_will_not_decode_is_refused_and_nothing_is_left(inputs, tmp_path, broken):
    copy = str(tmp_path / "in")
    shutil.copytree(os.path.dirname(inputs[0]), copy)
    path = os.path.join(copy, *(("generated", "codc_window", PATIENT_NAMES[0], "grin", "a_man_7.mp4")
                                if broken == "generated" else ("patients", PATIENT_NAMES[0], "whistle.mp4")))
    if broken == "patient":  # a source read after the patient's grin.mp4 and rest.png
        shutil.copy(os.path.join(copy, "patients", PATIENT_NAMES[0], "grin.mp4"), path)
    with open(path, "r+b") as f:
        f.truncate(2000)  # cut off before its index: a copy that stopped midway
    out = str(tmp_path / "S")
    r = palsysim_cli("study", "create", "--images", os.path.join(copy, "generated"), "--patients",
                     os.path.join(copy, "patients"), "--out", out, counts=tmp_path / "counts.json")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "is not a readable video" in r.stderr and "give an mp4, webm or mov file" in r.stderr, r.stderr
    assert not os.path.exists(out) and not os.path.exists(out + ".partial")
    # refused before any copy: no face cropped from the patient's rest photo, no video decoded to be re-encoded
    counts = json.loads((tmp_path / "counts.json").read_text())
    assert not counts["landmarked"], counts
    assert all(n == 1 for n in counts["video_decoded"].values()), counts  # the generated video's digest alone


def questions(server, rater):
    """[(position, page text)] of every question, answering each (4, 3 or 2 by position) to open the next part."""
    first = rater.get(server.url + "/task/1", timeout=10).text
    total = int(re.search(r"Question \d+ of (\d+)", first).group(1))
    csrf, out = csrf_of(rater, server.url + "/task/1"), []
    for n in range(1, total + 1):
        out.append((n, rater.get(f"{server.url}/task/{n}", timeout=10).text))
        r = rater.post(f"{server.url}/task/{n}", data={"csrf": csrf, "value": str(2 + n % 3)}, allow_redirects=False,
                       timeout=10)
        assert r.status_code == 303, r.text
    return out


def test_served_videos_are_rated_and_counted_like_images(inputs, tmp_path):
    folder = str(tmp_path / "S")
    with served_rater(inputs, folder) as (server, rater, _, admin):
        pages = questions(server, rater)
        videos = {p: re.findall(r'<source src="(/video/\w+\.\w+)" type="(video/\w+)">', t) for p, t in pages}
        for _, text in pages:
            assert_no_patient_names(text)
        assert [len(v) for v in videos.values()].count(4) == 2, "two paired pages show the patient's and the " \
                                                                "generated video, each as mp4 and webm"
        found = items(folder)
        video_id = found[("generated", "grin")][0]
        url = f"{server.url}/video/{video_id}.mp4"
        assert (f"/video/{video_id}.mp4", "video/mp4") in videos[1] + videos[2]  # naturalness: alone
        whole = rater.get(url, timeout=10)
        with open(os.path.join(folder, "images", video_id + ".mp4"), "rb") as f:
            assert whole.status_code == 200 and whole.content == f.read()
        assert whole.headers["Content-Type"] == "video/mp4"
        part = rater.get(url, headers={"Range": "bytes=100-199"}, timeout=10)  # what seeking asks for
        assert part.status_code == 206 and part.content == whole.content[100:200]
        assert part.headers["Content-Range"] == f"bytes 100-199/{len(whole.content)}"
        webm = rater.get(f"{server.url}/video/{video_id}.webm", timeout=10)
        assert webm.status_code == 200 and webm.headers["Content-Type"] == "video/webm"
        image_id = found[("generated", "rest")][0]
        for wrong in (f"/img/{video_id}", f"/video/{image_id}.mp4", f"/video/{video_id}.mov", f"/video/{video_id}"):
            assert rater.get(server.url + wrong, timeout=10).status_code == 404, wrong
        assert requests.get(url, timeout=10).status_code == 403  # no session, no video
        assert server.session(admin).get(url, timeout=10).status_code == 200  # the admin sees every item
    out = str(tmp_path / "results")
    r = study_cli("results", folder, "--out", out, "--bootstrap", "20")
    assert r.returncode == 0, r.stderr
    with open(os.path.join(out, "results.md"), encoding="utf-8") as f:
        assert "Naturalness 1 = clearly artificial, 5 = indistinguishable from a real photograph or video recording" \
            in f.read()  # the scales as the raters of this mixed study read them
    with open(os.path.join(out, "answers.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    given = {n: 2 + n % 3 for n, _ in pages}
    assert sorted(int(r["value"]) for r in rows) == sorted(given.values())
    assert sorted((r["criterion"], r["media"]) for r in rows if r["image"] == video_id) == [
        ("expression_accuracy", "video"), ("identity_difference", "video"), ("naturalness", "video")]
    with open(os.path.join(out, "table1.csv"), newline="") as f:
        table = list(csv.DictReader(f))
    assert [int(r["n"]) for r in table] == [2, 2, 2]  # the video counts as one answer per criterion, as the image
    for row in table:
        values = [int(r["value"]) for r in rows if r["criterion"] == row["criterion"]]
        assert float(row["mean"]) == pytest.approx(np.mean(values))


def test_a_trainer_study_shows_videos_for_reference_scores_and_to_trainees(inputs, tmp_path):
    folder = str(tmp_path / "S")
    with served_rater(inputs, folder, "--mode", "trainer", "--feedback", "end") as (server, trainee, _, admin):
        found = items(folder)
        supervisor = server.session(admin)
        assert "1 generated image and 1 generated video;" in supervisor.get(server.url + "/admin", timeout=10).text
        reference = supervisor.get(server.url + "/admin/reference", timeout=10).text
        assert "Generated images and videos inherit" in reference and "<i>no photo or video</i>" in reference
        assert f'<source src="/video/{found[("source", "grin")][0]}.mp4" type="video/mp4">' in reference
        assert f'<img src="/img/{found[("source", "rest")][0]}"' in reference
        assert_no_patient_names(reference)
        csrf = csrf_of(supervisor, server.url + "/admin/reference")
        supervisor.post(server.url + "/admin/reference", data={"csrf": csrf, "1:grin": "2", "1:rest": "4"}, timeout=10)
        csrf = csrf_of(trainee, server.url + "/task/1")
        scored = {}
        for n in (1, 2):
            page = trainee.get(f"{server.url}/task/{n}", timeout=10).text
            scored[n] = "video" if "<video" in page else "image"
            assert ("palsied side in this video" in page) == (scored[n] == "video")  # the image is the rest item
            trainee.post(f"{server.url}/task/{n}", data={"csrf": csrf, "value": "2"}, timeout=10)
        assert sorted(scored.values()) == ["image", "video"]
        trainee.post(server.url + "/finish", data={"csrf": csrf}, timeout=10)
        summary = trainee.get(server.url + "/done", timeout=10).text
        assert "Your results" in summary and "<h2>Each image or video</h2>" in summary
        assert re.search(rf'<video [^>]*width="96"><source src="/video/{found[("generated", "grin")][0]}.mp4"', summary)
        assert_no_patient_names(summary)


def video_state(browser, index):
    return browser.execute_script(
        "var v=document.querySelectorAll('video')[arguments[0]];return {ready:v.readyState,width:v.videoWidth,"
        "height:v.videoHeight,duration:v.duration,time:v.currentTime,src:v.currentSrc,error:v.error&&v.error.code}",
        index)


def plays(browser, index):
    """The index-th <video> on the page once the browser has decoded enough to play on, with its clock running."""
    deadline, seen = time.time() + 30, []
    while time.time() < deadline:
        state = video_state(browser, index)
        assert state["error"] is None, state
        seen.append(state["time"])
        if state["ready"] >= 4 and len(set(seen)) > 1:  # HAVE_ENOUGH_DATA, and currentTime moved
            return state
        time.sleep(0.2)
    raise AssertionError(f"video {index} did not play: {state}")


def wording(browser):
    """The kind of item on screen ("image" or "video"), checked against the words of its question and scale."""
    from selenium.webdriver.common.by import By
    kind = "video" if browser.find_elements(By.TAG_NAME, "video") else "image"
    title = browser.find_element(By.TAG_NAME, "h1").text
    criterion = next(c for c, q in CRITERIA.items() if q["title"] == title)
    asked = worded(criterion, [kind], [kind])  # in these inputs a video is compared with a video, an image a photo
    question, ends = (browser.find_element(By.CLASS_NAME, c).text for c in ("question", "ends"))
    assert question.startswith(asked["question"]) and f"5 = {asked['high']}" in ends, (kind, question, ends)
    assert {"image": "video", "video": "image"}[kind] not in question + ends, (kind, question, ends)
    return kind


@pytest.mark.skipif(not HAS_CHROMIUM, reason="needs Debian's chromium and chromium-driver")
def test_a_real_browser_plays_the_videos_and_a_key_rates_them(inputs, tmp_path):
    from selenium.webdriver.common.by import By
    folder = str(tmp_path / "S")
    with served_rater(inputs, folder) as (server, _, token, _):
        found = items(folder)
        widths = {found[("generated", "grin")][0]: read_video(os.path.join(folder, "images", found[
            ("generated", "grin")][0] + ".mp4"))[0][0].shape[1], found[("source", "grin")][0]: 512}
        b = chrome(tmp_path / "profile")
        try:
            b.get(f"{server.url}/start/{token}")
            welcome = b.find_element(By.TAG_NAME, "body").text  # a mixed study names both
            assert "questions about generated images and videos" in welcome, welcome
            assert "real photograph or video recording" in welcome, welcome
            n, paired, worded_as = 1, None, set()
            while "/done" not in b.current_url:
                b.get(f"{server.url}/task/{n}")
                worded_as.add(wording(b))
                for k, element in enumerate(b.find_elements(By.TAG_NAME, "video")):
                    state = plays(b, k)
                    assert state["duration"] == pytest.approx(VIDEO_FRAMES / VIDEO_FPS, abs=0.1), state
                    shown_id = re.search(r"/video/(\w+)\.", state["src"]).group(1)
                    assert state["width"] == widths[shown_id], state
                    assert element.get_attribute("muted") and element.get_attribute("loop")
                    paired = n if k == 1 else paired
                if paired == n:
                    os.makedirs(ARTIFACTS, exist_ok=True)
                    b.save_screenshot(os.path.join(ARTIFACTS, "video_paired_question.png"))
                    # the page's second <source>, for browsers without H.264, plays here too on its own
                    b.execute_script("var v=document.createElement('video');v.muted=true;v.loop=true;"
                                     "v.src=arguments[0];document.body.appendChild(v);v.play();",
                                     f"{server.url}/video/{found[('source', 'grin')][0]}.webm")
                    assert plays(b, 2)["width"] == 512
                assert_no_patient_names(b.page_source + b.current_url)
                b.find_element(By.TAG_NAME, "body").send_keys(str(2 + n % 3))
                deadline = time.time() + 15
                while b.current_url.endswith(f"/task/{n}") and time.time() < deadline:
                    time.sleep(0.1)
                n += 1
            assert paired is not None, "no page showed the patient's and the generated video side by side"
            assert worded_as == {"image", "video"}
        finally:
            b.quit()
    with sqlite3.connect(os.path.join(folder, "study.sqlite")) as c:
        saved = c.execute("SELECT t.position, a.value, i.media FROM answers a JOIN tasks t USING (rater_id, position) "
                          "JOIN images i ON i.id = t.image_id ORDER BY t.position").fetchall()
    assert [(p, v) for p, v, _ in saved] == [(p, 2 + p % 3) for p in range(1, 7)]
    assert [m for _, _, m in saved].count("video") == 3
