"""The bad-input table's graph builders and checks (tests/test_bad_inputs.py): small API-format prompts
through every pack node, the model files the table needs, and what each table row expects of the result.

How the inputs reach the nodes (all through POST /prompt, no node is called directly):
- grayscale: a 1-channel PNG; LoadImage makes it 3 equal channels.
- RGBA: a 4-channel IMAGE tensor, made by LoadImage (RGB + MASK of an RGBA PNG) -> JoinImageWithAlpha.
- NaN pixels: no uploaded file can carry NaN (LoadImage decodes 8-bit or 16-bit integers), but a
  core node chain can: ImageBlend with blend_factor NaN (a bare `NaN` in the prompt JSON; Python's
  json and so the server accept it, and NaN passes the min/max check) gives an all-NaN image
  (its torch.clamp keeps NaN).
- empty batch: PrimitiveInt 0 -> EmptyImage.batch_size (a link skips the min check; see test_host.py).
- "huge": HUGE x HUGE. 8192x8192 was measured on 2 CPU cores: the landmark node's core alone took
  16 s for detection plus 7.7 s for its preview, before the host decodes the upload and encodes a
  PNG, so well over the 20 s a table case may take; 4096 keeps every step but costs about a quarter.
"""
import math
import os

import cv2
import numpy as np
import torch
from host import TINY_CONTROLNET, read_image
from host_graphs import ASTRONAUT, assert_landmarks_drawn_on_face
from safetensors.torch import save_file
from tiny_arcface import write_tiny_arcface
from tiny_models import tiny_controlnet_state_dict

from palsysim.base.vocabulary import ITEMS

HUGE = 4096
ARCFACE = "bad_inputs/tiny_arcface.onnx"
GARBAGE_ONNX = "bad_inputs/garbage.onnx"
CUT_ONNX = "bad_inputs/cut.onnx"
GARBAGE_SFT = "bad_inputs_garbage.safetensors"
CUT_CKPT = "bad_inputs_cut.ckpt"
CHECKPOINT_IN_CONTROLNET = "bad_inputs_sd_checkpoint.safetensors"
FEW_KEYS_SFT = "bad_inputs_few_keys.safetensors"  # control_model.* keys, not enough for ComfyUI to build a net
HALF_KEYS_SFT = "bad_inputs_half_keys.safetensors"  # half its weights: ComfyUI's detection fails inside
NO_MIDDLE_OUT_SFT = "bad_inputs_no_middle_out.safetensors"  # ComfyUI builds it, leaving middle_block_out at random
EDGE = {"low_threshold": 100.0, "high_threshold": 200.0, "blur_sigma": 0.0}
LM = {"max_faces": 1, "min_confidence": 0.5, "face_index": 0, "backend": "auto"}



class G:
    """An API-format prompt under construction; add() returns the node id."""

    def __init__(self):
        self.nodes = {}

    def add(self, class_type, **inputs):
        nid = str(len(self.nodes) + 1)
        self.nodes[nid] = {"class_type": class_type, "inputs": inputs}
        return nid


def load(g, u, key):
    return [g.add("LoadImage", image=u[key]), 0]


def rgba(g, u, key="rgba"):
    nid = g.add("LoadImage", image=u[key])
    return [g.add("JoinImageWithAlpha", image=[nid, 0], alpha=[nid, 1]), 0]


def nan_image(g, u, key="astro"):
    img = load(g, u, key)
    return [g.add("ImageBlend", image1=img, image2=img, blend_factor=math.nan, blend_mode="normal"), 0]


def empty(g):
    n = g.add("PrimitiveInt", value=0)
    return [g.add("EmptyImage", width=256, height=256, batch_size=[n, 0], color=0), 0]


def batch(g, a, b):
    return [g.add("ImageBatch", image1=a, image2=b), 0]


def landmarks(g, image, **kw):
    return [g.add("PalsyFaceLandmarks", image=image, **{**LM, **kw}), 0]


def organs(g, image, lm, donor_lm):
    return [g.add("PalsyOrganCropResize", image=image, landmarks=lm, donor_landmarks=donor_lm, eye_margin=0.25,
                  nose_margin=0.15, mouth_margin=0.15, **EDGE), 0]


