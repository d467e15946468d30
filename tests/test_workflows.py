"""The shipped workflows: UI files parse, the template browser lists them, the API twins are the
script's output, and each twin runs headless on the real host with tiny models."""
import glob
import io
import json
import os
import re
import sys
import urllib.parse

import numpy as np
import pytest
import requests
from host import TINY_CHECKPOINT, TINY_CONTROLNET
from PIL import Image
from real_faces import photo_paths, write_expression_video
from runner_helpers import NO_ARCFACE, PATIENT, REPO, WORKFLOWS, api, make_patients, png_chunks, pngs, run_runner
from shipped_workflows import NAMES, TITLES, readme_templates

from palsysim.base.paths import API_DIR, TEMPLATES_DIR
from palsysim.base.video_files import read_video
from palsysim.base.vocabulary import ITEMS
from palsysim.base.workflows import template_path
from palsysim.comfy import workflow as wf

sys.path.insert(0, os.path.join(REPO, "scripts"))
from make_thumbnails import encode, render  # noqa: E402
from workflow_to_api import twins  # noqa: E402

UI = {n: template_path(n) for n in NAMES}


def test_the_shipped_set():
    # The frontend's documented templates folder holds the UI files and their thumbnails, one level;
    # the API twins live outside it, so the template browser never lists them.
    assert sorted(os.listdir(TEMPLATES_DIR)) == sorted(os.path.basename(p)[:-5] + x for p in UI.values()
                                                          for x in (".json", ".jpg"))
    assert os.path.dirname(API_DIR) == WORKFLOWS and os.listdir(WORKFLOWS) == ["api"]
    assert sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(API_DIR, "*.json"))) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_ui_file_is_a_comfyui_workflow(name):
    wf = json.load(open(UI[name], encoding="utf-8"))
    assert wf["version"] == 0.4 and isinstance(wf["nodes"], list) and isinstance(wf["links"], list)
    nodes = {n["id"]: n for n in wf["nodes"]}
    assert len(nodes) == len(wf["nodes"]), "duplicate node ids"
    assert wf["last_node_id"] >= max(nodes) and wf["last_link_id"] >= max(l[0] for l in wf["links"])
    for link_id, src, src_slot, dst, dst_slot, kind in wf["links"]:
        # Both ends agree with the link, as the frontend requires to draw it.
        assert link_id in nodes[src]["outputs"][src_slot]["links"]
        assert nodes[dst]["inputs"][dst_slot]["link"] == link_id
        assert nodes[src]["outputs"][src_slot]["type"] == kind
    for n in nodes.values():
        assert isinstance(n["type"], str) and isinstance(n.get("widgets_values", []), list)
        for i in n.get("inputs", []):
            assert i["link"] is None or any(l[0] == i["link"] for l in wf["links"])
    for sub in wf.get("definitions", {}).get("subgraphs", []):  # the grid's photos: one node on the canvas
        assert [n["title"] for n in nodes.values() if n["type"] == sub["id"]], "a subgraph no node stands for"
        inner = {n["id"]: n for n in sub["nodes"]}
        assert not set(inner) & set(nodes), "the frontend counts node ids across the subgraphs"
        for link in sub["links"]:
            assert link["id"] in inner[link["origin_id"]]["outputs"][link["origin_slot"]]["links"]
            if link["target_id"] == -20:
                assert link["id"] in sub["outputs"][link["target_slot"]]["linkIds"]
            else:
                assert inner[link["target_id"]]["inputs"][link["target_slot"]]["link"] == link["id"]
    text = json.dumps(wf)
    assert "ID photo of <identity> wearing light-blue surgical cap and top" in text
    assert "v1-5-pruned-emaonly.safetensors" in text
    assert "control_sd15_canny.pth" in text or "palsy_partial.safetensors" in text  # stock or fine-tuned
    assert all(n["type"] != "SaveImage" for n in nodes.values()), "outputs must go through PalsySaveAnonymized"
    assert os.path.isfile(UI[name][:-5] + ".jpg"), "thumbnail missing"


