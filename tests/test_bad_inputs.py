"""Bad-input matrix (issue 8, item 3): every pack node, driven through the real host's HTTP API with
bad inputs, in one parametrised table. Each case ends in a clear message that names the problem
(raised on purpose as an InputError, or refused at validation), or in a correct conversion that the
case checks; after each case, and after the whole table, the server answers a good prompt correctly.

How the inputs reach the nodes: tests/support/bad_input_graphs.py.

Covered elsewhere, so not repeated here (the table counts only its own rows): landmarks node on
no face, flat grey, 16x16, empty batch, tasks backend without its file (test_host.py); grey and
RGBA PNG uploads to the landmarks node (test_host.py); ContourReposition with 1 donor landmark set
for 2 donor images (test_codc_host.py); ArcFaceDissimilarity with a missing model
(test_identity_host.py); the loader's missing file and window errors (test_controlnet_window.py).
"""
import json
import math
import os
import time
import uuid

import cv2
import numpy as np
import pytest
import requests

from bad_input_graphs import (ASTRO, b_contour, b_window_run, b_grid, b_identity, b_landmarks_simple, b_loader, b_organs,
                               b_pf, b_save, batch, CHECKPOINT_IN_CONTROLNET, CUT_CKPT, CUT_ONNX, DISSIM,
                               EMPTY, empty, every_node, FEW_KEYS_SFT, G, GARBAGE_ONNX, GARBAGE_SFT, GATE,
                               GRACE, _grey, grid, grid_of_width, HALF_KEYS_SFT, held_back, HUGE, items, L,
                               landmarks, lines, LM, load, marks_on_face_of, NAN, nan_image,
                               NO_MIDDLE_OUT_SFT, ok, report_rows, RGBA, rgba, _rgba_composited_on_white,
                               _same_as, sampled, save, save_image, save_video, saved_all, saved_one,
                               saved_video, setting, smoothed, steps_report_says, _sweep_values, _two_faces_keep_largest, two_of,
                               video_conditions, without, write_model_files)
from host import TINY_CONTROLNET, read_image
from host_graphs import ASTRONAUT, COFFEE, GRACE_HOPPER, assert_landmarks_drawn_on_face, landmarks_graph
from tiny_models import comfyui_dir

# --- inputs --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def u(host):
    """Uploaded photos (name for LoadImage) and model files for the table, written once."""
    astro = read_image(ASTRONAUT)
    grace = read_image(GRACE_HOPPER)[:512]
    names = {
        "astro": host.upload_image(astro, "bad_astro.png"),
        "grace": host.upload_image(grace, "bad_grace.png"),
        "coffee": host.upload_image(cv2.resize(read_image(COFFEE), (512, 512)), "bad_coffee.png"),
        # two people's faces side by side (a composition in which MediaPipe finds both); Grace Hopper's
        # face, on the right, is the larger
        "two": host.upload_image(np.concatenate(
            [astro[0:320, 96:416], cv2.resize(grace[40:440, 60:460], (320, 320), interpolation=cv2.INTER_AREA)],
            axis=1), "bad_two_faces.png"),
        "tiny": host.upload_image(astro[100:116, 180:196], "bad_tiny.png"),
        "grey": host.upload_image(cv2.cvtColor(astro, cv2.COLOR_RGB2GRAY), "bad_grey.png"),
    }
    alpha = np.full((512, 512, 1), 255, np.uint8)
    alpha[:40] = 0
    names["rgba"] = host.upload_image(np.concatenate([astro, alpha], axis=2), "bad_rgba.png")
    huge = os.path.join(host.input_dir, "..", "bad_huge_src.png")
    cv2.imwrite(huge, cv2.resize(astro, (HUGE, HUGE), interpolation=cv2.INTER_LINEAR)[..., ::-1],
                [cv2.IMWRITE_PNG_COMPRESSION, 1])
    names["huge"] = host.upload_image(huge, "bad_huge.png")

    write_model_files(host)
    host.refresh_models()
    return names