def contour(g, organs_, donor_image, donor_lm):
    return g.add("PalsyContourReposition", organs=organs_, donor_image=donor_image, donor_landmarks=donor_lm,
                 contour="canny", **EDGE)


def identity(g, kind, image, reference, model=ARCFACE, threshold=0.28, **kw):
    return g.add(kind, image=image, reference=reference, model_name=model, threshold=threshold, **kw)


def save(g, images, prefix="bad_inputs/case", summary=""):
    return g.add("PalsySaveAnonymized", images=images, filename_prefix=prefix, method_summary=summary)


def items(*srcs):
    """A Yanagihara batch whose first item comes from srcs[0], the next from srcs[1], ... (the last repeats)."""
    def build(g, u):
        photos = [src(g, u) for src in srcs]
        return [g.add("PalsyYanagiharaBatch", **{e: photos[min(i, len(photos) - 1)] for i, e in enumerate(ITEMS)}), 0]
    return build


def lines(g, text):
    return g.add("PalsyLines", text=text)


def grid(g, images, **kw):
    args = {"columns": 2, "column_labels": "", "row_labels": "", "tile_size": 64, **kw}
    return g.add("PalsyLabelledGrid", images=images, **args)


def save_image(g, images, prefix="bad_inputs/out"):
    return g.add("SaveImage", images=images, filename_prefix=prefix)


def loader(g, name, t_lo=500, t_hi=700, apply="everywhere", base="(none)", **kw):
    nid = g.add("PalsyTimestepWindowControlNetLoader", **{
        "control_net_name": name, "apply": apply, "t_lo": t_lo, "t_hi": t_hi, "base_control_net_name": base,
        **kw})
    g.add("PreviewAny", source=[nid, 1])
    return nid


def patient_and_donor(g, u, patient_image, patient_lm_image=None):
    """(patient image, its landmarks, donor image, donor landmarks); patient landmarks from
    patient_lm_image when given (a bad image that the landmark node would refuse itself)."""
    donor = load(g, u, "grace")
    lm = landmarks(g, patient_lm_image or patient_image)
    return patient_image, lm, donor, landmarks(g, donor)


def video_conditions(g, frames, lm, mode="pf", **kw):
    return [g.add("PalsyVideoConditions", frames=frames, landmarks=lm, mode=mode, size=256, contour="canny", **kw), 0]


def smoothed(g, lm, **kw):
    return [g.add("PalsySmoothLandmarks", landmarks=lm, **{"fps": 30.0, "min_cutoff": 1.0, "beta": 50.0,
                                                            "d_cutoff": 1.0, **kw}), 0]


def save_video(g, frames, **kw):
    return g.add("PalsySaveAnonymizedVideo", frames=frames, **{"fps": 8.0, "filename_prefix": "bad_inputs/video",
                                                               "format": "mp4", **kw})


def sampled(g, model=None, latent=None):
    """Two 64x64 frames of the tiny checkpoint through the cross-frame patch from one noise -> decoded IMAGE."""
    ckpt = g.add("CheckpointLoaderSimple", ckpt_name="tiny_sd15.safetensors")
    text = g.add("CLIPTextEncode", clip=[ckpt, 1], text="ID photo of a person")
    if model is None:
        model = [g.add("PalsyCrossFrameAttention", model=[ckpt, 0], attend_to="first_frame"), 0]
    latent = latent if latent is not None else [g.add("PalsySameNoise", latent=[g.add(
        "EmptyLatentImage", width=64, height=64, batch_size=2), 0]), 0]
    k = g.add("KSampler", model=model, positive=[text, 0], negative=[text, 0], latent_image=latent, seed=1, steps=1,
              cfg=1.0, sampler_name="euler", scheduler="normal", denoise=1.0)
    return [g.add("VAEDecode", samples=[k, 0], vae=[ckpt, 2]), 0]


def saved_video(frames):
    def check(host, result, g):
        from palsysim.base.video_files import read_video
        nid = next(k for k, v in g.nodes.items() if v["class_type"] == "PalsySaveAnonymizedVideo")
        (v,) = result.outputs[nid]["palsysim_video"]
        assert len(read_video(os.path.join(host.output_dir, v["subfolder"], v["filename"]))[0]) == frames
    return check


