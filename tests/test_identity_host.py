"""PalsyArcFaceDissimilarity and PalsyPrivacyGate on the real ComfyUI server (the `host` fixture)."""
import os
import re

import cv2
import numpy as np
import pytest
from real_faces import photos
from tiny_arcface import write_tiny_arcface

from palsysim.face.landmarks import face_landmarks
from palsysim.face.synth import synth_palsy
from palsysim.identity import dlib_face as identity_dlib

MODEL = "buffalo_l/tiny_arcface.onnx"  # in a subfolder, as insightface's packs are laid out


@pytest.fixture(scope="module")
def arcface_host(host):
    write_tiny_arcface(host.model_path("insightface", MODEL))
    host.refresh_models()
    return host


@pytest.fixture(scope="module")
def uploaded(arcface_host):
    """Three people's photos at 512x512 (one IMAGE batch needs one size), uploaded; name -> (file, pixels)."""
    f = photos()
    same_size = {"astronaut": f["astronaut"], "grace_hopper": f["grace_hopper"][:512],
                 "tom_hanks": cv2.resize(f["tom_hanks"], (512, 512), interpolation=cv2.INTER_CUBIC)}
    return {k: (arcface_host.upload_image(v, f"{k}.png"), v) for k, v in same_size.items()}


def graph(uploaded, threshold, model=MODEL, backend=None):
    """A batch [astronaut, grace_hopper, tom_hanks] checked against the astronaut; gate -> SaveImage."""
    g = {
        "1": {"class_type": "LoadImage", "inputs": {"image": uploaded["astronaut"][0]}},
        "2": {"class_type": "LoadImage", "inputs": {"image": uploaded["grace_hopper"][0]}},
        "3": {"class_type": "LoadImage", "inputs": {"image": uploaded["tom_hanks"][0]}},
        "4": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}},
        "5": {"class_type": "ImageBatch", "inputs": {"image1": ["4", 0], "image2": ["3", 0]}},
    }
    check = {"image": ["5", 0], "reference": ["1", 0], "model_name": model, "threshold": threshold}
    if backend:
        check["backend"] = backend
    g["7"] = {"class_type": "PalsyArcFaceDissimilarity", "inputs": dict(check)}
    g["8"] = {"class_type": "PalsyPrivacyGate", "inputs": dict(check)}
    g["9"] = {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": f"gate_{threshold:.4f}"}}
    return g


def similarities(report):
    return [float(m) for m in re.findall(r"^\| \d+ \| ([-0-9.]+) \|", report, flags=re.M)]


def test_nodes_are_listed_with_the_model_in_its_subfolder(arcface_host):
    for node in ("PalsyArcFaceDissimilarity", "PalsyPrivacyGate"):
        info = arcface_host.object_info(node)
        assert info is not None, arcface_host.log()[-3000:]
        required = info["input"]["required"]
        spec = required["model_name"]  # V3 combos: ["COMBO", {"options": [...]}]
        assert MODEL in (spec[1]["options"] if spec[0] == "COMBO" else spec[0])
        assert required["threshold"][1]["default"] == 0.28
    outs = arcface_host.object_info("PalsyArcFaceDissimilarity")["output_name"]
    assert list(outs) == ["similarity", "dissimilarity", "passed", "report"]


def test_graph_with_both_nodes_gates_exactly_the_images_above_the_threshold(arcface_host, uploaded):
    first = arcface_host.run(graph(uploaded, 0.28))
    assert first.ok, first.error
    report = first.outputs["7"]["text"][0]
    sims = similarities(report)
    assert len(sims) == 3 and sims[0] == pytest.approx(1.0, abs=1e-3) and max(sims[1:]) < 0.999
    order = np.argsort(sims)
    threshold = round((sims[order[0]] + sims[order[1]]) / 2, 4)  # only the least patient-like passes
    result = arcface_host.run(graph(uploaded, threshold))
    assert result.ok, result.error
    gate_report = result.outputs["8"]["text"][0]
    assert gate_report.startswith("1 of 3 passed, 2 held back.\n\n"), gate_report  # the outcome on the first line
    saved = arcface_host.images(result, "9")
    assert len(saved) == 1
    names = ["astronaut", "grace_hopper", "tom_hanks"]
    assert np.array_equal(saved[0], uploaded[names[order[0]]][1])


def test_the_workflows_model_name_finds_buffalo_l_where_instantid_and_reactor_keep_it(arcface_host, uploaded):
    # InstantID and ReActor users have models/insightface/models/buffalo_l/; the shipped workflows name
    # buffalo_l/w600k_r50.onnx. The same file there is listed and used under the workflows' name.
    kept = arcface_host.model_path("insightface", "models/buffalo_l/kept_by_instantid.onnx")
    write_tiny_arcface(kept)
    arcface_host.refresh_models()
    try:
        spec = arcface_host.object_info("PalsyPrivacyGate")["input"]["required"]["model_name"]
        assert "buffalo_l/kept_by_instantid.onnx" in spec[1]["options"], spec
        ours = arcface_host.run(graph(uploaded, 0.28, backend="arcface"))
        theirs = arcface_host.run(graph(uploaded, 0.28, model="buffalo_l/kept_by_instantid.onnx", backend="arcface"))
        assert ours.ok and theirs.ok, theirs.error
        assert similarities(theirs.outputs["7"]["text"][0]) == similarities(ours.outputs["7"]["text"][0])
    finally:
        os.unlink(kept)
        arcface_host.refresh_models()


def test_gate_holding_back_everything_stops_the_save_without_an_error(arcface_host, uploaded):
    result = arcface_host.run(graph(uploaded, -1.0))
    assert result.ok, result.error
    # The first line says why the save after the gate stays empty; the check node, no gate, does not.
    assert result.outputs["8"]["text"][0].startswith(
        "0 of 3 passed, 3 held back. Nothing goes on: the nodes fed by the gate's images (the save) do not run.\n\n")
    assert result.outputs["7"]["text"][0].startswith("0 of 3 passed, 3 held back.\n\n")
    assert arcface_host.images(result, "9") == []



def test_missing_model_file_names_the_file_and_the_folder(arcface_host, uploaded):
    result = arcface_host.run(graph(uploaded, 0.28, model="antelopev2/glintr100.onnx", backend="arcface"))
    assert not result.ok
    assert "antelopev2/glintr100.onnx" in result.error and "models/insightface/" in result.error
    assert arcface_host.alive()


needs_dlib = pytest.mark.skipif(identity_dlib.unavailable() is not None, reason=str(identity_dlib.unavailable()))


def dlib_graph(uploaded, backend, model=MODEL):
    """Gate [astronaut's synthetic palsy, grace_hopper, a faceless grey frame] against the astronaut."""
    g = {
        "1": {"class_type": "LoadImage", "inputs": {"image": uploaded["astronaut"][0]}},
        "2": {"class_type": "LoadImage", "inputs": {"image": uploaded["astronaut_palsy"][0]}},
        "3": {"class_type": "LoadImage", "inputs": {"image": uploaded["grace_hopper"][0]}},
        "4": {"class_type": "LoadImage", "inputs": {"image": uploaded["blank"][0]}},
        "5": {"class_type": "ImageBatch", "inputs": {"image1": ["2", 0], "image2": ["3", 0]}},
        "6": {"class_type": "ImageBatch", "inputs": {"image1": ["5", 0], "image2": ["4", 0]}},
        "8": {"class_type": "PalsyPrivacyGate", "inputs": {"image": ["6", 0], "reference": ["1", 0],
                                                           "model_name": model, "threshold": 0.28,
                                                           "backend": backend}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": f"dlib_gate_{backend}"}},
    }
    return g


@pytest.fixture(scope="module")
def dlib_uploaded(arcface_host, uploaded):
    astro = uploaded["astronaut"][1]
    palsy = synth_palsy(astro, face_landmarks(astro), "left", 0.8)[0]
    blank = np.full_like(astro, 180)
    extra = {"astronaut_palsy": palsy, "blank": blank}
    return {**uploaded, **{k: (arcface_host.upload_image(v, f"{k}.png"), v) for k, v in extra.items()}}


@needs_dlib
@pytest.mark.parametrize("backend,model", [("dlib", MODEL), ("auto", "antelopev2/glintr100.onnx")])
def test_dlib_gate_holds_back_the_patient_and_the_faceless_frame_and_passes_another_person(
        arcface_host, dlib_uploaded, backend, model):
    result = arcface_host.run(dlib_graph(dlib_uploaded, backend, model))
    assert result.ok, result.error  # auto: the ArcFace file is missing, dlib takes over
    report = result.outputs["8"]["text"][0]
    assert "Identity check, dlib " in report, report
    assert report.startswith("1 of 3 passed, 2 held back (1 with no face: its identity cannot be checked).\n"), report
    rows = [line for line in report.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert "HELD: resembles the patient" in rows[0] and float(rows[0].split("|")[2]) < 0.6
    assert rows[1].endswith("| pass |") and float(rows[1].split("|")[2]) > 0.6
    assert "HELD: no face: held back" in rows[2]
    saved = arcface_host.images(result, "9")
    assert len(saved) == 1 and np.array_equal(saved[0], dlib_uploaded["grace_hopper"][1])
    assert arcface_host.alive()


@needs_dlib
def test_both_backends_give_both_columns_through_the_server(arcface_host, dlib_uploaded):
    result = arcface_host.run(dlib_graph(dlib_uploaded, "both"))
    assert result.ok, result.error
    report = result.outputs["8"]["text"][0]
    assert "Identity check, arcface and dlib" in report and "| dlib distance |" in report
    assert "no face: held back" in report


@needs_dlib
def test_a_saved_image_says_it_passed_the_gate_and_an_unchecked_one_says_it_was_not(arcface_host, dlib_uploaded):
    """The gate's `checked` into the anonymized save: the one image that passed says so in its Description,
    with the rule; a save fed straight from the photos (no gate) says it was not checked."""
    from PIL import Image
    g = dlib_graph(dlib_uploaded, "dlib")
    summary = {"filename_prefix": "palsysim/stamp", "method_summary": "Synthetic face made by PalsySim"}
    g["9"] = {"class_type": "PalsySaveAnonymized",
              "inputs": {"images": ["8", 0], "identity_check": ["8", 4], **summary}}
    g["10"] = {"class_type": "PalsySaveAnonymized", "inputs": {"images": ["3", 0], **summary}}
    result = arcface_host.run(g)
    assert result.ok, result.error
    (passed,) = arcface_host.image_paths(result, "9")
    (unchecked,) = arcface_host.image_paths(result, "10")
    with Image.open(passed) as im:
        assert im.text["Description"] == ("Synthetic face made by PalsySim\nIdentity check passed: dlib distance at or "
                                          "above 0.600 against every photo of the patient."), im.text
        assert np.array_equal(np.asarray(im.convert("RGB")), dlib_uploaded["grace_hopper"][1])
    with Image.open(unchecked) as im:
        assert im.text["Description"] == ("Synthetic face made by PalsySim\nIdentity not checked: no privacy gate "
                                          "ran before this save."), im.text