def test_thumbnails_are_what_the_script_draws_now():
    # The core draws the thumbnails from the sample photos (scripts/make_thumbnails.py): one not drawn again after
    # the code changed shows what the workflow no longer makes. Drawn with the legacy Face Mesh (the embedded
    # environment; conftest's NEEDS_LEGACY says why not the Tasks API); 0.2% may differ for another CPU's vector
    # paths in OpenCV and the JPEG encoder.
    for path, image in render().items():
        shipped = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
        drawn = np.asarray(Image.open(io.BytesIO(encode(path, image))).convert("RGB"), dtype=np.int16)
        assert shipped.shape == drawn.shape, f"{path} is stale: run scripts/make_thumbnails.py"
        off = (np.abs(shipped - drawn).max(axis=2) > 32).mean()
        assert off < 0.002, f"{path} is stale ({off:.2%} of its pixels differ): run scripts/make_thumbnails.py"


def _sources(graph, nid, stop=None):
    """Ids of the nodes whose outputs feed node nid, directly or further up (not past nodes of type stop)."""
    seen, todo = set(), [nid]
    while todo:
        for v in graph[todo.pop()]["inputs"].values():
            if isinstance(v, list) and v[0] not in seen:
                seen.add(v[0])
                if graph[v[0]]["class_type"] != stop:
                    todo.append(v[0])
    return seen


@pytest.mark.parametrize("name", NAMES)
def test_twin_is_gated_cropped_and_says_what_it_ran(name):
    graph = json.load(open(api(name), encoding="utf-8"))
    kinds = {n: graph[n]["class_type"] for n in graph}
    assert not {"SaveImage", "PreviewImage"} & set(kinds.values()), "core save/preview write the workflow into PNGs"
    saves = [n for n, k in kinds.items() if k in ("PalsySaveAnonymized", "PalsySaveAnonymizedVideo")]
    assert saves
    for n in saves:
        # Every generated pixel saved passed a privacy gate: no decode is reached without going through one.
        unchecked = _sources(graph, n, stop="PalsyPrivacyGate")
        assert "PalsyPrivacyGate" in {kinds[s] for s in unchecked}
        assert "VAEDecode" not in {kinds[s] for s in unchecked}, (name, n)
        if kinds[n] == "PalsySaveAnonymizedVideo":  # an mp4 holds no summary; the gate's verdict holds it back
            assert [kinds[graph[n]["inputs"][i][0]] for i in ("held_back", "gate_report")] == ["PalsyPrivacyGate"] * 2
            continue
        # The summary is the loader's account of what it loaded.
        summary = graph[n]["inputs"]["method_summary"]
        assert isinstance(summary, list) and kinds[summary[0]] == "PalsyTimestepWindowControlNetLoader"
    for n, k in kinds.items():
        if k == "PalsyTimestepWindowControlNetLoader":
            assert graph[n]["inputs"]["t_lo"] == -1 and graph[n]["inputs"]["t_hi"] == -1
        if k == "LoadImage":  # each photo reaches the conditions only through the training face crop
            users = [m for m in graph if any(v == [n, 0] for v in graph[m]["inputs"].values() if isinstance(v, list))]
            # (PalsyVideoConditions crops the donor itself, as PalsyFaceCrop would)
            assert {kinds[m] for m in users} <= {"PalsyFaceLandmarks", "PalsyFaceCrop", "PalsyYanagiharaBatch",
                                                  "PalsyVideoConditions"}, (name, n)
    for n, k in kinds.items():
        if k in ("PalsyPFCondition", "PalsyOrganCropResize", "PalsyContourReposition", "PalsyPrivacyGate"):
            assert any(kinds[s] == "PalsyFaceCrop" for s in _sources(graph, n)), (name, n)


