"""The nodes the shipped workflows are built from, through the real host: the face crop gives the CLI's
condition pixel for pixel, previews and saves write no metadata, the loader says what it loaded."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from host import TINY_CONTROLNET
from real_faces import photo_paths
from runner_helpers import REPO, api, png_chunks

from palsysim.comfy import workflow as wf


def _upstream(graph, nid, keep=None):
    """The node ids nid depends on, itself included."""
    keep = set() if keep is None else keep
    if nid not in keep:
        keep.add(nid)
        for v in graph[nid]["inputs"].values():
            if isinstance(v, list):
                _upstream(graph, v[0], keep)
    return keep


def _condition_graph(name, photos):
    """The shipped twin cut at its condition node, with a pixels-only save of the condition."""
    graph = json.load(open(api(name), encoding="utf-8"))
    cond = next(n for n in graph if wf.title(graph, n) in ("CODC condition", "PF condition"))
    out = {n: graph[n] for n in _upstream(graph, cond)}
    for n, node in out.items():
        if node["class_type"] == "LoadImage":
            node["inputs"]["image"] = photos[wf.title(graph, n)]
    out["save"] = {"class_type": "PalsySaveAnonymized",
                   "inputs": {"images": [cond, 0], "filename_prefix": f"condition_{name}", "method_summary": ""}}
    return out


@pytest.mark.parametrize("name, mode", [("palsy_codc", "codc"), ("palsy_pf", "pf")])
def test_workflow_condition_equals_the_cli(host, tmp_path, name, mode):
    from palsysim.base.photos import read_image, write_image
    from palsysim.face.landmarks import face_landmarks
    from palsysim.face.synth import synth_expression
    paths = photo_paths()
    rest, donor = paths["grace_hopper"], paths["astronaut"]
    patient = str(tmp_path / "grin.png")  # an expression photo: CODC moves each organ as far as it moved from rest
    image = read_image(rest)
    write_image(patient, synth_expression(image, face_landmarks(image), "grin")[0])
    photos = {"patient": host.upload_image(patient), "donor": host.upload_image(donor),
              "patient rest": host.upload_image(rest)}
    r = host.run(_condition_graph(name, photos))
    assert r.ok, r.error
    (got,) = host.images(r, "save")
    cli_out = tmp_path / "cli.png"
    cmd = [sys.executable, "-m", "palsysim", "condition", "--patient", patient, "--mode", mode, "--out", str(cli_out)]
    cmd += ["--donor", donor, "--rest", rest] if mode == "codc" else []
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    want = read_image(str(cli_out))
    assert got.shape == want.shape == (512, 512, 3)
    assert (got[..., 0] > 0).sum() > 1000  # a real edge map, not an empty one
    np.testing.assert_array_equal(got, want)


def _chunk_kinds(path):
    return [k for k, _ in png_chunks(path)]


def test_preview_writes_pixels_only(host):
    name = host.upload_image(photo_paths()["astronaut"], name="zq_secret_patient_name.png")
    r = host.run({"1": {"class_type": "LoadImage", "inputs": {"image": name}},
                  "2": {"class_type": "PalsyPreview", "inputs": {"images": ["1", 0]}}})
    assert r.ok, r.error
    (path,) = host.image_paths(r, "2")
    assert path.startswith(host.temp_dir)
    assert set(_chunk_kinds(path)) <= {"IHDR", "IDAT", "IEND"}
    assert b"zq_secret_patient_name" not in open(path, "rb").read()
    assert host.images(r, "2")[0].shape == (512, 512, 3)


def _loader(name, **kw):
    return {"class_type": "PalsyTimestepWindowControlNetLoader",
            "inputs": {"control_net_name": name, "apply": "everywhere", "t_lo": -1, "t_hi": -1,
                       "base_control_net_name": "(none)", **kw}}


def _summary(host, loader):
    r = host.run({"1": loader, "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 2]}}})
    assert r.ok, r.error
    return "".join(r.outputs["2"]["text"])


def test_loader_summary_says_what_was_loaded(host):
    from tiny_models import tiny_controlnet_state_dict

    from palsysim.controlnet.file import save_controlnet

    # A stock net (no window metadata) at t -1: no window needed, and the summary says zero-shot.
    assert _summary(host, _loader(TINY_CONTROLNET)).endswith("stock ControlNet, zero-shot (no fine-tuning).")
    path = host.model_path("controlnet", "summary_full_0_999.safetensors")
    if not os.path.exists(path):
        save_controlnet(path, tiny_controlnet_state_dict(3), t_lo=0, t_hi=999, mode="full",
                        base_model="v1-5-pruned-emaonly.safetensors")
        host.refresh_models()
    text = _summary(host, _loader("summary_full_0_999.safetensors", apply="window_only"))
    assert "fine-tuned (full)" in text and "timesteps 0..999" in text and "window only" in text
    assert "safetensors" not in text  # no file names in what is written into images


@pytest.mark.parametrize("inputs, message", [
    ({"method_summary": "fine\x00tuned"}, "control character"),
    ({"method_summary": "x" * 2001}, "2001 characters"),
    ({"filename_prefix": ""}, "filename_prefix is empty"),
    ({"filename_prefix": "palsysim/"}, "filename_prefix is empty"),
    ({"filename_prefix": "palsysim/.hidden"}, "hidden files"),
])
def test_save_refuses_bad_text(host, inputs, message):
    before = set(os.listdir(host.output_dir))
    name = host.upload_image(photo_paths()["astronaut"])
    r = host.run({"1": {"class_type": "LoadImage", "inputs": {"image": name}},
                  "2": {"class_type": "PalsySaveAnonymized",
                        "inputs": {"images": ["1", 0], "filename_prefix": "palsysim/ok", "method_summary": "",
                                   **inputs}}})
    assert r.status == "invalid" and message in r.error, r.error
    assert set(os.listdir(host.output_dir)) == before


def test_save_takes_a_multiline_summary(host):
    name = host.upload_image(photo_paths()["astronaut"])
    text = "Synthetic face\n\tSD1.5 + ControlNet, 日本語 ok"
    r = host.run({"1": {"class_type": "LoadImage", "inputs": {"image": name}},
                  "2": {"class_type": "PalsySaveAnonymized",
                        "inputs": {"images": ["1", 0], "filename_prefix": "palsysim/multiline", "method_summary": text}}})
    assert r.ok, r.error
    (path,) = host.image_paths(r, "2")
    from PIL import Image
    assert Image.open(path).text["Description"] == text + "\nIdentity not checked: no privacy gate ran before this save."


def _grid(host, rows, cols, tile_size=64):
    name = host.upload_image(photo_paths()["astronaut"])
    r = host.run({"1": {"class_type": "LoadImage", "inputs": {"image": name}},
                  "2": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["1", 0]}},
                  "3": {"class_type": "PalsyLabelledGrid",
                        "inputs": {"images": ["2", 0], "columns": 2, "column_labels": cols, "row_labels": rows,
                                   "tile_size": tile_size}},
                  "4": {"class_type": "PalsySaveAnonymized",
                        "inputs": {"images": ["3", 0], "filename_prefix": "palsysim/grid_labels", "method_summary": ""}}})
    return r, (host.images(r, "4")[0] if r.ok else None)


def test_grid_labels_in_japanese_render(host):
    import glob
    if not glob.glob("/usr/share/fonts/opentype/ipafont-gothic/*.ttf") + glob.glob("/usr/share/fonts/opentype/noto/*CJK*"):
        pytest.skip("no Japanese font installed: apt-get install fonts-ipafont-gothic")
    r, a = _grid(host, "男性", "安静時\n笑顔")
    assert r.ok, r.error
    _, b = _grid(host, "女性", "安静時\n笑顔")
    _, blank = _grid(host, "", "")
    strip = slice(64, 64 + 28)  # the label strip under the tiles
    assert (a[strip] > 200).sum() > 50  # the glyphs are drawn ...
    assert (a[strip] != b[strip]).any()  # ... and differ per character, unlike a "??" fallback
    assert (a[:64] == blank[:64]).all()  # the tiles themselves are untouched


def test_grid_labels_without_a_font_name_the_package(host):
    r, _ = _grid(host, "\U00013000", "a\nb")  # an Egyptian hieroglyph: in no font Debian installs by default
    assert r.status == "error" and "fonts-ipafont-gothic" in r.error, r.error


def test_a_missing_fine_tuned_net_says_how_to_make_it(host):
    from palsysim.base.workflows import TRAIN_COMMAND, TRAINED_CONTROLNET
    assert not os.path.exists(host.model_path("controlnet", TRAINED_CONTROLNET))
    r = host.run({"1": _loader(TRAINED_CONTROLNET), "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 1]}}})
    assert r.status == "invalid" and f"{TRAINED_CONTROLNET!r} not found" in r.error, r.error
    assert TRAIN_COMMAND in r.error and "models --fetch" not in r.error, r.error


def test_the_grid_report_names_each_rows_gate_report(host):
    # Two gate runs (one per identity, as in the grid workflow) -> one text, each row's outcome first.
    name = host.upload_image(photo_paths()["astronaut"])
    r = host.run({"1": {"class_type": "LoadImage", "inputs": {"image": name}},
                  "2": {"class_type": "PalsyLines", "inputs": {"text": "a man\na woman"}},
                  "3": {"class_type": "StringConcatenate", "inputs": {"string_a": "1 of 1 passed, 0 held back.\n\n"
                                                                                  "table of ", "string_b": ["2", 0],
                                                                      "delimiter": ""}},
                  "4": {"class_type": "PalsyLabelledGrid",
                        "inputs": {"images": ["6", 0], "columns": 1, "column_labels": "", "row_labels": ["2", 1],
                                   "tile_size": 64, "reports": ["3", 0]}},
                  "5": {"class_type": "PreviewAny", "inputs": {"source": ["4", 1]}},
                  "6": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["1", 0]}}})
    assert r.ok, r.error
    assert r.outputs["5"]["text"] == ["- a man: 1 of 1 passed, 0 held back.\n- a woman: 1 of 1 passed, 0 held back.\n\n"
                                      "**a man**: 1 of 1 passed, 0 held back.\n\ntable of a man\n\n"
                                      "**a woman**: 1 of 1 passed, 0 held back.\n\ntable of a woman"]


@pytest.mark.parametrize("row", ["an elderly woman", "高齢の女性"])
def test_long_grid_labels_stay_inside_their_tile(host, row):
    # "an elderly woman | lower_lip_depression" is wider than a 256 px tile at the label's size: it was cut
    # off by the next tile ("raise_eye"); it is written smaller or on two lines, clear of the tile's edge.
    import glob
    if not row.isascii() and not glob.glob("/usr/share/fonts/opentype/ipafont-gothic/*.ttf") + glob.glob(
            "/usr/share/fonts/opentype/noto/*CJK*"):
        pytest.skip("no Japanese font installed: apt-get install fonts-ipafont-gothic")
    r, sheet = _grid(host, row, "lower_lip_depression\nraise_eyebrows", tile_size=256)
    assert r.ok, r.error
    assert sheet.shape == (256 + 28, 512, 3)
    strip = sheet[256:].astype(int)
    text = (strip > 120).any(axis=2)  # the label's light glyphs on the dark strip
    for cell in (text[:, :256], text[:, 256:]):
        columns = np.flatnonzero(cell.any(axis=0))
        assert columns.size and columns.max() > 110, "the label is not written"
        assert columns.max() < 252, "the label runs into the next tile"
