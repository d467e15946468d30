"""The headless runner (python -m palsysim run) against the real host: resume after a kill, node
errors by id and message, two runners on one server, privacy of what it writes and uploads; and
its graph edits (--set, --bypass) without a server."""
import json
import os
import signal
import subprocess
import time

import pytest
import requests
from PIL import Image
from runner_helpers import NO_ARCFACE, PATIENT, REPO, api, history_seeds, make_patients, pngs, run_runner, runner_cmd

from palsysim.base.errors import InputError
from palsysim.base.vocabulary import ITEMS
from palsysim.comfy import workflow as wf


def test_a_killed_batch_resumes_without_requeuing_done_images(host, tmp_path):
    patients = make_patients(tmp_path / "p", ["rest"])
    out = tmp_path / "out"
    seeds = ["7101", "7102", "7103", "7104"]  # unique to this test, so /history tells its prompts apart
    cmd = runner_cmd(api("palsy_pf"), host.url, patients, out, *NO_ARCFACE, "--seeds", *seeds)
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    manifest = out / "manifest.json"
    deadline = time.monotonic() + 300
    done = []
    while time.monotonic() < deadline and proc.poll() is None:
        if manifest.exists():
            jobs = json.loads(manifest.read_text())["jobs"]
            done = [k for k, j in jobs.items() if j["status"] == "done"]
            if done:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up: the worst case
    proc.wait()
    assert 1 <= len(done) < 4, f"interrupt came too late or never: {done}\n{proc.stderr.read().decode()[-2000:]}"
    before = history_seeds(host)

    r = run_runner(api("palsy_pf"), host.url, patients, out, *NO_ARCFACE, "--seeds", *seeds, "--keep-uploads")
    assert r.returncode == 0, r.stdout + r.stderr  # --keep-uploads: its /history, read below
    assert f"{len(done)} already done" in r.stdout
    assert sorted(os.path.basename(p) for p in pngs(out)) == [f"a_man_{s}.png" for s in seeds]
    after = history_seeds(host)
    for key in done:
        seed = int(key.rsplit("_", 1)[1])
        assert after.count(seed) == before.count(seed) == 1, f"{key} was queued again"
    jobs = json.loads(manifest.read_text())["jobs"]
    assert all(j["status"] == "done" for j in jobs.values()) and len(jobs) == 4


def test_a_failing_node_is_reported_with_its_id_and_message(host, tmp_path):
    import skimage
    from real_faces import photo_paths
    patients = tmp_path / "p"
    os.makedirs(patients / PATIENT)
    coffee = os.path.join(os.path.dirname(skimage.__file__), "data", "coffee.png")  # no face in it
    Image.open(coffee).convert("RGB").save(patients / PATIENT / "grin.png")
    Image.open(photo_paths()["grace_hopper"]).save(patients / PATIENT / "rest.png")  # the workflow's 'patient rest'
    out = tmp_path / "out"
    r = run_runner(api("palsy_codc"), host.url, patients, out, *NO_ARCFACE, "--donor", photo_paths()["astronaut"],
                   "--expressions", "grin")
    assert r.returncode == 1, r.stdout + r.stderr
    graph = json.loads(open(api("palsy_codc")).read())
    nid = next(k for k, n in graph.items() if n["_meta"]["title"] == "patient landmarks")
    assert f"node {nid} (PalsyFaceLandmarks, 'patient landmarks')" in r.stderr and "face" in r.stderr, r.stderr
    job = json.loads((out / "manifest.json").read_text())["jobs"][f"{PATIENT}/grin/a_man_1"]
    assert job["status"] == "failed" and job["error"].startswith(f"node {nid} (PalsyFaceLandmarks")
    assert "grin.png" not in r.stderr and str(patients) not in r.stderr  # the server never knew the name


def test_a_refused_workflow_names_the_node(host, tmp_path):
    patients = make_patients(tmp_path / "p", ["rest"])
    r = run_runner(api("palsy_pf"), host.url, patients, tmp_path / "out", *NO_ARCFACE,
                   "--set", "checkpoint.ckpt_name=no_such_model.safetensors")
    assert r.returncode == 2, r.stdout + r.stderr
    nid = next(k for k, n in json.loads(open(api("palsy_pf")).read()).items() if n["_meta"]["title"] == "checkpoint")
    assert f"node {nid} (CheckpointLoaderSimple, 'checkpoint')" in r.stderr and "no_such_model" in r.stderr, r.stderr