# --- the table -----------------------------------------------------------------------------------
# Each case: (id, node type under test, build(g, u) adding the prompt's nodes, expectation).
# Expectation: a list of words the message must hold (the node under test must be the one that
# fails), or a function check(host, result, g) for a correct conversion.

def ok(check):
    return check


def saved_one(shape, compare=None):
    """The last PalsySaveAnonymized/SaveImage node wrote one image of `shape` (H, W)."""
    def check(host, result, g):
        out = [n for n, v in g.nodes.items() if v["class_type"] in ("PalsySaveAnonymized", "SaveImage")][-1]
        images = host.images(result, out)
        assert len(images) == 1 and images[0].shape[:2] == shape, [i.shape for i in images]
        if compare is not None:
            compare(images[0])
    return check


def saved_all(n, shape):
    """The last save node wrote n images, each of `shape` (H, W)."""
    def check(host, result, g):
        out = [n for n, v in g.nodes.items() if v["class_type"] in ("PalsySaveAnonymized", "SaveImage")][-1]
        assert [i.shape[:2] for i in host.images(result, out)] == [shape] * n
    return check


def grid_of_width(width, rows=None):
    """One sheet `width` wide (and, if given, `rows` rows of 64 px tiles with their 28 px label band)."""
    def check(host, result, g):
        (sheet,) = host.images(result, [k for k, v in g.nodes.items() if v["class_type"] == "SaveImage"][-1])
        assert sheet.shape[1] == width and sheet.shape[0] >= 64, sheet.shape  # tiles of 64 plus a label band
        assert rows is None or sheet.shape[0] == rows * (64 + 28), sheet.shape
    return check


def marks_on_face_of(path, size=None):
    def compare(preview):
        photo = read_image(path) if isinstance(path, str) else path
        photo = photo if size is None else cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
        assert_landmarks_drawn_on_face(photo, preview)
    return compare


def report_rows(n, node="PalsyPrivacyGate"):
    def check(host, result, g):
        nid = next(k for k, v in g.nodes.items() if v["class_type"] == node)
        text = result.outputs[nid]["text"][0]
        rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
        assert len(rows) == n, text
    return check


def held_back(node, *reason):
    """An image whose identity cannot be checked is held back with its reason, never an error."""
    def check(host, result, g):
        report_rows(1, node)(host, result, g)
        nid = next(k for k, v in g.nodes.items() if v["class_type"] == node)
        row = next(line for line in result.outputs[nid]["text"][0].splitlines() if line.startswith("| 1 "))
        assert "HELD" in row and all(r in row for r in reason), row
    return check


def _two_faces_keep_largest(host, result, g):
    (preview,) = host.images(result, [k for k, v in g.nodes.items() if v["class_type"] == "SaveImage"][-1])
    photo = read_image(os.path.join(host.input_dir, g.nodes["1"]["inputs"]["image"]))
    changed = np.abs(preview.astype(int) - photo.astype(int)).max(axis=2) > 40
    assert changed.sum() > 200
    assert changed[:, 320:].sum() / changed.sum() > 0.98, "marks are not all on the larger (right) face"


def _rgba_composited_on_white(img):
    astro = read_image(ASTRONAUT)
    assert img[:40].min() >= 250, "the transparent band was not composited on white"
    assert np.abs(img[40:].astype(int) - astro[40:]).max() <= 1


def _same_as(path_or_array):
    def compare(img):
        want = read_image(path_or_array) if isinstance(path_or_array, str) else path_or_array
        assert np.abs(img.astype(int) - want.astype(int)).max() <= 1
    return compare


def _grey(img):
    assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])


def b_landmarks_simple(src, **kw):
    def build(g, u):
        save_image(g, [landmarks(g, src(g, u), **kw)[0], 1])
    return build


def b_organs(patient_src, patient_lm_src=None, donor_lm_batch=False):
    def build(g, u):
        img = patient_src(g, u)
        lm = landmarks(g, patient_lm_src(g, u) if patient_lm_src else img)
        donor = load(g, u, "grace")
        dlm = landmarks(g, batch(g, donor, donor) if donor_lm_batch else donor)
        o = organs(g, img, lm, dlm)
        save_image(g, [o[0], 1])
    return build