CASES = [
    # PalsyFaceLandmarks (no face, 16x16, empty, missing task file: test_host.py)
    # max_faces 1 keeps the face MediaPipe ranks first, here the smaller one; max_faces 2 sorts by size.
    ("landmarks/several faces, max_faces 2: the larger face", "PalsyFaceLandmarks",
     b_landmarks_simple(L("two"), max_faces=2), ok(_two_faces_keep_largest)),
    ("landmarks/several faces, face_index beyond them", "PalsyFaceLandmarks",
     b_landmarks_simple(L("two"), max_faces=2, face_index=2), ["2 face(s)", "face_index 2 does not exist"]),
    ("landmarks/huge", "PalsyFaceLandmarks",
     lambda g, u: save_image(g, [g.add("ImageScale", image=[landmarks(g, load(g, u, "huge"))[0], 1],
                                       upscale_method="area", width=512, height=512, crop="disabled"), 0]),
     ok(saved_one((512, 512), marks_on_face_of(ASTRONAUT)))),
    ("landmarks/RGBA tensor", "PalsyFaceLandmarks", b_landmarks_simple(RGBA), ok(saved_one((512, 512)))),
    ("landmarks/NaN pixels", "PalsyFaceLandmarks", b_landmarks_simple(NAN), ["NaN"]),
    # issue 12, item 9: a NaN passed the range check and cached a new MediaPipe detector per prompt
    ("landmarks/NaN min_confidence", "PalsyFaceLandmarks", b_landmarks_simple(ASTRO, min_confidence=math.nan),
     ["min_confidence is nan, not a number", "from 0.05 to 1.0"]),
    ("landmarks/min_confidence infinite", "PalsyFaceLandmarks", b_landmarks_simple(ASTRO, min_confidence=math.inf),
     ["min_confidence is inf, not a number"]),
    ("landmarks/a file name typed for image", "PalsyFaceLandmarks",
     lambda g, u: save_image(g, [g.add("PalsyFaceLandmarks", image="astro.png", **LM), 1]),
     ["image takes a link from a node's IMAGE output such as Load Image, not the value 'astro.png'"]),
    ("landmarks/corrupt face_landmarker.task", "PalsyFaceLandmarks",
     b_landmarks_simple(ASTRO, backend="tasks", min_confidence=0.45),
     ["face_landmarker.task", "not a usable MediaPipe face landmarker model"]),

    # PalsyOrganCropResize
    ("organs/empty batch", "PalsyOrganCropResize", b_organs(EMPTY, ASTRO), ["batch is empty"]),
    ("organs/landmarks of another image size (16x16 image)", "PalsyOrganCropResize", b_organs(L("tiny"), ASTRO),
     ["16x16", "512x512", "same image"]),
    ("organs/landmarks of another image size (huge image)", "PalsyOrganCropResize", b_organs(L("huge"), ASTRO),
     [f"{HUGE}x{HUGE}", "512x512", "same image"]),
    ("organs/huge image with its own landmarks", "PalsyOrganCropResize", b_organs(L("huge")),
     ok(saved_one((HUGE, HUGE)))),
    ("organs/grayscale", "PalsyOrganCropResize", b_organs(L("grey")), ok(saved_one((512, 512)))),
    ("organs/RGBA tensor", "PalsyOrganCropResize", b_organs(RGBA), ok(saved_one((512, 512)))),
    ("organs/NaN pixels", "PalsyOrganCropResize", b_organs(NAN, ASTRO), ["NaN"]),
    ("organs/2 images, landmarks of 1", "PalsyOrganCropResize", b_organs(two_of("astro", "grace"), ASTRO),
     ["landmarks holds 1 face(s) but image has 2 image(s)"]),
    ("organs/1 patient, 2 donor landmark sets", "PalsyOrganCropResize", b_organs(ASTRO, donor_lm_batch=True),
     ["1 patient image(s) but 2 donor landmark set(s)"]),
    ("organs/NaN margins", "PalsyOrganCropResize",
     setting(b_organs(ASTRO), "PalsyOrganCropResize", eye_margin=math.nan, mouth_margin=math.nan),
     ["eye_margin is nan, not a number", "mouth_margin is nan", "from 0.0 to 1.0"]),
    ("organs/Canny low above high", "PalsyOrganCropResize",
     setting(b_organs(ASTRO), "PalsyOrganCropResize", low_threshold=300.0, high_threshold=200.0),
     ["got low 300.0, high 200.0"]),

    # PalsyContourReposition (1 donor landmark set for 2 donor images: test_codc_host.py)
    ("contour/empty donor batch", "PalsyContourReposition", b_contour(EMPTY), ["donor_image batch is empty"]),
    ("contour/donor image of another size than its landmarks", "PalsyContourReposition", b_contour(L("huge")),
     [f"{HUGE}x{HUGE}", "512x512", "same donor image"]),
    ("contour/1 patient, 2 donors", "PalsyContourReposition",
     b_contour(two_of("grace", "grace"), two_of("grace", "grace")), ["1 patient image(s) but 2 donor image(s)"]),
    ("contour/grayscale donor", "PalsyContourReposition", b_contour(L("grey"), L("grey")), ok(saved_one((512, 512)))),
    ("contour/RGBA donor", "PalsyContourReposition", b_contour(RGBA, RGBA), ok(saved_one((512, 512)))),
    ("contour/NaN donor pixels", "PalsyContourReposition", b_contour(NAN, GRACE), ["NaN"]),

    # PalsyPFCondition (it finds no faces itself: a photo without one stops at its landmarks node)
    ("pf/no face in the photo: stops at its landmarks", "PalsyFaceLandmarks", b_pf(L("coffee")),
     ["no face found in image 1 of 1"]),
    ("pf/empty batch", "PalsyPFCondition", b_pf(EMPTY, ASTRO), ["image batch is empty"]),
    ("pf/2 images, landmarks of 1", "PalsyPFCondition", b_pf(two_of("astro", "grace"), ASTRO),
     ["landmarks holds 1 face(s) but image has 2 image(s)"]),
    ("pf/landmarks of another image size (16x16 image)", "PalsyPFCondition", b_pf(L("tiny"), ASTRO),
     ["16x16", "512x512", "same image"]),
    ("pf/RGBA tensor", "PalsyPFCondition", b_pf(RGBA), ok(saved_one((512, 512)))),
    # issue 25: with size 0 nothing is cropped, so a margin there would silently do nothing
    ("pf/margin with size 0", "PalsyPFCondition", setting(b_pf(ASTRO), "PalsyPFCondition", size=0, margin=0.4),
     ["margin=0.4 does nothing with size 0", "Face Crop", "0.25"]),
    ("pf/size 0, the margin left as it is", "PalsyPFCondition", setting(b_pf(ASTRO), "PalsyPFCondition", size=0),
     ok(saved_one((512, 512)))),
    ("pf/NaN pixels", "PalsyPFCondition", b_pf(NAN, ASTRO), ["NaN"]),

    # PalsyFaceCrop
    ("facecrop/NaN margin", "PalsyFaceCrop",
     lambda g, u: save_image(g, [g.add("PalsyFaceCrop", image=load(g, u, "astro"),
                                       landmarks=landmarks(g, load(g, u, "astro")), size=256, margin=math.nan), 0]),
     ["margin is nan, not a number"]),
    ("facecrop/landmarks of another image size (16x16 image)", "PalsyFaceCrop",
     lambda g, u: save_image(g, [g.add("PalsyFaceCrop", image=load(g, u, "tiny"),
                                       landmarks=landmarks(g, load(g, u, "astro")), size=256, margin=0.25), 0]),
     ["16x16", "512x512", "same image"]),

    # PalsyPreview
    ("preview/NaN pixels", "PalsyPreview", lambda g, u: g.add("PalsyPreview", images=nan_image(g, u)), ["NaN"]),
    ("preview/empty batch", "PalsyPreview", lambda g, u: g.add("PalsyPreview", images=empty(g)),
     ["images batch is empty"]),

    # PalsyTimestepWindowControlNetLoader (missing file, window errors: test_controlnet_window.py)
    ("loader/missing file", "PalsyTimestepWindowControlNetLoader", b_loader("not_here.safetensors"),
     ["'not_here.safetensors' not found", "models/controlnet/"]),
    ("loader/corrupt safetensors", "PalsyTimestepWindowControlNetLoader", b_loader(GARBAGE_SFT),
     [GARBAGE_SFT, "corrupt or truncated"]),
    ("loader/truncated ckpt", "PalsyTimestepWindowControlNetLoader", b_loader(CUT_CKPT),
     [CUT_CKPT, "truncated or corrupt"]),
    ("loader/SD checkpoint in the controlnet folder", "PalsyTimestepWindowControlNetLoader",
     b_loader(CHECKPOINT_IN_CONTROLNET), [CHECKPOINT_IN_CONTROLNET, "no ControlNet inside", "models/checkpoints"]),
    # issue 12, item 10: control_model.* keys, but too few for ComfyUI ("'NoneType' object has no attribute
    # 'supported_inference_dtypes'"), or a net ComfyUI builds with half its weights left at random (only logged)
    ("loader/control_model keys too few to build a net", "PalsyTimestepWindowControlNetLoader",
     b_loader(FEW_KEYS_SFT), [FEW_KEYS_SFT, "incomplete ControlNet", "input_blocks.0.0.weight", "copy the original"]),
    ("loader/half the weights missing", "PalsyTimestepWindowControlNetLoader",
     b_loader(HALF_KEYS_SFT), [HALF_KEYS_SFT, "could not build a ControlNet", "copy the original"]),
    ("loader/middle_block_out missing", "PalsyTimestepWindowControlNetLoader",
     b_loader(NO_MIDDLE_OUT_SFT), [NO_MIDDLE_OUT_SFT, "incomplete ControlNet", "weights are missing",
                                   "middle_block_out.0.bias"]),
    ("loader/t_lo missing", "PalsyTimestepWindowControlNetLoader",
     without(b_loader(TINY_CONTROLNET), "PalsyTimestepWindowControlNetLoader", "t_lo"),
     ["Required input is missing", "t_lo"]),
    ("loader/t_lo text", "PalsyTimestepWindowControlNetLoader", b_loader(TINY_CONTROLNET, t_lo="abc"),
     ["Failed to convert an input value to a INT value", "t_lo, abc"]),
    ("loader/t_lo above its maximum", "PalsyTimestepWindowControlNetLoader", b_loader(TINY_CONTROLNET, t_lo=1500),
     ["t_lo=1500 is out of range", "from -1 to 999"]),
    ("loader/bogus apply", "PalsyTimestepWindowControlNetLoader",
     b_loader(TINY_CONTROLNET, apply="window"), ["apply='window' is not one of its choices", "window_only"]),

    # PalsyWindowSteps
    ("window steps/a 3-step run", "PalsyWindowSteps", b_window_run(),
     ok(steps_report_says("t 500..700 = percent 0.29930..0.49950; this run: ", "of 3 steps in window"))),
    ("window steps/a core ControlNet", "PalsyWindowSteps",
     b_window_run(lambda g: [g.add("ControlNetLoader", control_net_name=TINY_CONTROLNET), 0]),
     ok(steps_report_says("not from Load Timestep-Window ControlNet"))),
    ("window steps/control_net a typed value", "PalsyWindowSteps", b_window_run(control_net=3),
     ["control_net takes a link"]),
    ("window steps/samples missing", "PalsyWindowSteps",
     without(b_window_run(), "PalsyWindowSteps", "samples"), ["Required input is missing", "samples"]),

    # PalsyArcFaceDissimilarity (missing model: test_identity_host.py)
    ("arcface/no face in image", DISSIM, b_identity(DISSIM, L("coffee"), ASTRO), ok(held_back(DISSIM, "no face"))),
    ("arcface/several faces in image", DISSIM, b_identity(DISSIM, L("two"), ASTRO),
     ok(held_back(DISSIM, "2 faces"))),
    ("arcface/16x16 image", DISSIM, b_identity(DISSIM, L("tiny"), ASTRO), ok(held_back(DISSIM, "16x16", "64x64"))),
    ("arcface/huge image", DISSIM, b_identity(DISSIM, L("huge"), ASTRO), ok(report_rows(1, DISSIM))),
    ("arcface/grayscale image", DISSIM, b_identity(DISSIM, L("grey"), ASTRO), ok(report_rows(1, DISSIM))),
    ("arcface/RGBA image", DISSIM, b_identity(DISSIM, RGBA, ASTRO), ok(report_rows(1, DISSIM))),
    ("arcface/NaN pixels", DISSIM, b_identity(DISSIM, NAN, ASTRO), ok(held_back(DISSIM, "NaN"))),
    ("arcface/empty image batch", DISSIM, b_identity(DISSIM, EMPTY, ASTRO), ["image batch is empty"]),
    ("arcface/2 images vs 1 reference", DISSIM, b_identity(DISSIM, two_of("astro", "grace"), ASTRO),
     ok(report_rows(2, DISSIM))),
    ("arcface/corrupt ONNX", DISSIM, b_identity(DISSIM, GRACE, ASTRO, GARBAGE_ONNX),
     ["garbage.onnx", "not a loadable ONNX model"]),
    ("arcface/truncated ONNX", DISSIM, b_identity(DISSIM, GRACE, ASTRO, CUT_ONNX),
     ["cut.onnx", "not a loadable ONNX model"]),
    ("arcface/model_name missing", DISSIM, without(b_identity(DISSIM, GRACE, ASTRO), DISSIM, "model_name"),
     ["Required input is missing", "model_name"]),
    ("arcface/model_name a number", DISSIM, b_identity(DISSIM, GRACE, ASTRO, 7),
     ["model_name=7 is not one of its choices"]),

    # PalsyPrivacyGate
    ("gate/no face in reference", GATE, b_identity(GATE, GRACE, L("coffee")), ["no face found in reference"]),
    ("gate/several faces in reference", GATE, b_identity(GATE, GRACE, L("two")), ["reference", "2 faces", "one face"]),
    ("gate/empty reference batch", GATE, b_identity(GATE, GRACE, EMPTY), ["reference batch is empty"]),
    ("gate/NaN reference", GATE, b_identity(GATE, GRACE, NAN), ["NaN"]),
    ("gate/2 images vs 2 references", GATE, b_identity(GATE, two_of("grace", "astro"), two_of("astro", "astro")),
     ok(report_rows(2))),
    ("gate/missing model", GATE, b_identity(GATE, GRACE, ASTRO, "antelopev2/glintr100.onnx", backend="arcface"),
     ["antelopev2/glintr100.onnx", "models/insightface/"]),
    ("gate/corrupt ONNX", GATE, b_identity(GATE, ASTRO, GRACE, GARBAGE_ONNX),
     ["garbage.onnx", "not a loadable ONNX model"]),

    # PalsySaveAnonymized
    ("save/empty batch", "PalsySaveAnonymized", b_save(EMPTY), ["images batch is empty"]),
    ("save/method_summary missing", "PalsySaveAnonymized",
     without(b_save(ASTRO), "PalsySaveAnonymized", "method_summary"), ["Required input is missing", "method_summary"]),
    ("save/NaN pixels", "PalsySaveAnonymized", b_save(NAN), ["NaN"]),
    ("save/16x16", "PalsySaveAnonymized", b_save(L("tiny")),
     ok(saved_one((16, 16), _same_as(read_image(ASTRONAUT)[100:116, 180:196])))),
    ("save/grayscale", "PalsySaveAnonymized", b_save(L("grey")), ok(saved_one((512, 512), _grey))),
    ("save/RGBA tensor", "PalsySaveAnonymized", b_save(RGBA), ok(saved_one((512, 512), _rgba_composited_on_white))),
    ("save/huge", "PalsySaveAnonymized", b_save(L("huge")), ok(saved_one((HUGE, HUGE)))),

    # PalsyLabelledGrid
    ("grid/empty batch", "PalsyLabelledGrid", b_grid(EMPTY), ["images batch is empty"]),
    ("grid/NaN pixels", "PalsyLabelledGrid", b_grid(NAN), ["NaN"]),
    ("grid/labels for another batch size", "PalsyLabelledGrid", b_grid(two_of("astro", "grace"), row_labels="a\nb"),
     ["row_labels has 2 line(s) but the grid has 1"]),
    ("grid/rows from a node that runs once per line", "PalsyLabelledGrid",
     lambda g, u: save_image(g, [grid(g, [g.add("RebatchImages", images=two_of("astro", "grace")(g, u), batch_size=1), 0],
                                      columns=1, row_labels="a\nb"), 0]),
     ok(grid_of_width(64, rows=2))),
    ("grid/16x16, huge and RGBA tiles", "PalsyLabelledGrid",
     lambda g, u: save_image(g, [grid(g, batch(g, batch(g, load(g, u, "tiny"), load(g, u, "huge")), rgba(g, u)),
                                      columns=3), 0]),
     ok(grid_of_width(192))),

    # PalsyYanagiharaBatch
    ("photos/a batch on one item", "PalsyYanagiharaBatch", b_save(items(two_of("astro", "grace"))),
     ["each item takes one photo", "rest (2)", "one Load Image per item"]),
    ("photos/ten photos of three sizes", "PalsyYanagiharaBatch", b_save(items(ASTRO, L("huge"), L("grey"))),
     ok(saved_all(10, (512, 512)))),

    # PalsyLines
    ("lines/no line", "PalsyLines", lambda g, u: save(g, load(g, u, "astro"), summary=[lines(g, " \n\n"), 1]),
     ["text has no line"]),
    # The video nodes
    ("smooth/NaN beta", "PalsySmoothLandmarks",
     lambda g, u: save_image(g, video_conditions(g, load(g, u, "astro"), smoothed(g, landmarks(g, load(g, u, "astro")),
                                                                               beta=math.nan))), ["beta is nan"]),
    ("smooth/one frame", "PalsySmoothLandmarks",
     lambda g, u: save_image(g, video_conditions(g, load(g, u, "astro"), smoothed(g, landmarks(g, load(g, u, "astro"))))),
     ok(saved_one((256, 256)))),
    ("video conditions/codc without a donor", "PalsyVideoConditions",
     lambda g, u: save_image(g, video_conditions(g, load(g, u, "astro"), landmarks(g, load(g, u, "astro")), "codc")),
     ["codc needs donor_image and donor_landmarks"]),
    ("video conditions/2 frames, landmarks of 1", "PalsyVideoConditions",
     lambda g, u: save_image(g, video_conditions(g, two_of("astro", "grace")(g, u), landmarks(g, load(g, u, "astro")))),
     ["1 landmark sets for 2 frames"]),
    ("video conditions/NaN frames", "PalsyVideoConditions",
     lambda g, u: save_image(g, video_conditions(g, nan_image(g, u), landmarks(g, load(g, u, "astro")))), ["NaN"]),
    ("cross-frame/model a typed value", "PalsyCrossFrameAttention",
     lambda g, u: save_video(g, sampled(g, model=[g.add("PalsyCrossFrameAttention", model="x",
                                                        attend_to="first_frame"), 0])),
     ["model takes a link"]),
    ("same noise/latent a typed value", "PalsySameNoise",
     lambda g, u: save_video(g, sampled(g, latent=[g.add("PalsySameNoise", latent=3), 0])), ["latent takes a link"]),
    ("video save/empty batch", "PalsySaveAnonymizedVideo", lambda g, u: save_video(g, empty(g)),
     ["frames batch is empty"]),
    ("video save/hidden file prefix", "PalsySaveAnonymizedVideo",
     lambda g, u: save_video(g, load(g, u, "astro"), filename_prefix=".x"), ["hidden files"]),
    ("video save/NaN pixels", "PalsySaveAnonymizedVideo", lambda g, u: save_video(g, nan_image(g, u)), ["NaN"]),
    ("video save/two frames sampled with the patch", "PalsySaveAnonymizedVideo", lambda g, u: save_video(g, sampled(g)),
     ok(saved_video(2))),

    ("lines/one run per line", "PalsyLines",
     lambda g, u: save(g, load(g, u, "astro"), summary=[lines(g, "a man\n\n  a woman \nan elder"), 0]),
     ok(saved_all(3, (512, 512)))),
]
IDS = [c[0] for c in CASES]
NODES = ["PalsyFaceLandmarks", "PalsyOrganCropResize", "PalsyContourReposition", "PalsyPFCondition",
         "PalsyTimestepWindowControlNetLoader", "PalsyWindowSteps", DISSIM, GATE, "PalsySaveAnonymized", "PalsyLabelledGrid",
         "PalsyFaceCrop", "PalsyPreview", "PalsyYanagiharaBatch", "PalsyLines", "PalsySmoothLandmarks",
         "PalsyVideoConditions", "PalsyCrossFrameAttention", "PalsySameNoise", "PalsySaveAnonymizedVideo"]