def test_the_grid_is_one_chain_over_the_items_and_identities():
    graph = json.load(open(api("palsy_yanagihara_grid"), encoding="utf-8"))
    kinds = [n["class_type"] for n in graph.values()]
    # One generation chain (it runs once per identity line), one gate, one save of the images.
    for kind in ("KSampler", "PalsyPrivacyGate", "PalsyYanagiharaBatch", "PalsyLines", "PalsyLabelledGrid"):
        assert kinds.count(kind) == 1, kind
    (batch,) = [n for n in graph.values() if n["class_type"] == "PalsyYanagiharaBatch"]
    assert [graph[batch["inputs"][e][0]]["_meta"]["title"] for e in ITEMS] == [f"patient {e}" for e in ITEMS]
    (grid,) = [n for n in graph.values() if n["class_type"] == "PalsyLabelledGrid"]
    assert graph[grid["inputs"]["column_labels"][0]]["class_type"] == "PalsyYanagiharaBatch"
    assert graph[grid["inputs"]["images"][0]]["class_type"] == "PalsyPrivacyGate"  # its slots: held back in grey


def test_template_browser_lists_and_serves_them(host):
    listed = host.get("/workflow_templates")
    assert sorted(listed.get("palsysim", [])) == sorted(TITLES.values()), listed
    for title in TITLES.values():
        # The frontend fetches a custom node's template and its thumbnail from these URLs.
        base = f"{host.url}/api/workflow_templates/palsysim/{urllib.parse.quote(title)}"
        r = requests.get(base + ".json", timeout=30)
        assert r.status_code == 200 and r.json()["nodes"]
        r = requests.get(base + ".jpg", timeout=30)
        assert r.status_code == 200 and r.content[:3] == b"\xff\xd8\xff"


def test_api_twins_are_the_scripts_output(host):
    for path, text in twins(host.object_info(), [UI[n] for n in NAMES]).items():
        assert open(path, encoding="utf-8").read() == text, f"{path} is stale: run scripts/workflow_to_api.py"


def test_a_subgraph_is_sent_as_its_inner_nodes(host):
    # The grid's photos are a subgraph with outputs only; here its condition preview moves into one more, fed
    # through the subgraph's input (node -10): the frontend sends it as "<outer>:<inner>", linked to the PF
    # condition outside, and nothing for the subgraph node.
    ui = json.load(open(UI["palsy_yanagihara_grid"], encoding="utf-8"))
    twin = json.load(open(api("palsy_yanagihara_grid"), encoding="utf-8"))
    (show,) = [n for n in ui["nodes"] if n["title"] == "condition preview"]
    (link,) = [l for l in ui["links"] if l[0] == show["inputs"][0]["link"]]
    sid = "0f0f0f0f-0000-4000-8000-000000000001"
    ui["definitions"]["subgraphs"].append({
        "id": sid, "name": "preview", "inputs": [{"name": "images", "type": "IMAGE", "linkIds": [1]}],
        "outputs": [], "nodes": [dict(show, inputs=[dict(show["inputs"][0], link=1)])], "links": [
            {"id": 1, "origin_id": -10, "origin_slot": 0, "target_id": show["id"], "target_slot": 0, "type": "IMAGE"}]})
    outer = 900
    ui["nodes"][ui["nodes"].index(show)] = {"id": outer, "type": sid, "mode": 0, "outputs": [],
                                            "inputs": [{"name": "images", "type": "IMAGE", "link": link[0]}]}
    link[3] = outer
    sent = wf.to_api(ui, host.object_info())
    moved = twin.pop(str(show["id"]))
    assert sent.pop(f"{outer}:{show['id']}") == moved and moved["inputs"]["images"][0] == str(link[1])
    assert sent == twin


def test_api_twins_use_only_installed_nodes_and_inputs(host):
    info = host.object_info()
    for name in NAMES:
        for nid, node in json.load(open(api(name), encoding="utf-8")).items():
            spec = info[node["class_type"]]["input"]
            known = {**spec.get("required", {}), **spec.get("optional", {})}
            assert set(node["inputs"]) <= set(known) | set(wf.FRONTEND_WIDGETS.get(node["class_type"], ())), (name, nid)
            assert set(spec.get("required", {})) <= set(node["inputs"]), (name, nid)


