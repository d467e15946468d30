"""The pack on a real ComfyUI server: import, node listing, graphs through POST /prompt, bad input.

Every test talks HTTP to the one session server of the `host` fixture (conftest.py).
"""
import os

import cv2
import numpy as np
import pytest

from host import TINY_CHECKPOINT, TINY_CONTROLNET, read_image
from host_graphs import ASTRONAUT, COFFEE, GRACE_HOPPER, TOM_HANKS, assert_landmarks_drawn_on_face, landmarks_graph
from tiny_models import write_tiny_controlnet

PACK_NODES = ["PalsyFaceLandmarks"]


def test_pack_imports_without_failure(host):
    log = host.log()
    pack_lines = [line for line in log.splitlines() if "custom_nodes" in line and "palsysim" in line]
    assert pack_lines, f"the host never tried to import the pack:\n{log[-3000:]}"
    assert not any("IMPORT FAILED" in line or "Cannot import" in line for line in pack_lines), "\n".join(pack_lines)
    assert "Error while calling comfy_entrypoint" not in log
    info = host.object_info()
    assert "KSampler" in info and "ControlNetLoader" in info  # core nodes are there too
    for node in PACK_NODES:
        assert node in info, f"{node} missing from /object_info"
        assert info[node]["python_module"] == "custom_nodes.palsysim"


def test_face_landmarks_node_is_listed_with_its_inputs(host):
    node = host.object_info("PalsyFaceLandmarks")
    assert node is not None
    required = node["input"]["required"]
    assert required["image"][0] == "IMAGE"
    assert required["max_faces"][0] == "INT" and required["max_faces"][1]["min"] == 1
    assert required["min_confidence"][0] == "FLOAT"
    assert required["face_index"][0] == "INT"
    assert set(required["backend"][1]["options"]) == {"auto", "legacy", "tasks"}
    assert node["output"] == ["PALSY_LANDMARKS", "IMAGE"]
    assert node["category"] == "PalsySim"


def test_landmarks_graph_writes_the_preview(host):
    result = host.run(landmarks_graph(host.upload_image(ASTRONAUT)))
    assert result.ok, result.error
    paths = host.image_paths(result, "3")
    assert len(paths) == 1 and os.path.isfile(paths[0]) and paths[0].endswith(".png")
    assert_landmarks_drawn_on_face(read_image(ASTRONAUT), read_image(paths[0]))


def test_a_batch_of_two_photos_gives_two_previews(host):
    first, second = host.upload_image(ASTRONAUT), host.upload_image(GRACE_HOPPER)
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": first}},
        "2": {"class_type": "LoadImage", "inputs": {"image": second}},
        # ImageBatch rescales the second photo to the first one's size.
        "3": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}},
        "4": {"class_type": "PalsyFaceLandmarks",
              "inputs": {"image": ["3", 0], "max_faces": 1, "min_confidence": 0.5, "face_index": 0,
                         "backend": "auto"}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 1], "filename_prefix": "batch"}},
    }
    result = host.run(graph)
    assert result.ok, result.error
    previews = host.images(result, "5")
    assert len(previews) == 2
    assert all(p.shape == (512, 512, 3) for p in previews)
    assert_landmarks_drawn_on_face(read_image(ASTRONAUT), previews[0])
    assert np.abs(previews[0].astype(int) - previews[1].astype(int)).mean() > 10  # two different faces