def test_every_pack_node_has_rows_in_the_table(host):
    listed = {k for k, v in host.object_info().items() if v.get("python_module") == "custom_nodes.palsysim"}
    assert listed == set(NODES), listed ^ set(NODES)
    assert {c[1] for c in CASES} == set(NODES)


@pytest.mark.parametrize("case,node,build,expect", CASES, ids=IDS)
def test_bad_input(host, u, case, node, build, expect):
    g = G()
    build(g, u)
    task_file = host.model_path("mediapipe", "face_landmarker.task")
    corrupt_task = "corrupt face_landmarker.task" in case
    if corrupt_task:
        with open(task_file, "wb") as f:
            f.write(b"not a zip archive, not a model")
    try:
        t0 = time.monotonic()
        result = host.run(g.nodes)
        took = time.monotonic() - t0
    finally:
        if corrupt_task:
            os.remove(task_file)  # other test files expect models/mediapipe/ empty
    assert host.alive(), host.log()[-3000:]
    if callable(expect):
        assert result.ok, f"{case}: {result.error}"
        expect(host, result, g)
    else:
        assert result.status in ("error", "invalid"), f"{case}: {result.status}"
        if result.status == "error":  # raised on purpose, not a crash inside the node
            assert result.error_type.endswith("InputError"), f"{case}: {result.error_type}: {result.error}"
        assert g.nodes[result.error_node]["class_type"] == node, f"{case}: failed at {result.error}"
        for word in expect:
            assert word in result.error, f"{case}: {word!r} not in {result.error!r}"
        assert "Traceback" not in result.error
        for python_error in ("positional argument", "object has no attribute", "not supported between"):
            assert python_error not in result.error, f"{case}: {result.error}"
    assert took < 60, f"{case} took {took:.1f} s"
    # The server still answers a good prompt (its own min_confidence keeps the cache out of it).
    good = host.run(landmarks_graph(host.upload_image(ASTRONAUT, "bad_after.png"),
                                    0.3 + 0.004 * IDS.index(case), prefix="bad_after"))
    assert good.ok, good.error
    assert_landmarks_drawn_on_face(read_image(ASTRONAUT), host.images(good, "3")[0])