def test_two_runners_on_one_server_both_finish(host, tmp_path):
    procs = []
    for k in range(2):
        patients = make_patients(tmp_path / f"p{k}", ["rest", "grin"])
        cmd = runner_cmd(api("palsy_pf"), host.url, patients, tmp_path / f"out{k}", *NO_ARCFACE, "--seeds", str(7200 + k))
        procs.append(subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for k, p in enumerate(procs):
        stdout, stderr = p.communicate(timeout=600)
        assert p.returncode == 0, stdout + stderr
        assert sorted(os.path.relpath(f, tmp_path / f"out{k}") for f in pngs(tmp_path / f"out{k}")) == [
            f"{PATIENT}/grin/a_man_{7200 + k}.png", f"{PATIENT}/rest/a_man_{7200 + k}.png"]


def test_uploads_are_hashed_and_stripped_and_the_manifest_holds_no_paths(host, tmp_path):
    exif = Image.Exif()
    exif[0x010E] = "SECRET-PATIENT-NAME-0042"  # ImageDescription, as some clinic cameras fill in
    patients = make_patients(tmp_path / "p", ["whistle"], ext=".jpg", exif=exif.tobytes())
    out = tmp_path / "out"
    r = run_runner(api("palsy_pf"), host.url, patients, out, *NO_ARCFACE, "--seeds", "7300", "--keep-uploads")
    assert r.returncode == 0, r.stdout + r.stderr
    uploaded = upload_paths(host)
    # input/palsysim/<run: 32 hex>/<24 hex>.png
    assert uploaded and all(len(r) == 32 and len(f) == 28 and f.endswith(".png") for r, f in map(os.path.split, uploaded))
    for f in uploaded:
        assert b"SECRET-PATIENT" not in open(os.path.join(host.input_dir, "palsysim", f), "rb").read()
    text = (out / "manifest.json").read_text()
    for secret in (str(tmp_path), "whistle.jpg", "SECRET"):
        assert secret not in text


def upload_paths(host):
    """{run/name} of the runners' uploads on the server (input/palsysim/<run>/<name>)."""
    folder = os.path.join(host.input_dir, "palsysim")
    return {os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs}


def upload_names(host):
    return {os.path.basename(p) for p in upload_paths(host)}


def test_the_runner_deletes_its_uploads_from_the_server_unless_asked_to_keep_them(host, tmp_path):
    from palsysim.comfy.plan import content_name, photo_png
    patients = make_patients(tmp_path / "p", ["wink"], size=232)  # a size no other test uploads
    ours = content_name(photo_png(str(patients / PATIENT / "wink.png")))
    r = run_runner(api("palsy_pf"), host.url, patients, tmp_path / "out", *NO_ARCFACE, "--seeds", "7310")
    assert r.returncode == 0, r.stdout + r.stderr
    assert ours not in upload_names(host)
    r = run_runner(api("palsy_pf"), host.url, patients, tmp_path / "out2", *NO_ARCFACE, "--seeds", "7310",
                   "--keep-uploads")
    assert r.returncode == 0, r.stdout + r.stderr
    run = next(os.path.dirname(p) for p in upload_paths(host) if p.endswith(ours))
    # The route deletes content-hash names in input/palsysim/<run>/ only.
    for bad in ({"run": run, "names": ["../../user/x.png"]}, {"run": run, "names": ["rest.png"]},
                {"run": run, "names": "x"}, {"run": "../..", "names": [ours]}, {"names": [ours]}):
        assert requests.post(host.url + "/palsysim/uploads/delete", json=bad).status_code == 400
    delete = {"run": run, "names": [ours]}
    assert requests.post(host.url + "/palsysim/uploads/delete", json=delete).json() == {"deleted": [ours]}
    assert not os.path.exists(os.path.join(host.input_dir, "palsysim", run))  # the empty folder goes too


def test_identities_that_share_a_slug_get_their_own_files(host, tmp_path):
    patients = make_patients(tmp_path / "p", ["rest"])
    out = tmp_path / "out"
    idents = ["男性", "女性", "A man", "a-man"]
    r = run_runner(api("palsy_pf"), host.url, patients, out, *NO_ARCFACE, "--seeds", "7320", "--identities", *idents)
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(os.path.basename(p) for p in pngs(out)) == sorted(
        ["男性_7320.png", "女性_7320.png", "a_man_7320.png", "a_man_2_7320.png"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(j["identity"] for j in manifest["jobs"].values()) == sorted(idents)
    # A later run with one more identity keeps the names already given.
    r = run_runner(api("palsy_pf"), host.url, patients, out, *NO_ARCFACE, "--seeds", "7320",
                   "--identities", "a_man", *idents)
    assert r.returncode == 0 and "4 already done" in r.stdout, r.stdout + r.stderr
    assert "a_man_3_7320.png" in [os.path.basename(p) for p in pngs(out)]


def test_a_resume_redoes_jobs_whose_inputs_changed_and_says_why(host, tmp_path):
    from real_faces import photo_paths
    patients = make_patients(tmp_path / "p", ["rest"])
    out = tmp_path / "out"
    args = (api("palsy_pf"), host.url, patients, out, *NO_ARCFACE, "--seeds", "7330")
    assert run_runner(*args).returncode == 0
    r = run_runner(*args)
    assert "1 already done" in r.stdout and "redone" not in r.stdout, r.stdout
    make_patients(tmp_path / "p", ["rest"], photo="grace_hopper")  # the photo replaced, same file name
    r = run_runner(*args)
    assert r.returncode == 0 and "1 redone: photo changed: 1" in r.stdout, r.stdout + r.stderr
    r = run_runner(*args, "--set", "KSampler.steps=2")
    assert r.returncode == 0 and "1 redone: workflow or --set/--bypass changed: 1" in r.stdout, r.stdout + r.stderr
    # Another workflow into the same --out: not counted as done.
    r = run_runner(api("palsy_codc"), host.url, patients, out, *NO_ARCFACE, "--seeds", "7330",
                   "--donor", photo_paths()["astronaut"])
    assert "0 already done" in r.stdout and "workflow or --set/--bypass changed, donor changed: 1" in r.stdout, \
        r.stdout + r.stderr


@pytest.mark.parametrize("manifest, message", [
    ("{not json", "manifest.json cannot be read (JSONDecodeError"),
    ("[1, 2]", "manifest.json cannot be read (not a runner manifest)"),
    ('{"jobs": [1]}', "manifest.json cannot be read (not a runner manifest)"),
])
def test_a_corrupt_manifest_is_a_message(host, tmp_path, manifest, message):
    patients = make_patients(tmp_path / "p", ["rest"])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "manifest.json").write_text(manifest)
    r = run_runner(api("palsy_pf"), host.url, patients, tmp_path / "out", *NO_ARCFACE, "--seeds", "7340")
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert (tmp_path / "out" / "manifest.json").read_text() == manifest  # kept as it was


def test_unreadable_patient_photos_are_listed_once_before_any_job(host, tmp_path):
    patients = make_patients(tmp_path / "p", ["rest"])
    (patients / PATIENT / "grin.png").write_bytes(b"")
    (patients / PATIENT / "wink.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    before = len(host.get("/history"))
    r = run_runner(api("palsy_pf"), host.url, patients, tmp_path / "out", *NO_ARCFACE)
    assert r.returncode == 2 and "2 photo(s) cannot be read" in r.stderr, r.stderr
    assert "grin.png" in r.stderr and "wink.jpg" in r.stderr and "Traceback" not in r.stderr
    assert len(host.get("/history")) == before


def test_bad_out_and_a_faceless_donor_are_refused_before_anything_runs(host, tmp_path):
    import skimage
    patients = make_patients(tmp_path / "p", ["rest"])
    (tmp_path / "file").write_text("x")
    before = len(host.get("/history"))
    for out, message in ((tmp_path / "file", "is an existing file"), (patients, "is the input"),
                         (patients / PATIENT, "lies inside the input folder")):
        r = run_runner(api("palsy_pf"), host.url, patients, out, *NO_ARCFACE)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    coffee = os.path.join(os.path.dirname(skimage.__file__), "data", "coffee.png")
    r = run_runner(api("palsy_codc"), host.url, patients, tmp_path / "out", *NO_ARCFACE, "--donor", coffee)
    assert r.returncode == 2 and "no face found in --donor coffee.png" in r.stderr, r.stderr
    assert len(host.get("/history")) == before  # nothing was queued


# --- graph edits, no server ----------------------------------------------------------------------

GRAPH = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}, "_meta": {"title": "patient"}},
    "2": {"class_type": "KSampler", "inputs": {"seed": 1, "cfg": 7.5, "model": ["9", 0]}, "_meta": {"title": "s"}},
    "3": {"class_type": "Gate", "inputs": {"image": ["1", 0], "threshold": 0.3}, "_meta": {"title": "gate"}},
    "4": {"class_type": "Save", "inputs": {"images": ["3", 0], "half": False}, "_meta": {"title": "output"}},
}
INFO = {"Gate": {"input": {"required": {"image": ["IMAGE", {}], "threshold": ["FLOAT", {}]}},
                 "output": ["IMAGE", "STRING"]}}