def sd15_controlnet_graph(condition_name, strength, seed=1, control_net=TINY_CONTROLNET):
    """The core SD1.5 + ControlNet graph (tiny models): 64x64, 2 steps; the image is node "9"."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": TINY_CHECKPOINT}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "ID photo of a person"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "blurry"}},
        "4": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": control_net}},
        "5": {"class_type": "LoadImage", "inputs": {"image": condition_name}},
        "6": {"class_type": "ControlNetApplyAdvanced",
              "inputs": {"positive": ["2", 0], "negative": ["3", 0], "control_net": ["4", 0],
                         "image": ["5", 0], "strength": strength, "start_percent": 0.0,
                         "end_percent": 1.0, "vae": ["1", 2]}},
        "7": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "8": {"class_type": "KSampler",
              "inputs": {"model": ["1", 0], "positive": ["6", 0], "negative": ["6", 1],
                         "latent_image": ["7", 0], "seed": seed, "steps": 2, "cfg": 2.0,
                         "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        "9": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["1", 2]}},
        "10": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "sd15"}},
    }


def test_tiny_sd15_controlnet_graph_of_core_nodes_makes_an_image(host):
    condition = cv2.resize(cv2.Canny(read_image(ASTRONAUT), 100, 200), (64, 64))
    name = host.upload_image(condition)
    before = len(host.log())  # the session server's log holds earlier tests' (deliberately broken) models too
    with_control = host.run(sd15_controlnet_graph(name, strength=1.0))
    assert with_control.ok, with_control.error
    (image,) = host.images(with_control, "10")
    assert image.shape == (64, 64, 3)
    # NaNs decode to a flat black picture; a working model gives texture.
    assert image.astype(float).std() > 2.0, "the sampled image is (nearly) constant"
    without_control = host.run(sd15_controlnet_graph(name, strength=0.0))
    assert without_control.ok, without_control.error
    (plain,) = host.images(without_control, "10")
    assert np.abs(image.astype(int) - plain.astype(int)).mean() > 1.0, "the ControlNet changed nothing"
    log = host.log()[before:]
    # Every weight of the tiny models loaded, and the control fitted the UNet.
    for complaint in ("clip missing", "Missing VAE keys", "missing controlnet keys", "control could not be applied"):
        assert complaint not in log, complaint


def test_a_controlnet_added_while_the_server_runs_is_listed_and_used(host):
    # Other tests drop model variants into host.models_dir; this is the path they rely on.
    write_tiny_controlnet(host.model_path("controlnet", "tiny_controlnet_variant.ckpt"), seed=7)
    host.refresh_models()
    listed = host.object_info("ControlNetLoader")["input"]["required"]["control_net_name"][0]
    assert "tiny_controlnet_variant.ckpt" in listed and TINY_CONTROLNET in listed
    name = host.upload_image(cv2.resize(cv2.Canny(read_image(ASTRONAUT), 100, 200), (64, 64)))
    original = host.run(sd15_controlnet_graph(name, 1.0, seed=5))
    variant = host.run(sd15_controlnet_graph(name, 1.0, seed=5, control_net="tiny_controlnet_variant.ckpt"))
    assert original.ok and variant.ok, (original.error, variant.error)
    (a,), (b,) = host.images(original, "10"), host.images(variant, "10")
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 1.0, "the variant ControlNet was not used"


def flat_grey(size=256):
    return np.full((size, size, 3), 128, np.uint8)


def tiny_crop(size=16):
    return read_image(ASTRONAUT)[100:100 + size, 180:180 + size]


def empty_batch_graph(min_confidence):
    # No core node makes an empty IMAGE batch from a valid widget value (batch sizes have min 1),
    # but an INT arriving through a link skips the min check: PrimitiveInt 0 -> EmptyImage.
    return {
        "1": {"class_type": "PrimitiveInt", "inputs": {"value": 0}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 256, "height": 256, "batch_size": ["1", 0],
                                                     "color": 0}},
        "3": {"class_type": "PalsyFaceLandmarks",
              "inputs": {"image": ["2", 0], "max_faces": 1, "min_confidence": min_confidence,
                         "face_index": 0, "backend": "auto"}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 1], "filename_prefix": "empty"}},
    }


# (case, how to build the prompt, words the message must contain)
BAD_INPUTS = [
    ("photo without a face", lambda h, c: landmarks_graph(h.upload_image(COFFEE), c), ["no face"]),
    ("flat grey picture", lambda h, c: landmarks_graph(h.upload_image(flat_grey()), c), ["no face"]),
    ("16x16 picture", lambda h, c: landmarks_graph(h.upload_image(tiny_crop()), c), ["16x16", "64x64"]),
    ("empty batch", lambda h, c: empty_batch_graph(c), ["empty"]),
    ("tasks backend without its model file",
     lambda h, c: landmarks_graph(h.upload_image(ASTRONAUT), c, backend="tasks"),
     ["face_landmarker.task", "models/mediapipe"]),
]


@pytest.mark.parametrize("case,make_prompt,words", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_gives_a_clear_message_and_the_server_keeps_serving(host, case, make_prompt, words):
    # A min_confidence of its own per case keeps ComfyUI's cache from answering the good prompt.
    confidence = 0.3 + 0.05 * [b[0] for b in BAD_INPUTS].index(case)
    bad = host.run(make_prompt(host, confidence))
    assert bad.status in ("error", "invalid"), f"{case}: {bad.status}"
    if bad.status == "error":  # raised on purpose, not a crash inside the node
        assert bad.error_type.endswith("InputError"), bad.error_type
    assert bad.error_node in ("2", "3"), bad.error  # the landmarks node, not something else
    assert "PalsyFaceLandmarks" in bad.error
    for word in words:
        assert word in bad.error, f"{case}: {word!r} not in {bad.error!r}"
    assert "Traceback" not in bad.error
    assert host.alive()
    good = host.run(landmarks_graph(host.upload_image(ASTRONAUT), confidence, prefix="after_error"))
    assert good.ok, good.error
    assert_landmarks_drawn_on_face(read_image(ASTRONAUT), host.images(good, "3")[0])


def as_grey(rgb):
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def as_rgba(rgb):
    alpha = np.full(rgb.shape[:2] + (1,), 255, np.uint8)
    alpha[:40] = 0  # a transparent band across the top, away from the face
    return np.concatenate([rgb, alpha], axis=2)


PHOTOS = [
    ("RGB PNG", lambda: ASTRONAUT, (512, 512)),
    ("JPEG", lambda: GRACE_HOPPER, None),
    ("112x112 face crop", lambda: TOM_HANKS, (112, 112)),
    ("grayscale PNG", lambda: as_grey(read_image(ASTRONAUT)), (512, 512)),
    ("RGBA PNG", lambda: as_rgba(read_image(ASTRONAUT)), (512, 512)),
]


@pytest.mark.parametrize("case,photo,size", PHOTOS, ids=[p[0] for p in PHOTOS])
def test_photos_of_every_format_give_a_preview_of_their_size(host, case, photo, size):
    source = photo()
    result = host.run(landmarks_graph(host.upload_image(source), prefix="formats"))
    assert result.ok, f"{case}: {result.error}"
    (preview,) = host.images(result, "3")
    expected = size or read_image(source).shape[:2]
    assert preview.shape == (*expected, 3)
    # Marks are drawn in colour, so even a grey photo's preview is no longer grey.
    assert (preview.max(axis=2).astype(int) - preview.min(axis=2)).max() > 60