def b_contour(donor_src, donor_lm_src=None):
    def build(g, u):
        img = load(g, u, "astro")
        donor_for_lm = load(g, u, "grace")
        dlm = landmarks(g, donor_for_lm)
        o = organs(g, img, landmarks(g, img), dlm)
        d = donor_src(g, u)
        c = contour(g, o, d, landmarks(g, donor_lm_src(g, u)) if donor_lm_src else dlm)
        save_image(g, [c, 0])
    return build


def b_pf(src, lm_src=None):
    def build(g, u):
        img = src(g, u)
        lm = landmarks(g, lm_src(g, u) if lm_src else img)
        pf = g.add("PalsyPFCondition", image=img, landmarks=lm, size=512, margin=0.25, **EDGE)
        save_image(g, [pf, 0])
    return build


def b_identity(kind, image_src, ref_src, model=ARCFACE, **kw):
    def build(g, u):
        identity(g, kind, image_src(g, u), ref_src(g, u), model, **kw)
    return build


def b_save(src):
    def build(g, u):
        save(g, src(g, u))
    return build


def b_grid(src, **kw):
    def build(g, u):
        save_image(g, [grid(g, src(g, u), **kw), 0])
    return build


def b_loader(name, **kw):
    def build(g, u):
        loader(g, name, **kw)
    return build


def window_run(g, u, net=None, steps=3, **kw):
    """The tiny checkpoint sampled (64x64, `steps` steps) with a ControlNet (default: the window loader's, on
    the tiny net at 500..700) applied through Apply ControlNet (Advanced); then PalsyWindowSteps (its
    inputs: control_net = `net`, samples the sampler's, overridden by kw) -> Preview as Text. Returns its id."""
    if net is None:  # no Preview of its own report: the steps report is the prompt's one output
        net = [g.add("PalsyTimestepWindowControlNetLoader", control_net_name=TINY_CONTROLNET, apply="everywhere",
                     t_lo=500, t_hi=700, base_control_net_name="(none)"), 0]
    ckpt = g.add("CheckpointLoaderSimple", ckpt_name="tiny_sd15.safetensors")
    text = g.add("CLIPTextEncode", clip=[ckpt, 1], text="ID photo of a person")
    apply = g.add("ControlNetApplyAdvanced", positive=[text, 0], negative=[text, 0], control_net=net,
                  image=load(g, u, "astro"), strength=1.0, start_percent=0.0, end_percent=1.0, vae=[ckpt, 2])
    latent = g.add("EmptyLatentImage", width=64, height=64, batch_size=1)
    k = g.add("KSampler", model=[ckpt, 0], positive=[apply, 0], negative=[apply, 1], latent_image=[latent, 0],
              seed=1, steps=steps, cfg=1.0, sampler_name="euler", scheduler="normal", denoise=1.0)
    nid = g.add("PalsyWindowSteps", **{"control_net": net, "samples": [k, 0], **kw})
    g.add("PreviewAny", source=[nid, 0])
    return nid


def b_window_run(net=None, **kw):
    def build(g, u):
        window_run(g, u, net(g) if net else None, **kw)
    return build


def steps_report_says(*words):
    def check(host, result, g):
        nid = next(k for k, v in g.nodes.items() if v["class_type"] == "PalsyWindowSteps")
        (text,) = result.outputs[str(int(nid) + 1)]["text"]
        assert all(w in text for w in words), text
    return check


def without(build, node, name):
    """build, then the input `name` of the last `node` node dropped (as a hand-written API prompt may)."""
    def built(g, u):
        build(g, u)
        nid = [k for k, v in g.nodes.items() if v["class_type"] == node][-1]
        del g.nodes[nid]["inputs"][name]
    return built


def setting(build, node, **values):
    """build, then inputs of the last `node` node set to `values` (a typed value in place of a link too)."""
    def built(g, u):
        build(g, u)
        nid = [k for k, v in g.nodes.items() if v["class_type"] == node][-1]
        g.nodes[nid]["inputs"].update(values)
    return built


def L(key):
    return lambda g, u: load(g, u, key)


def two_of(key_a, key_b):
    return lambda g, u: batch(g, load(g, u, key_a), load(g, u, key_b))