def test_after_the_table_a_good_prompt_through_every_node(host, u):
    g = G()
    saved, sheet = every_node(g, u)
    result = host.run(g.nodes)
    assert result.ok, result.error
    assert len(host.images(result, saved)) == 1 and host.images(result, saved)[0].shape == (512, 512, 3)
    assert host.images(result, sheet)[0].shape[1:] == (192, 3)
    reports = [v["text"][0] for v in result.outputs.values() if "text" in v]
    assert any("t 500..700" in r for r in reports), reports
    assert any("1 of 1 passed" in r for r in reports), reports


def test_every_input_of_every_node_refuses_bad_values_at_validation(host, u):
    """issue 12, items 9 and 10: every FLOAT of every pack node refuses NaN and infinities (they passed
    ComfyUI's min/max test), every combo a value not in its list (ComfyUI never checks a V3 combo's),
    every socket a typed value, every INT a value above its max: before anything runs, with a message
    naming the input (or, for a model file, the file), one input changed at a time in a good prompt."""
    info = {k: v for k, v in host.object_info().items() if v.get("python_module") == "custom_nodes.palsysim"}
    g = G()
    every_node(g, u)
    where = {v["class_type"]: k for k, v in g.nodes.items()}
    assert set(info) <= set(where), f"every_node lacks {set(info) - set(where)}"
    tried = 0
    for node, entry in sorted(info.items()):
        for category in ("required", "optional"):
            for name, (kind, *rest) in entry["input"].get(category, {}).items():
                for value, words in _sweep_values(kind, rest[0] if rest else {}):
                    bad = json.loads(json.dumps(g.nodes))
                    bad[where[node]]["inputs"][name] = value
                    # ComfyUI queues the outputs that validate and lists the refused nodes in node_errors
                    r = requests.post(host.url + "/prompt", data=json.dumps({"prompt": bad}), timeout=60,
                                      headers={"Content-Type": "application/json"})
                    refused = r.json().get("node_errors", {}).get(where[node])
                    assert refused, f"{node}.{name}={value!r} was not refused: {r.text[:2000]}"
                    error = "\n".join(f"{e['message']}: {e['details']}" for e in refused["errors"])
                    named = name in error.split(" - ", 1)[-1] or repr(value) in error
                    assert named and (words in error or "not found: put it in" in error), f"{node}.{name}={value!r}: {error}"
                    for python_error in ("positional argument", "object has no attribute", "not supported between"):
                        assert python_error not in error, f"{node}.{name}={value!r}: {error}"
                    tried += 1
    assert tried > 60, tried
    deadline = time.monotonic() + 300  # the other outputs of those prompts run (cached): let them finish
    while host.get("/queue")["queue_running"] or host.get("/queue")["queue_pending"]:
        assert time.monotonic() < deadline and host.alive()
        time.sleep(0.2)
    print(f"{tried} bad values over {len(info)} pack nodes refused at validation")


