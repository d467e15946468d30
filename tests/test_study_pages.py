"""What a rater and an administrator meet on the study's pages (issue 27), through a real `study serve`:
instructions with the scale before the first question, the naturalness block closed before any page shows
the patient's face, that face as the same 512 crop beside the generated one with the item named, a hand-over
that logs the browser out, and the admin pages as HTML tables."""
import re

import pytest
from study_helpers import csrf_of, make_inputs, served_rater

from palsysim.base.vocabulary import ITEM_TITLES
from palsysim.study.questions import CRITERIA, worded


@pytest.fixture(scope="module")
def inputs(module_tmp):
    return make_inputs(str(module_tmp("inputs")), [(0, "rest"), (1, "grin")], methods=("codc_window",))


def question_count(page):
    return int(re.search(r"Question \d+ of (\d+)", page).group(1))


def test_welcome_names_the_parts_and_the_scale_and_the_order_is_enforced(inputs, tmp_path):
    with served_rater(inputs, str(tmp_path / "S")) as (server, rater, _, _):
        welcome = rater.get(server.url + "/", timeout=10).text
        assert "How it works" in welcome and "minutes of work" in welcome
        for q in (worded(c, ["image"], ["image"]) for c in CRITERIA):  # a study of images
            assert q["title"] in welcome and f"1 = {q['low']}, 5 = {q['high']}" in welcome
        first = rater.get(server.url + "/task/1", timeout=10).text
        total = question_count(first)
        alone = total // len(CRITERIA)  # the naturalness block: every image once, first
        assert "Patient's face" not in first and "Naturalness" in first

        # Typing the URL of a paired question, or posting to it, before the block is done: back to the block.
        r = rater.get(f"{server.url}/task/{alone + 1}", allow_redirects=False, timeout=10)
        assert r.status_code == 303 and r.headers["Location"] == "/task/1"
        csrf = csrf_of(rater, server.url + "/task/1")
        r = rater.post(f"{server.url}/task/{alone + 1}", data={"csrf": csrf, "value": "3"}, allow_redirects=False,
                       timeout=10)
        assert r.status_code == 409 and "naturalness questions first" in r.text
        for n in range(1, alone):
            rater.post(f"{server.url}/task/{n}", data={"csrf": csrf, "value": "4"}, timeout=10)
        assert rater.get(f"{server.url}/task/{alone + 1}", allow_redirects=False, timeout=10).headers["Location"] \
            == f"/task/{alone}", "one naturalness question still open"
        rater.post(f"{server.url}/task/{alone}", data={"csrf": csrf, "value": "4"}, timeout=10)

        paired = rater.get(f"{server.url}/task/{alone + 1}", allow_redirects=False, timeout=10)
        assert paired.status_code == 200
        assert "Patient's face" in paired.text and "Generated face" in paired.text
        assert any(f"Yanagihara item: {title}" in paired.text for title in ITEM_TITLES.values()), paired.text
        source, image = re.findall(r'<img src="(/img/\w+)"', paired.text)
        from io import BytesIO

        from PIL import Image
        with Image.open(BytesIO(rater.get(server.url + source, timeout=10).content)) as face:
            assert face.size == (512, 512)  # the face crop generation used, not the whole photo
        r = rater.post(f"{server.url}/task/{alone + 1}", data={"csrf": csrf, "value": "2"}, allow_redirects=False,
                       timeout=10)
        assert r.status_code == 303, "the paired block is open now"


def test_a_question_that_does_not_exist_gets_the_studys_own_page_with_the_way_back(inputs, tmp_path):
    with served_rater(inputs, str(tmp_path / "S")) as (server, rater, _, _):
        total = question_count(rater.get(server.url + "/task/1", timeout=10).text)
        for n in (0, total + 1):
            r = rater.get(f"{server.url}/task/{n}", timeout=10)
            assert r.status_code == 404 and "<style" in r.text, r.text  # styled as every page, not bare text
            assert f"questions are numbered 1 to {total}" in r.text and 'href="/"' in r.text, r.text


def test_hand_over_logs_this_browser_out(inputs, tmp_path):
    with served_rater(inputs, str(tmp_path / "S")) as (server, rater, token, _):
        home = rater.get(server.url + "/", timeout=10).text
        assert "Hand over to the next rater" in home
        csrf = re.search(r'action="/hand-over"><input type="hidden" name="csrf" value="(\w+)"', home).group(1)
        r = rater.post(server.url + "/hand-over", data={"csrf": csrf}, timeout=10)
        assert r.status_code == 200 and "logged out" in r.text
        r = rater.get(server.url + "/task/1", timeout=10)
        assert r.status_code == 403 and "personal link" in r.text, "the next person would answer as this rater"
        assert server.session(token).get(server.url + "/", timeout=10).status_code == 200  # the link still works


def test_admin_pages_are_html_tables_and_say_only_what_the_mode_has(inputs, tmp_path):
    with served_rater(inputs, str(tmp_path / "S")) as (server, rater, _, admin_token):
        csrf = csrf_of(rater, server.url + "/task/1")
        rater.post(server.url + "/task/1", data={"csrf": csrf, "value": "5"}, timeout=10)
        admin = server.session(admin_token)
        page = admin.get(server.url + "/admin", timeout=10).text
        assert "trainer only" not in page and "Feedback" not in page, "rating mode has no trainee feedback"
        assert "<th>state</th>" in page and "in progress" in page
        results = admin.get(server.url + "/admin/results", timeout=10).text
        assert "<pre>" not in results and "|---" not in results, "markdown pipes in a box"
        assert "<h2>Table I: mean and SD per method and criterion</h2><table>" in results
        assert "<td>naturalness</td>" in results and "<td>5.000</td>" in results
