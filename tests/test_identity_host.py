"""PalsyArcFaceDissimilarity and PalsyPrivacyGate on the real ComfyUI server (the `host` fixture)."""
import re

import cv2
import numpy as np
import pytest

from real_faces import photos
from tiny_arcface import write_tiny_arcface

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


def graph(uploaded, threshold, model=MODEL):
    """A batch [astronaut, grace_hopper, tom_hanks] checked against the astronaut; gate -> SaveImage."""
    g = {
        "1": {"class_type": "LoadImage", "inputs": {"image": uploaded["astronaut"][0]}},
        "2": {"class_type": "LoadImage", "inputs": {"image": uploaded["grace_hopper"][0]}},
        "3": {"class_type": "LoadImage", "inputs": {"image": uploaded["tom_hanks"][0]}},
        "4": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}},
        "5": {"class_type": "ImageBatch", "inputs": {"image1": ["4", 0], "image2": ["3", 0]}},
    }
    check = {"image": ["5", 0], "reference": ["1", 0], "model_name": model, "threshold": threshold}
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
    assert "1 of 3 passed, 2 held back." in gate_report
    saved = arcface_host.images(result, "9")
    assert len(saved) == 1
    names = ["astronaut", "grace_hopper", "tom_hanks"]
    assert np.array_equal(saved[0], uploaded[names[order[0]]][1])


def test_gate_holding_back_everything_stops_the_save_without_an_error(arcface_host, uploaded):
    result = arcface_host.run(graph(uploaded, -1.0))
    assert result.ok, result.error
    assert "0 of 3 passed, 3 held back." in result.outputs["8"]["text"][0]
    assert arcface_host.images(result, "9") == []


def test_missing_model_file_names_the_file_and_the_folder(arcface_host, uploaded):
    result = arcface_host.run(graph(uploaded, 0.28, model="antelopev2/glintr100.onnx"))
    assert not result.ok
    assert "antelopev2/glintr100.onnx" in result.error and "models/insightface/" in result.error
    assert arcface_host.alive()