RGBA = rgba
NAN = nan_image
EMPTY = lambda g, u: empty(g)  # noqa: E731
ASTRO, GRACE = L("astro"), L("grace")
GATE, DISSIM = "PalsyPrivacyGate", "PalsyArcFaceDissimilarity"


def write_model_files(host):
    """The table's model files, good and broken, in the host's model folders."""
    write_tiny_arcface(host.model_path("insightface", ARCFACE))
    good_onnx = open(host.model_path("insightface", ARCFACE), "rb").read()
    rng = np.random.default_rng(0)
    with open(host.model_path("insightface", GARBAGE_ONNX), "wb") as f:
        f.write(rng.bytes(4000))
    with open(host.model_path("insightface", CUT_ONNX), "wb") as f:
        f.write(good_onnx[: len(good_onnx) // 2])
    with open(host.model_path("controlnet", GARBAGE_SFT), "wb") as f:
        f.write(rng.bytes(4000))
    ckpt = host.model_path("controlnet", CUT_CKPT)
    torch.save({"state_dict": tiny_controlnet_state_dict(seed=3)}, ckpt)
    data = open(ckpt, "rb").read()
    open(ckpt, "wb").write(data[: len(data) // 2])
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3)},
              host.model_path("controlnet", CHECKPOINT_IN_CONTROLNET))
    control = tiny_controlnet_state_dict(seed=4)
    keys = sorted(control)
    save_file({k: control[k] for k in keys if "zero_convs" in k or "input_hint_block" in k},
              host.model_path("controlnet", FEW_KEYS_SFT))
    save_file({k: control[k] for k in keys[::2] + [k for k in keys if k.endswith((
        "zero_convs.0.0.weight", "input_blocks.0.0.weight", "input_hint_block.0.weight"))]},
        host.model_path("controlnet", HALF_KEYS_SFT))
    save_file({k: v for k, v in control.items() if "middle_block_out" not in k},
              host.model_path("controlnet", NO_MIDDLE_OUT_SFT))


def every_node(g, u):
    """A good prompt through every pack node (its identity nodes on ArcFace alone, so a model name counts);
    returns the ids of the anonymized save and of the grid's SaveImage."""
    patient, donor = load(g, u, "astro"), load(g, u, "grace")
    plm, dlm = landmarks(g, patient, min_confidence=0.55), landmarks(g, donor, min_confidence=0.55)
    cond = contour(g, organs(g, patient, plm, dlm), donor, dlm)
    gate = identity(g, GATE, donor, patient, threshold=0.999)  # grace vs the astronaut: passes
    identity(g, DISSIM, donor, patient)
    for nid in (gate, str(len(g.nodes))):
        g.nodes[nid]["inputs"]["backend"] = "arcface"
    saved = save(g, [gate, 0], prefix="bad_inputs/final")
    pf = g.add("PalsyPFCondition", image=patient, landmarks=plm, size=512, margin=0.25, **EDGE)
    crop = g.add("PalsyFaceCrop", image=patient, landmarks=plm, size=256, margin=0.25)
    g.add("PalsyPreview", images=[crop, 0])
    sheet = save_image(g, [grid(g, batch(g, batch(g, [cond, 0], donor), [pf, 0]), columns=3,
                                row_labels=[lines(g, "a man"), 1]), 0], prefix="bad_inputs/final_grid")
    g.add("PalsyPreview", images=items(lambda g, u: patient)(g, u))
    window_run(g, u)
    g.add("PalsyPreview", images=video_conditions(g, patient, smoothed(g, plm)))
    save_video(g, sampled(g))
    return saved, sheet


def _sweep_values(kind, spec):
    """The bad values tried for an input of type `kind` (object_info's spec): (value, words of the message)."""
    if kind == "FLOAT":
        return [(math.nan, "is nan, not a number"), (math.inf, "is inf, not a number"), (-math.inf, "is -inf")]
    if kind == "INT":
        return [(spec.get("max", 0) + 1, "is out of range")]
    if kind == "COMBO":
        return [("no such choice", "'no such choice'"), (7, "=7 is not one of its choices")]
    if kind in ("STRING", "BOOLEAN"):
        return []  # any text or truth value is one; the nodes that restrict text have table rows
    return [("astro.png", "takes a link from a node's")]  # a socket: IMAGE, PALSY_LANDMARKS, ...