def fresh():
    return json.loads(json.dumps(GRAPH))


def test_set_takes_the_inputs_type_and_finds_nodes_by_id_title_or_type():
    g = fresh()
    wf.set_input(g, *wf.parse_override("KSampler.seed=42"))
    wf.set_input(g, *wf.parse_override("s.cfg=5"))
    wf.set_input(g, *wf.parse_override("4.half=true"))
    wf.set_input(g, *wf.parse_override("patient.image=x.y=z.png"))
    assert g["2"]["inputs"]["seed"] == 42 and g["2"]["inputs"]["cfg"] == 5.0 and g["4"]["inputs"]["half"] is True
    assert g["1"]["inputs"]["image"] == "x.y=z.png"


def test_set_follows_the_type_object_info_declares():
    # The frontend exports a whole-number FLOAT as an int (denoise 1); --set must still take 0.6.
    g = fresh()
    g["2"]["inputs"]["denoise"] = 1
    info = {"KSampler": {"input": {"required": {"denoise": ["FLOAT", {}], "seed": ["INT", {}]}}}}
    wf.set_input(g, *wf.parse_override("KSampler.denoise=0.6"), info)
    assert g["2"]["inputs"]["denoise"] == 0.6
    with pytest.raises(InputError, match=r"takes a number \(int\)"):
        wf.set_input(g, *wf.parse_override("KSampler.seed=1.5"), info)