def test_comfyuis_own_model_folders_are_searched_beside_declared_ones(host):
    """issue 12, model folders: the test host's extra_model_paths.yaml declares insightface and mediapipe
    (as MODELS_DIR does for the runner); a file in ComfyUI's own models/insightface/ or models/mediapipe/
    must still be listed (it was invisible, and `make demo` failed on a model it had found itself)."""
    probes = []
    try:
        for folder, ext in (("insightface", ".onnx"), ("mediapipe", ".task")):
            own = os.path.join(comfyui_dir(), "models", folder)
            # Kept afterwards (empty): the session server caches folder mtimes, and ComfyUI 0.3.75 then fails
            # every later listing of a folder that was removed ("No such file or directory").
            os.makedirs(own, exist_ok=True)
            name = f"palsysim_probe_{uuid.uuid4().hex[:8]}{ext}"
            open(os.path.join(own, name), "wb").close()
            probes.append((own, name))
            assert os.path.isdir(host.model_path(folder, "")), "the test host no longer declares the folder"
            assert name in host.get(f"/models/{folder}"), f"ComfyUI's own models/{folder}/ is not searched"
        options = host.object_info(DISSIM)["input"]["required"]["model_name"][1]["options"]
        assert probes[0][1] in options
    finally:
        for own, name in probes:
            os.remove(os.path.join(own, name))
