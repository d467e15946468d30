"""CODC through a real ComfyUI server: LoadImage x2 -> PalsyFaceLandmarks x2 -> PalsyOrganCropResize ->
PalsyContourReposition -> SaveImage, a batch of two patients, and a mismatched batch refused clearly;
the PF condition: LoadImage -> PalsyFaceLandmarks -> PalsyPFCondition -> SaveImage, a batch of two."""
import numpy as np
import pytest
from real_faces import photos

from palsysim.condition import codc, facecrop
from palsysim.face.landmarks import face_landmarks
from palsysim.face.synth import synth_palsy

EDGE = {"low_threshold": 100.0, "high_threshold": 200.0, "blur_sigma": 0.0}


@pytest.fixture(scope="module")
def uploaded(host):
    p = photos()
    healthy = p["astronaut"]
    patient, _ = synth_palsy(healthy, face_landmarks(healthy), "left", 0.6)
    images = {"patient": patient, "healthy": healthy, "donor": p["grace_hopper"]}
    return images, {k: host.upload_image(v) for k, v in images.items()}


def codc_graph(names, donor_batch=False):
    landmarks = {"max_faces": 1, "min_confidence": 0.5, "face_index": 0, "backend": "auto"}
    donor = ["8", 0] if donor_batch else ["3", 0]
    g = {
        "1": {"class_type": "LoadImage", "inputs": {"image": names["patient"]}},
        "2": {"class_type": "LoadImage", "inputs": {"image": names["healthy"]}},
        "3": {"class_type": "LoadImage", "inputs": {"image": names["donor"]}},
        "4": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}},
        "5": {"class_type": "PalsyFaceLandmarks", "inputs": {"image": ["4", 0], **landmarks}},
        "6": {"class_type": "PalsyFaceLandmarks", "inputs": {"image": ["3", 0], **landmarks}},
        "7": {"class_type": "PalsyOrganCropResize",
              "inputs": {"image": ["4", 0], "landmarks": ["5", 0], "donor_landmarks": ["6", 0],
                         "eye_margin": codc.EYE_MARGIN, "nose_margin": codc.NOSE_MARGIN,
                         "mouth_margin": codc.MOUTH_MARGIN, **EDGE}},
        "9": {"class_type": "PalsyContourReposition",
              "inputs": {"organs": ["7", 0], "donor_image": donor, "donor_landmarks": ["6", 0],
                         "contour": "canny", **EDGE}},
        "10": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "codc"}},
        "11": {"class_type": "SaveImage", "inputs": {"images": ["9", 1], "filename_prefix": "codc_preview"}},
    }
    if donor_batch:
        g["8"] = {"class_type": "ImageBatch", "inputs": {"image1": ["3", 0], "image2": ["3", 0]}}
    return g


def test_codc_graph_batch_of_two_patients(host, uploaded):
    images, names = uploaded
    result = host.run(codc_graph(names))
    assert result.ok, result.error
    conditions, previews = host.images(result, "10"), host.images(result, "11")
    assert len(conditions) == 2 and len(previews) == 2
    donor = images["donor"]
    dxy = face_landmarks(donor).xy
    for got, key in zip(conditions, ("patient", "healthy")):
        assert got.shape == donor.shape
        assert np.array_equal(got[..., 0], got[..., 1]) and set(np.unique(got)) <= {0, 255}
        want = codc.codc_condition(images[key], face_landmarks(images[key]).xy, donor, dxy)[0] > 0
        edge = got[..., 0] > 0
        assert (edge ^ want).sum() / (edge | want).sum() < 0.02, "the node's condition is not the core's"
    assert not np.array_equal(conditions[0], conditions[1]), "both patients gave the same condition"
    assert all(p.shape == donor.shape for p in previews)


def test_mismatched_donor_batch_is_refused(host, uploaded):
    _, names = uploaded
    result = host.run(codc_graph(names, donor_batch=True))
    assert not result.ok
    assert "donor_landmarks holds 1 face(s) but donor_image has 2 image(s)" in result.error
    assert host.alive()


@pytest.mark.parametrize("size", [512, 0])
def test_pf_condition_graph_is_the_cores(host, uploaded, size):
    images, names = uploaded
    margin = 0.3 if size else facecrop.FACE_MARGIN  # with size 0 nothing is cropped: another margin is refused
    g = {
        "1": {"class_type": "LoadImage", "inputs": {"image": names["patient"]}},
        "2": {"class_type": "LoadImage", "inputs": {"image": names["healthy"]}},
        "3": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}},
        "4": {"class_type": "PalsyFaceLandmarks",
              "inputs": {"image": ["3", 0], "max_faces": 1, "min_confidence": 0.5, "face_index": 0, "backend": "auto"}},
        "5": {"class_type": "PalsyPFCondition",
              "inputs": {"image": ["3", 0], "landmarks": ["4", 0], "size": size, "margin": margin, **EDGE}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "pf"}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["5", 1], "filename_prefix": "pf_preview"}},
    }
    result = host.run(g)
    assert result.ok, result.error
    conditions, previews = host.images(result, "6"), host.images(result, "7")
    assert len(conditions) == 2 and len(previews) == 2
    for got, preview, key in zip(conditions, previews, ("patient", "healthy")):
        # margin 0.3, not the default: the node must pass its own on
        want = facecrop.pf_condition(images[key], face_landmarks(images[key]).xy, size, margin, **EDGE)
        assert want.shape == ((512, 512) if size else images[key].shape[:2])
        assert np.array_equal(got, np.repeat(want[..., None], 3, axis=2)), "the node's condition is not the core's"
        assert preview.shape == got.shape and (preview[want > 0] == 255).all()
    assert not np.array_equal(conditions[0], conditions[1]), "both patients gave the same condition"


def test_rest_landmarks_reach_the_core(host, uploaded):
    from palsysim.face.synth import synth_expression
    healthy = photos()["astronaut"]
    face = face_landmarks(healthy)
    shots = {item: synth_expression(healthy, face, item)[0] for item in ("grin", "rest")}
    names = {k: host.upload_image(v) for k, v in shots.items()}
    images, up = uploaded
    g = codc_graph({"patient": names["grin"], "healthy": names["rest"], "donor": up["donor"]})
    landmarks = {"max_faces": 1, "min_confidence": 0.5, "face_index": 0, "backend": "auto"}
    g["12"] = {"class_type": "PalsyFaceLandmarks", "inputs": {"image": ["2", 0], **landmarks}}  # the rest photo's
    g["7"]["inputs"]["rest_landmarks"] = ["12", 0]
    result = host.run(g)
    assert result.ok, result.error
    donor = images["donor"]
    dxy, rest_xy = face_landmarks(donor).xy, face_landmarks(shots["rest"]).xy
    for got, key in zip(host.images(result, "10"), ("grin", "rest")):
        want = codc.codc_condition(shots[key], face_landmarks(shots[key]).xy, donor, dxy, rest_xy=rest_xy)[0] > 0
        assert (got[..., 0] > 0).sum() > 0 and ((got[..., 0] > 0) ^ want).sum() / ((got[..., 0] > 0) | want).sum() < 0.02
        if key == "grin":  # rest counted: the grin's organs moved from rest (the rest photo's own did not)
            no_rest = codc.codc_condition(shots[key], face_landmarks(shots[key]).xy, donor, dxy)[0] > 0
            assert ((got[..., 0] > 0) ^ no_rest).sum() / ((got[..., 0] > 0) | no_rest).sum() > 0.05
