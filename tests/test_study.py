"""The study's store and statistics on real files (real face photographs, a real SQLite study)."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from study_helpers import assert_no_patient_names, hand_ordinal_alpha, hand_quadratic_kappa, make_inputs

from palsysim.base.errors import InputError
from palsysim.study import stats
from palsysim.study.store import Study, create_study, natural_key


@pytest.fixture(scope="module")
def inputs(module_tmp):
    return make_inputs(str(module_tmp("inputs")), [(0, "rest"), (1, "grin")], methods=("codc_window",))


def test_create_copies_images_without_names_or_metadata(inputs, tmp_path):
    from PIL import Image
    out = str(tmp_path / "s")
    create_study(out, *inputs, mode="trainer")
    assert not os.path.exists(out + ".partial")
    names = os.listdir(os.path.join(out, "images"))
    assert len(names) == 4  # two source photos, two generated images
    for n in names:
        with Image.open(os.path.join(out, "images", n)) as im:
            assert not im.info.get("prompt"), "the workflow text chunk (naming the patient's file) was copied"
    for n in os.listdir(out):
        if os.path.isfile(os.path.join(out, n)):
            with open(os.path.join(out, n), "rb") as f:
                assert_no_patient_names(f.read())
    with pytest.raises(InputError, match="already exists"):
        create_study(out, *inputs)


def test_create_refuses_missing_sources_and_patients(inputs, tmp_path):
    with pytest.raises(InputError, match="needs --patients"):
        create_study(str(tmp_path / "a"), inputs[0], None)
    os.makedirs(tmp_path / "empty" / "X")
    with pytest.raises(InputError, match="no patient photos"):
        create_study(str(tmp_path / "b"), inputs[0], str(tmp_path / "empty"))
    assert not os.path.exists(tmp_path / "a") and not os.path.exists(tmp_path / "b.partial")


def test_reference_csv_import_all_or_nothing(inputs, tmp_path):
    out = str(tmp_path / "s")
    create_study(out, *inputs, mode="trainer")
    study = Study(out)
    assert study.missing_reference() == ["patient 1: rest", "patient 2: grin"]
    with pytest.raises(InputError, match="line 3, grin: '3' is not 0, 2 or 4"):
        study.reference_from_csv("patient,rest,grin\npatient 1,4,\n2,,3\n")
    assert study.reference() == {}
    assert study.reference_from_csv("patient,rest,grin\npatient 1,4,\n2,,0\n") == 2
    assert study.missing_reference() == []
    assert study.reference_csv().splitlines()[1].startswith("patient 1,4,")
    study.close()


def test_recorded_order_is_the_seeded_one(inputs, tmp_path):
    out = str(tmp_path / "s")
    create_study(out, *inputs, mode="rating", seed=5)
    study = Study(out)
    study.add_raters(3)
    for r in study.conn.execute("SELECT id, seed FROM raters").fetchall():
        recorded = [(t["image_id"], t["criterion"]) for t in study.tasks(r["id"])]
        assert recorded == study._order(r["seed"])
    study.close()


def test_ordinal_alpha_and_kappa_equal_hand_computations():
    data = [[1, 2, 3, 3, 2, 1, 4, 1, 2, None], [1, 2, 3, 3, 2, 2, 4, 1, 2, 5], [None, 3, 3, 3, 2, 3, 4, 2, 2, 5]]
    arr = np.array([[np.nan if v is None else v for v in row] for row in data], dtype=float)
    assert stats.ordinal_alpha(arr) == pytest.approx(hand_ordinal_alpha(data), abs=1e-12)
    assert math.isnan(stats.ordinal_alpha(np.array([[3.0, 3.0], [3.0, 3.0]])))
    ref, got = [0, 2, 4, 4, 2, 0, 2], [0, 2, 2, 4, 4, 0, 0]
    assert stats.weighted_kappa(ref, got) == pytest.approx(hand_quadratic_kappa(ref, got))


def test_table_one_is_mean_and_sample_sd():
    rows = [{"method": "m", "criterion": "naturalness", "value": v, "rater": "rater 1", "image": str(i)}
            for i, v in enumerate([1, 4, 5])]
    t = [r for r in stats.table_one(rows, ["m"]) if r["criterion"] == "naturalness"][0]
    assert (t["mean"], t["n"]) == (pytest.approx(10 / 3), 3) and t["sd"] == pytest.approx(np.std([1, 4, 5], ddof=1))


def test_natural_order_of_patients():
    assert sorted(["patient_10", "patient_2", "patient_1"], key=natural_key) == ["patient_1", "patient_2", "patient_10"]


def test_serve_refuses_a_lan_address_without_the_flag_and_warns_with_it(inputs, tmp_path):
    out = str(tmp_path / "s")
    create_study(out, *inputs)
    r = subprocess.run([sys.executable, "-m", "palsysim", "study", "serve", out, "--host", "0.0.0.0"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--lan" in r.stderr
    p = subprocess.Popen([sys.executable, "-m", "palsysim", "study", "serve", out, "--host", "0.0.0.0", "--port", "0",
                          "--lan"], stderr=subprocess.PIPE, text=True)
    try:
        assert p.stderr.readline().startswith("WARNING: serving patient photos to the network")
    finally:
        p.terminate()
        p.wait()


def test_trainer_feedback_at_the_end(inputs, tmp_path):
    """--feedback end: scores stay editable and hidden until Finish; then final, with the reference shown."""
    import asyncio
    import re

    from aiohttp.test_utils import TestClient, TestServer

    from palsysim.study.app import make_app
    out = str(tmp_path / "s")
    create_study(out, *inputs, mode="trainer", feedback="end")
    study = Study(out)
    token = study.add_raters(1)[0]
    study.reference_from_csv("patient,rest,grin\n1,4,\n2,,2\n")

    async def run():
        async with TestClient(TestServer(make_app(study))) as c:
            await c.get(f"/start/{token}")
            page = await (await c.get("/task/1")).text()
            csrf = re.search(r'name="csrf" value="(\w+)"', page).group(1)
            for n, v in ((1, 0), (2, 4), (1, 2)):  # the first answer changed before finishing
                r = await c.post(f"/task/{n}", data={"value": str(v), "csrf": csrf}, allow_redirects=False)
                assert r.status == 303 and "feedback" not in r.headers["Location"]
            done = await (await c.get("/done")).text()
            assert "Finish and show the feedback" in done and "Reference" not in done
            assert (await c.post("/finish", data={"csrf": csrf})).status == 200
            summary = await (await c.get("/done")).text()
            late = await c.post("/task/1", data={"value": "0", "csrf": csrf}, allow_redirects=False)
            return summary, late.status
    summary, late = asyncio.run(run())
    assert "Your results" in summary and late == 409
    got = {(r["item"]): (r["score"], r["reference"]) for r in stats.trainer_answers(study)}
    first = study.tasks(1)[0]["expression"]
    assert got[first][0] == 2  # the changed answer is the one kept
    study.close()


def test_create_from_an_experiment_folder(inputs, tmp_path):
    """--from EXP reads EXP/generated/<method>/... and EXP/prepared/photos/... (palsysim/experiment's layout)."""
    import shutil
    exp = tmp_path / "exp"
    shutil.copytree(inputs[0], exp / "generated")
    shutil.copytree(inputs[1], exp / "prepared" / "photos")
    (exp / "generated" / "codc_window" / "manifest.json").write_text("{}")  # the runner's files beside the tree
    r = subprocess.run([sys.executable, "-m", "palsysim", "study", "create", "--from", str(exp), "--out",
                        str(tmp_path / "s")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    study = Study(str(tmp_path / "s"))
    kinds = dict(study.conn.execute("SELECT kind, COUNT(*) FROM images GROUP BY kind"))
    assert kinds == {"generated": 2, "source": 2}
    study.close()
    # The Fig. 8 run on partial's own window is partial's images again: not rated by default, refused if chosen.
    shutil.copytree(exp / "generated" / "codc_window", exp / "generated" / "window_500_700")
    r = subprocess.run([sys.executable, "-m", "palsysim", "study", "create", "--from", str(exp), "--out",
                        str(tmp_path / "s2")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    study = Study(str(tmp_path / "s2"))
    assert [m for (m,) in study.conn.execute("SELECT name FROM methods")] == ["codc_window"]
    study.close()
    for methods, message in ((["codc_window", "window_500_700"], "hold identical images"), (["nope"], "no such method")):
        r = subprocess.run([sys.executable, "-m", "palsysim", "study", "create", "--from", str(exp), "--methods",
                            *methods, "--out", str(tmp_path / "s3")], capture_output=True, text=True)
        assert r.returncode == 2 and message in r.stderr and "--methods" in r.stderr, r.stderr
        assert not os.path.exists(tmp_path / "s3")
    r = subprocess.run([sys.executable, "-m", "palsysim", "study", "create", "--from", str(tmp_path / "none"),
                        "--out", str(tmp_path / "t")], capture_output=True, text=True)
    assert r.returncode == 2 and "no generated/ folder" in r.stderr


def test_each_image_of_many_photos_is_shown_beside_its_own_photo(inputs, tmp_path):
    from palsysim.base.photos import read_image, write_image
    from palsysim.study.media import source_face
    patients, generated = tmp_path / "patients", tmp_path / "generated"
    rest = read_image(os.path.join(inputs[1], sorted(os.listdir(inputs[1]))[0], "rest.png"))
    # two photos of one item, told apart by pixels: the face mirrored, and brightened
    grins = [np.ascontiguousarray(rest[:, ::-1]), np.clip(rest.astype(int) + 40, 0, 255).astype(np.uint8)]
    photos = []
    for k, grin in enumerate(grins, 1):
        photos.append(str(patients / "Doe_Jane_MRN4711" / "grin" / f"Doe_Jane_grin_{k}.png"))
        write_image(photos[-1], grin)
        write_image(str(generated / "m" / "Doe_Jane_MRN4711" / "grin" / f"photo{k}" / "a_man_7.png"), grin[::2, ::2])
    out = str(tmp_path / "s")
    create_study(out, str(generated), str(patients), mode="rating")
    study = Study(out)
    study.add_raters(1)
    shown = {(t["image_id"], t["source_id"]) for t in study.tasks(1) if t["source_id"]}
    assert len(shown) == 2
    for image_id, source_id in shown:
        image, source = (read_image(os.path.join(out, "images", i + ".png")) for i in (image_id, source_id))
        (k,) = [k for k, grin in enumerate(grins) if np.array_equal(image, grin[::2, ::2])]
        # beside it, the face crop of its own photo (the 512 crop generation used), not of the other one
        assert source.shape == (512, 512, 3) and np.array_equal(source, source_face(photos[k], 1, "grin"))
    assert [r[0] for r in study.conn.execute("SELECT DISTINCT expression FROM images")] == ["grin"]
    study.close()

    # A study made before images had sources or videos opens with each image's source its item, as it was, and
    # every item an image.
    import sqlite3
    old = str(tmp_path / "old")
    create_study(old, *inputs, mode="rating")
    conn = sqlite3.connect(os.path.join(old, "study.sqlite"))
    conn.execute("ALTER TABLE images DROP COLUMN source")
    conn.execute("ALTER TABLE images DROP COLUMN media")
    conn.commit()
    conn.close()
    study = Study(old)
    study.add_raters(1)
    tasks = study.tasks(1)
    assert all(t["source_id"] for t in tasks if t["criterion"] != "naturalness")
    assert {t["media"] for t in tasks} == {"image"}
    path, kind = study.media_file(tasks[0]["image_id"], ".png")
    assert kind == "image/png" and os.path.isfile(path) and study.media_file(tasks[0]["image_id"], ".mp4") is None
    study.close()


def test_table_one_keeps_the_order_the_methods_were_asked_in(tmp_path):
    """--methods (or an experiment's own order) decides Table I's rows and the box plots, not the alphabet."""
    images, patients = make_inputs(str(tmp_path / "in"), [(0, "rest")], methods=("codc_window", "pf_baseline"))
    for asked in (["pf_baseline", "codc_window"], ["codc_window", "pf_baseline"]):
        out = str(tmp_path / "_".join(asked))
        create_study(out, images, patients, mode="rating", methods=asked)
        study = Study(out)
        study.add_raters(1)
        for t in study.tasks(1):
            study.answer(1, t["position"], 3)
        assert [r[0] for r in study.conn.execute("SELECT name FROM methods ORDER BY id")] == asked
        rows = stats.results(study, boot=10)["tables"]["table1"][0]
        assert list(dict.fromkeys(r["method"] for r in rows)) == asked
        study.close()