def test_set_denoise_on_a_ui_exported_workflow_runs_on_the_real_server(host, tmp_path):
    graph = json.loads(open(api("palsy_pf")).read())
    for n in graph.values():
        if n["class_type"] == "KSampler":
            n["inputs"]["denoise"] = 1  # as the frontend sends it
    path = tmp_path / "exported.json"
    path.write_text(json.dumps(graph))
    patients = make_patients(tmp_path / "p", ["rest"])
    r = run_runner(str(path), host.url, patients, tmp_path / "out", *NO_ARCFACE, "--seeds", "7350",
                   "--set", "KSampler.denoise=0.6", "--keep-uploads")  # and its /history, read below
    assert r.returncode == 0, r.stdout + r.stderr
    sent = [e["prompt"][2] for e in host.get("/history").values()
            if any(n["inputs"].get("seed") == 7350 for n in e["prompt"][2].values())]
    assert sent and all(n["inputs"]["denoise"] == 0.6 for g in sent for n in g.values() if n["class_type"] == "KSampler")


@pytest.mark.parametrize("text, message", [
    ("steps=3", "expected NODE.INPUT=VALUE"),
    ("nobody.steps=3", "no node has id, title or type 'nobody'"),
    ("KSampler.steps=3", "has no input 'steps'; it has: seed, cfg, model"),
    ("KSampler.model=x", "is connected to node 9"),
    ("KSampler.seed=1.5", "takes a number (int)"),
    ("output.half=maybe", "takes true or false"),
])
def test_set_refuses_clearly(text, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        wf.set_input(fresh(), *wf.parse_override(text))


def test_bypassing_the_controlnet_keeps_positive_and_negative_apart(host):
    g = json.loads(open(api("palsy_pf")).read())
    by_title = {n["_meta"]["title"]: k for k, n in g.items()}
    wf.bypass(g, "apply controlnet", host.object_info())
    sampler = g[by_title["sampler"]]["inputs"]
    assert sampler["positive"] == [by_title["positive"], 0] and sampler["negative"] == [by_title["negative"], 0]


def test_bypassing_the_gate_drops_the_text_preview_of_its_report(host):
    g = json.loads(open(api("palsy_pf")).read())
    by_title = {n["_meta"]["title"]: k for k, n in g.items()}
    dropped = wf.bypass(g, "privacy gate", host.object_info())
    # Its report has no input to stand in for it; the Preview as Text that showed it goes with it.
    assert dropped == [by_title["privacy gate"], by_title["gate report"]]
    assert g[by_title["output"]]["inputs"]["images"] == [by_title["decode"], 0]
    assert by_title["controlnet report"] in g


def test_bypass_passes_the_same_typed_input_through():
    g = fresh()
    assert wf.bypass(g, "gate", INFO) == ["3"]
    assert "3" not in g and g["4"]["inputs"]["images"] == ["1", 0]
    g = fresh()
    g["4"]["inputs"]["images"] = ["3", 1]  # the STRING output: nothing of that type to pass on
    with pytest.raises(InputError, match="cannot bypass node 3"):
        wf.bypass(g, "Gate", INFO)


def gated_grid(path):
    """A grid-shaped API workflow whose 'generated' rows are the patient's own photos: row 1 checked
    against the donor, row 2 against the patient's rest photo (dlib, a real recogniser), so the gate
    holds back a different part of each row. The runner must still name every saved image by its item."""
    g = {str(i + 1): {"class_type": "LoadImage", "inputs": {"image": "x.png"}, "_meta": {"title": f"patient {e}"}}
         for i, e in enumerate(ITEMS)}
    def add(kind, title=None, **inputs):
        nid = str(len(g) + 1)
        g[nid] = {"class_type": kind, "inputs": inputs, "_meta": {"title": title or kind}}
        return [nid, 0]
    photos = add("PalsyYanagiharaBatch", **{e: [str(i + 1), 0] for i, e in enumerate(ITEMS)})
    add("PalsyLines", "identities", text="a man\na woman")
    rows = add("RebatchImages", images=add("ImageBatch", image1=photos, image2=photos), batch_size=len(ITEMS))
    donor = add("LoadImage", "donor", image="x.png")
    rest = add("ImageFromBatch", image=photos, batch_index=0, length=1)
    refs = add("RebatchImages", images=add("ImageBatch", image1=donor, image2=rest), batch_size=1)
    gate = add("PalsyPrivacyGate", "privacy gate", image=rows, reference=refs, model_name="none", threshold=0.5,
               backend="dlib", dlib_threshold=0.6)
    add("PalsySaveAnonymized", "output", images=gate, filename_prefix="palsysim/gated_grid", method_summary="")
    sheet = add("PalsyLabelledGrid", "grid", images=[gate[0], 3], columns=len(ITEMS), column_labels="",
                row_labels="a man\na woman", tile_size=64)
    add("PalsySaveAnonymized", "grid output", images=sheet, filename_prefix="palsysim/gated_sheet", method_summary="")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(g, f)
    return path


def test_a_grid_row_the_gate_partly_holds_back_keeps_each_image_under_its_item(host, tmp_path):
    import numpy as np
    from real_faces import photo_paths

    from palsysim.base.photos import letterbox, read_image
    who = ["grace_hopper", "astronaut", "tom_hanks", "grace_hopper", "noise", "astronaut", "tom_hanks",
           "grace_hopper", "astronaut", "tom_hanks"]
    folder = tmp_path / "patients" / PATIENT
    folder.mkdir(parents=True)
    paths = photo_paths()
    for e, w in zip(ITEMS, who):
        if w == "noise":
            Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), np.uint8)).save(folder / f"{e}.png")
        else:
            Image.open(paths[w]).convert("RGB").save(folder / f"{e}.png")
    out = tmp_path / "out"
    r = run_runner(gated_grid(tmp_path / "grid.json"), host.url, tmp_path / "patients", out,
                   "--donor", paths["astronaut"], tiny=False)
    assert r.returncode == 0, r.stdout + r.stderr
    # Row "a man" was checked against the astronaut (the donor), row "a woman" against Grace Hopper
    # (the rest photo); the noise has no face. Each is held back where it matches, and kept elsewhere.
    expected = {f"{PATIENT}/{e}/a_man_0.png" for e, w in zip(ITEMS, who) if w in ("grace_hopper", "tom_hanks")}
    expected |= {f"{PATIENT}/{e}/a_woman_0.png" for e, w in zip(ITEMS, who) if w in ("astronaut", "tom_hanks")}
    assert {os.path.relpath(p, out) for p in pngs(out)} == expected | {f"{PATIENT}/grid_0.png"}
    first = read_image(folder / f"{ITEMS[0]}.png")
    for rel in expected:
        item = rel.split("/")[1]
        want = letterbox(read_image(folder / f"{item}.png"), *first.shape[:2])
        got = np.asarray(Image.open(out / rel).convert("RGB")).astype(int)
        assert np.abs(got - want).max() <= 1, rel  # the photo of that very item
    # The sheet keeps every place: a kept image's tile is drawn from it, a held-back one's is the grey
    # "held back" tile, with no pixel of the photo it stands for.
    from palsysim.face.draw import held_back_tile
    grey = letterbox(held_back_tile(*first.shape[:2]), 64, 64, fill=24).astype(int)
    sheet = np.asarray(Image.open(out / PATIENT / "grid_0.png").convert("RGB")).astype(int)
    assert sheet.shape == (2 * (64 + 28), 10 * 64, 3)
    for r, identity in enumerate(("a_man", "a_woman")):
        for c, e in enumerate(ITEMS):
            tile = sheet[r * 92:r * 92 + 64, c * 64:(c + 1) * 64]
            kept = f"{PATIENT}/{e}/{identity}_0.png" in expected
            assert np.array_equal(tile, grey) != kept, (identity, e)