def run_and_check(host, tmp_path, name, expressions, expected, *extra):
    patients = make_patients(tmp_path / "patients", expressions)
    out = tmp_path / "out"
    # Tiny models sample noise, not faces: the gates (which need a face) are bypassed.
    bypass = ["--bypass", "PalsyPrivacyGate"] if name == "palsy_yanagihara_grid" else NO_ARCFACE
    r = run_runner(api(name), host.url, patients, out, *bypass, *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    files = [os.path.relpath(p, out) for p in pngs(out)]
    assert sorted(files) == sorted(expected), files
    # What the runner downloaded, and what the server keeps in its own output folder.
    secrets = [PATIENT, str(tmp_path)] + [e + ".png" for e in expressions]
    for p in pngs(out) + pngs(os.path.join(host.output_dir, "palsysim")):
        assert_anonymous(p, secrets)
    for p in pngs(out):  # the gate was bypassed: the stamp must not claim a check
        with Image.open(p) as im:
            assert im.text["Description"].startswith("Synthetic face made by PalsySim: SD1.5 + "), im.text
            assert im.text["Description"].endswith("\nIdentity not checked: no privacy gate ran before this save.")
    return out


def assert_anonymous(path, secrets):
    """Pixels plus at most the method summary; no trace of the patient's folder or file names."""
    chunks = png_chunks(path)
    kinds = [k for k, _ in chunks]
    assert set(kinds) <= {"IHDR", "IDAT", "IEND", "iTXt"}, (path, kinds)
    for kind, data in chunks:
        if kind == "iTXt":
            assert data.startswith(b"Description\x00"), data[:40]
            assert b"prompt" not in data and b"workflow" not in data
    raw = open(path, "rb").read()
    for secret in secrets:
        assert secret.encode() not in raw, (path, secret)


@pytest.mark.parametrize("name", ["palsy_pf", "palsy_zero_shot"])
def test_single_workflows_give_one_image_per_job(host, tmp_path, name):
    run_and_check(host, tmp_path, name, ["rest", "grin"],
                  [f"{PATIENT}/{e}/{i}_3.png" for e in ("rest", "grin") for i in ("a_man", "a_woman")],
                  "--identities", "a man", "a woman", "--seeds", "3")


def test_codc_workflow_with_a_donor(host, tmp_path):
    from real_faces import photo_paths
    run_and_check(host, tmp_path, "palsy_codc", ["rest", "wink"], [f"{PATIENT}/{e}/a_man_1.png" for e in ("rest", "wink")],
                  "--donor", photo_paths()["grace_hopper"])


def test_each_codc_job_gets_its_patients_rest_photo(host, tmp_path):
    from real_faces import photo_paths

    from palsysim.base.photos import read_image, write_image
    from palsysim.comfy.plan import content_name, photo_png
    from palsysim.face.landmarks import face_landmarks
    from palsysim.face.synth import synth_expression
    rest = read_image(photo_paths()["grace_hopper"])
    folder = tmp_path / "p" / PATIENT
    write_image(str(folder / "rest.png"), rest)
    write_image(str(folder / "wink.jpg"), synth_expression(rest, face_landmarks(rest), "wink")[0])
    donor = photo_paths()["astronaut"]
    # Only the wink is generated; its prompt still takes the rest photo, which must be read, not skipped.
    r = run_runner(api("palsy_codc"), host.url, tmp_path / "p", tmp_path / "out", *NO_ARCFACE, "--donor", donor,
                   "--expressions", "wink", "--seeds", "7421", "--keep-uploads")  # /history read below
    assert r.returncode == 0, r.stdout + r.stderr
    assert [os.path.relpath(p, tmp_path / "out") for p in pngs(tmp_path / "out")] == [f"{PATIENT}/wink/a_man_7421.png"]
    (graph,) = [e["prompt"][2] for e in host.get("/history").values()
                if any(n["inputs"].get("seed") == 7421 for n in e["prompt"][2].values())]
    loads = {wf.title(graph, n): node["inputs"]["image"] for n, node in graph.items() if node["class_type"] == "LoadImage"}
    want = {"patient": folder / "wink.jpg", "patient rest": folder / "rest.png", "donor": donor}
    assert {t: os.path.basename(v) for t, v in loads.items()} == {t: content_name(photo_png(str(p))) for t, p in want.items()}

    os.unlink(folder / "rest.png")  # a patient without one is refused before any job, naming the fix
    r = run_runner(api("palsy_codc"), host.url, tmp_path / "p", tmp_path / "out2", *NO_ARCFACE, "--donor", donor)
    assert r.returncode != 0 and f"{PATIENT} has no rest photo" in r.stderr and "add <patient>/rest.png" in r.stderr, r.stderr
    assert not pngs(tmp_path / "out2")


def test_grid_gives_ten_images_per_identity_and_the_sheet(host, tmp_path):
    out = run_and_check(host, tmp_path, "palsy_yanagihara_grid", list(ITEMS),
                        [f"{PATIENT}/{e}/{i}_1.png" for e in ITEMS for i in ("a_man", "a_woman", "an_elderly_woman")]
                        + [f"{PATIENT}/grid_1.png"])
    from PIL import Image
    w, h = Image.open(out / PATIENT / "grid_1.png").size
    assert w == 10 * 256 and h > 3 * 256  # rows of 10 tiles (256 px, labels beneath), one row per identity


def test_video_workflow_saves_an_mp4_of_every_frame(host, tmp_path):
    # A 6-frame grin (rest -> grin -> rest, left palsy) at 12 fps, uploaded under a patient's name.
    clip = host.upload_image(write_expression_video(tmp_path / f"{PATIENT}_grin.mp4", frames=6, fps=12.0))
    donor = host.upload_image(photo_paths()["astronaut"])
    info, graph = host.object_info(), json.load(open(api("palsy_video"), encoding="utf-8"))
    for ref, key, value in (("patient video", "file", clip), ("donor", "image", donor),
                            ("checkpoint", "ckpt_name", TINY_CHECKPOINT),
                            ("controlnet", "control_net_name", TINY_CONTROLNET),
                            ("video conditions", "size", 64), ("KSampler", "steps", 2)):
        wf.set_input(graph, ref, key, value, info)
    wf.bypass(graph, "privacy gate", info)  # tiny models sample noise, not faces: the gate would hold it all back
    result = host.run(graph)
    assert result.ok, result.error
    (save,) = wf.find(graph, "output")
    (saved,) = result.outputs[save]["palsysim_video"]
    path = os.path.join(host.output_dir, saved["subfolder"], saved["filename"])
    frames, fps = read_video(path)
    assert len(frames) == 6 and fps == pytest.approx(12.0) and frames[0].shape == (64, 64, 3)
    assert result.outputs[save]["text"] == ["saved 6 frames at 12 fps as mp4"]
    assert PATIENT not in path and PATIENT.encode() not in open(path, "rb").read()


def _note(name):
    (note,) = [n for n in json.load(open(UI[name], encoding="utf-8"))["nodes"] if n["type"] == "MarkdownNote"]
    return note["widgets_values"][0]


@pytest.mark.parametrize("name", NAMES)
def test_pf_codc_and_video_load_the_fine_tuned_net_and_say_how_to_make_it(name):
    from palsysim.base.workflows import STOCK_CONTROLNET, TRAIN_COMMAND, TRAINED_CONTROLNET
    graph = json.load(open(api(name), encoding="utf-8"))
    (loader,) = [n for n in graph.values() if n["class_type"] == "PalsyTimestepWindowControlNetLoader"]
    trained = name in ("palsy_pf", "palsy_codc", "palsy_video")
    # The paper's methods sample with the net training writes (its window read from the file, -1); the
    # zero-shot baseline and the grid with the stock one.
    assert loader["inputs"]["control_net_name"] == (TRAINED_CONTROLNET if trained else STOCK_CONTROLNET)
    assert loader["inputs"]["apply"] == "everywhere" and loader["inputs"]["t_lo"] == loader["inputs"]["t_hi"] == -1
    note = _note(name)
    # The note names the file and the training line that makes it, README's own.
    assert (f"`{TRAIN_COMMAND}`" in note) == trained and (TRAINED_CONTROLNET in note) == trained
    readme = re.sub(r"\s*\\\n\s*", " ", open(os.path.join(REPO, "README.md"), encoding="utf-8").read())
    assert TRAIN_COMMAND.replace("python", ".venv/bin/python", 1) in readme
    assert "--mode" not in TRAIN_COMMAND and "--t-min" not in TRAIN_COMMAND  # partial, 500..700: the defaults


@pytest.mark.parametrize("name", NAMES)
def test_the_window_is_tied_to_no_sampler_setting_and_its_steps_come_from_the_run(name):
    # Frontend 1.32.9's Refresh Node Definitions turns combo Primitives into 'C': no Primitive node, and
    # the sampler's settings are its own widgets, linked to nothing.
    ui = json.load(open(UI[name], encoding="utf-8"))
    assert [n["title"] for n in ui["nodes"] if n["type"] == "PrimitiveNode"] == []
    graph = json.load(open(api(name), encoding="utf-8"))
    kinds = {n: graph[n]["class_type"] for n in graph}
    (loader,) = [n for n, k in kinds.items() if k == "PalsyTimestepWindowControlNetLoader"]
    assert not {"steps", "sampler_name", "scheduler"} & set(graph[loader]["inputs"])
    (sampler,) = [n for n, k in kinds.items() if k == "KSampler"]
    assert all(not isinstance(graph[sampler]["inputs"][k], list) for k in ("steps", "sampler_name", "scheduler"))
    # The report of the steps in the window follows the sampling and reads the loader's net.
    (report,) = [n for n in graph if wf.title(graph, n) == "controlnet report"]
    steps = graph[report]["inputs"]["source"][0]
    assert kinds[steps] == "PalsyWindowSteps"
    assert graph[steps]["inputs"] == {"control_net": [loader, 0], "samples": [sampler, 0]}


def test_the_grids_gate_report_names_each_identity():
    # The gate runs once per identity line and Preview as Text shows only the first text it gets: the report
    # shown is the sheet's, one text naming each row's (identity's) outcome.
    graph = json.load(open(api("palsy_yanagihara_grid"), encoding="utf-8"))
    (report,) = [n for n in graph if wf.title(graph, n) == "gate report"]
    sheet = graph[graph[report]["inputs"]["source"][0]]
    assert sheet["class_type"] == "PalsyLabelledGrid" and graph[report]["inputs"]["source"][1] == 1
    assert graph[sheet["inputs"]["reports"][0]]["class_type"] == "PalsyPrivacyGate"
    assert graph[sheet["inputs"]["row_labels"][0]]["class_type"] == "PalsyLines"


@pytest.mark.parametrize("name", ["palsy_pf", "palsy_zero_shot"])
def test_the_experiments_graphs_crop_each_face_once(host, tmp_path, name):
    # Training's conditions are Canny of one face crop at the training resolution; a PF condition that crops
    # the face crop again resamples it a second time and frames it anew, out of what the net was trained on.
    from palsysim.experiment.config import Experiment
    from palsysim.experiment.stages import settings_edit
    exp = Experiment(root=str(tmp_path), patients="", donors="", checkpoint="c.safetensors",
                     controlnet="n.safetensors", generate={"resolution": 96, "steps": 2, "sampler": "euler",
                                                           "scheduler": "normal", "cfg": 7.0})
    graph = json.load(open(api(name), encoding="utf-8"))
    settings_edit(exp, None)(graph, host.object_info())
    crops = [n for n in graph.values() if n["class_type"] == "PalsyFaceCrop"]
    assert crops and {n["inputs"]["size"] for n in crops} == {96}
    for node in graph.values():
        if node["class_type"] == "PalsyPFCondition":
            assert graph[node["inputs"]["image"][0]]["class_type"] == "PalsyFaceCrop"
            assert node["inputs"]["size"] == 0, "the PF condition crops the face crop again"


def test_readme_counts_each_templates_nodes():
    table = readme_templates()
    assert sorted(table) == NAMES
    for name in NAMES:
        assert table[name][0] == len(json.load(open(UI[name], encoding="utf-8"))["nodes"]), name
