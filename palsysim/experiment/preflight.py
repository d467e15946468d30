"""Everything checked before the first stage, reported in one message: the settings (config.py), the
files they name (there, and what they claim to be, by their headers), the patients and donors, and every
path the experiment would write, overwrite or delete.

The experiment owns only what it wrote: EXP/state.json records the paths it claims (before it writes
any of them), and a path that exists without that record belongs to the user and is refused.
"""
import os
import zipfile

from ..base.errors import InputError
from ..base.files import sha256_of
from ..base.layout import first_photo
from ..base.model_files import digest_state, fetch_hint, missing_hint
from ..base.outputs import overlap
from ..base.photos import read_image
from ..controlnet.keys import CONTROL_PREFIX, RECOGNISED_BY, SD15_CONTEXT_DIM
from . import config, stages, videos

UNET_PREFIX = "model.diffusion_model."


def check(exp, state):
    """{"patient_k": {expression: photo}} when nothing stands in the way; else one InputError listing all."""
    problems = list(exp.problems)
    if state.foreign:
        problems.append(f"{state.path} is not this experiment's record ({state.foreign}): move it away; the "
                        f"experiment keeps its record of what it wrote there")
    problems += model_problems(exp)
    found, more = patient_problems(exp)
    problems += more + path_problems(exp, state)
    if problems:
        raise InputError(f"the experiment cannot start: {len(problems)} problem(s) in {exp.path('experiment.toml')} "
                         f"and what it names:\n  " + "\n  ".join(problems))
    return found


def outputs(exp):
    """{path under EXP: what the experiment writes there} for these settings."""
    out = {exp.path("prepared"): "the prepared photos", exp.path("figures"): "the figures",
           exp.path("report.md"): "the report", exp.path("report.html"): "the report"}
    for folder, path in (("checkpoints", exp.checkpoint), ("controlnet", exp.controlnet)):
        if path:
            out[stages.link_path(exp, folder, path)] = f"a link to [models] {folder.rstrip('s')}"
    for name in exp.nets():
        out[stages.net_path(exp, name)] = f"the net it trains, {name}"
        out[stages.work_path(exp, name)] = f"the training of {name}"
    for run in exp.runs():
        out[exp.path("generated", run)] = f"the images of {run}"
        out[exp.path("evaluation", run)] = f"the scores of {run}"
    for run in exp.video_runs():
        out[exp.path("generated", run)] = f"the videos of {run}"
        out[exp.path("evaluation", run)] = f"the scores of {run}"
    for run, first in config.twins(exp.runs()).items():
        out[exp.path("generated", run) + ".partial"] = f"the copy of {first}'s images being made for {run}"
    return out


# --- model files -----------------------------------------------------------------------------------

def tensor_shapes(path):
    """{tensor name: shape} of a safetensors or PyTorch file, read from its header (a .pth/.ckpt is
    mapped, not read; never running pickled code); InputError when it is neither."""
    name = os.path.basename(path)
    if path.lower().endswith((".safetensors", ".sft")):
        from safetensors import SafetensorError, safe_open
        try:
            with safe_open(path, framework="pt") as f:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        except (SafetensorError, OSError) as e:
            raise InputError(f"{name} is not a readable safetensors file ({e}): it is cut short or is no model "
                             f"file; copy it again") from None
    import torch
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as e:  # torch.load raises many types for a cut, foreign or code-carrying file
        why = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise InputError(f"{name} is not a readable PyTorch weights file ({why}): it is cut short, no model file, "
                         f"or carries code beside its weights; use a safetensors copy") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise InputError(f"{name} holds no weights (a {type(data).__name__}, not a state dict); give a model file")
    return {k: tuple(v.shape) for k, v in data.items() if isinstance(v, torch.Tensor)}


def cross_attention_width(shapes, prefix):
    return next((s[1] for k, s in shapes.items() if k.startswith(prefix) and k.endswith("attn2.to_k.weight")
                 and len(s) == 2), None)


def is_controlnet(shapes):
    ldm = {k[len(CONTROL_PREFIX):] if k.startswith(CONTROL_PREFIX) else k for k in shapes}
    return all(k in ldm for k in RECOGNISED_BY) or "controlnet_cond_embedding.conv_in.weight" in shapes


def checkpoint_problem(shapes):
    if not any(k.startswith(UNET_PREFIX) for k in shapes):
        if is_controlnet(shapes):
            return "is a ControlNet, not an SD1.5 checkpoint: give it as [models] controlnet, and the checkpoint here"
        return (f"holds no Stable Diffusion UNet (no {UNET_PREFIX}* weights): give an SD1.5 checkpoint such as "
                f"v1-5-pruned-emaonly.safetensors")
    width = cross_attention_width(shapes, UNET_PREFIX)
    if width != SD15_CONTEXT_DIM:
        return f"is not an SD1.5 checkpoint (cross-attention width {width}, SD1.5 has {SD15_CONTEXT_DIM})"


def controlnet_problem(shapes):
    if not is_controlnet(shapes):
        if any(k.startswith(UNET_PREFIX) for k in shapes):
            return ("is a Stable Diffusion checkpoint with no ControlNet inside: give it as [models] checkpoint, and "
                    "the Canny ControlNet (control_sd15_canny) here")
        return "holds no ControlNet (no control_model.* weights): give the SD1.5 Canny ControlNet, control_sd15_canny"
    width = cross_attention_width({k: s for k, s in shapes.items() if not k.startswith(UNET_PREFIX)}, "")
    if width not in (None, SD15_CONTEXT_DIM):
        return f"is a ControlNet for another base model (cross-attention width {width}, SD1.5 has {SD15_CONTEXT_DIM})"


def arcface_problem(path):
    if not path.lower().endswith(".onnx"):  # insightface reads nothing else, and would say only "NoneType"
        return "is not an ONNX model: give ArcFace's .onnx file, e.g. buffalo_l/w600k_r50.onnx"


# The catalog file each [models] setting names when it is the published one (the paper's base models).
PUBLISHED = {"checkpoint": "v1-5-pruned-emaonly.safetensors", "controlnet": "control_sd15_canny.pth",
             "arcface": "buffalo_l/w600k_r50.onnx", "lpips_weights": "alexnet-owt-7be5be79.pth"}


def model_problems(exp):
    """The model files exist, and are (by their headers, or loaded where that is cheap) what their
    settings say; the identity backend has what it needs."""
    from ..identity import arcface
    from ..identity import dlib_face as identity_dlib
    from ..measure.fidelity import lpips_model
    checks = {"checkpoint": lambda p: checkpoint_problem(tensor_shapes(p)),
              "controlnet": lambda p: controlnet_problem(tensor_shapes(p)),
              "arcface": lambda p: arcface_problem(p) or arcface.load_model(p) and None, "lpips_weights": lambda p: lpips_model(p) and None}
    problems = []
    for key, check_file in checks.items():
        path = getattr(exp, key)
        if not path:
            continue
        if not os.path.isfile(path):
            hint = missing_hint(path) or (f" (the published one: {fetch_hint(PUBLISHED[key])} downloads it, then "
                                          f"give its path)" if key in PUBLISHED else "")
            problems.append(f"[models] {key}: no such file {path}{hint}")
            continue
        try:
            why = check_file(path)
        except InputError as e:
            why = str(e)
        if why:
            problems.append(f"[models] {key} {path}: {why}")
            continue
        state, what = digest_state(path, sha256_of(path))
        if state == "MISMATCH" and not exp.accept_mismatch:
            problems.append(f"[models] {key} {path}: its SHA-256 is not the published file's ({what}): a wrong "
                            f"or damaged download; fetch it again{missing_hint(path)}, or set [models] "
                            f"accept_mismatch = true to run on it (the report says so)")
    backend = exp.identity_backend
    if backend in ("arcface", "both") and not exp.arcface:
        problems.append(f"[models] identity_backend = {backend!r} needs ArcFace's model: give [models] arcface, an "
                        f"ArcFace ONNX such as buffalo_l/w600k_r50.onnx{missing_hint('w600k_r50.onnx')}")
    if backend in ("dlib", "both") or (backend == "auto" and not exp.arcface):
        why = identity_dlib.unavailable()
        if why:
            problems.append(f"[models] identity_backend = {backend!r} uses dlib here, and it cannot run: {why}")
    return problems


# --- patients and donors ---------------------------------------------------------------------------

def patient_problems(exp):
    """(found patients, problems): the patients' layout, CODC's rest photos and donor faces."""
    from ..face.landmarks import face_landmarks
    problems, found = [], {}
    if exp.patients:
        try:
            found = stages.patients(exp)
            if exp.video:  # two files of one item, a video and a photo, or videos without photos: refused now
                videos.patient_videos(exp, found)
        except InputError as e:
            problems.append(f"[data] patients: {e}")
    if exp.donors and not os.path.exists(exp.donors):
        problems.append(f"[data] donors: no such file or folder {exp.donors}")
    if not stages.needs_codc(exp):
        return found, problems
    for photos in found.values():
        if first_photo(photos, "rest") is None:  # the patient's own folder, where the photo is missing
            folder = os.path.join(exp.patients, os.path.relpath(next(iter(photos.values())), exp.patients).split(os.sep)[0])
            problems.append(f"[data] patients: {folder} has no rest photo: the CODC workflow moves each organ as far "
                            f"as it moved from rest (add {os.path.join(folder, 'rest.png')} or drop partial_codc)")
    donors = stages.donor_paths(exp) if os.path.exists(exp.donors) else []
    if not donors:
        problems.append("[data] donors: CODC (partial_codc) needs a donor photo (a healthy, consenting "
                        "non-patient face)")
    for path in donors:
        try:
            face_landmarks(read_image(path), what=f"donor {os.path.basename(path)}")
        except InputError as e:
            problems.append(f"[data] donors: {e}")
    return found, problems


# --- what the experiment writes --------------------------------------------------------------------

def path_problems(exp, state):
    """No input lies where the experiment writes (or holds it), no patient or donor photo shares the
    experiment folder, and every output path is new or the experiment's own."""
    problems = []
    planned = outputs(exp)
    for key in ("patients", "donors"):
        path = getattr(exp, key)
        where = path and overlap(exp.root, path)
        if where:
            relation = {"same": "is", "inside": "lies inside", "holds": "holds"}[where]
            problems.append(f"the experiment folder {exp.root} {relation} [data] {key} {path}: keep the "
                            f"experiment's outputs and the photos apart (choose another experiment folder, or move "
                            f"the photos out)")
    links = {stages.link_path(exp, folder, getattr(exp, key)): getattr(exp, key)
             for folder, key in (("checkpoints", "checkpoint"), ("controlnet", "controlnet")) if getattr(exp, key)}
    # a link's place that already is its file (the user keeps the model there, or our link to it) stays
    skip = {link for link, source in links.items() if overlap(link, source) == "same"}
    nets = {os.path.basename(stages.net_path(exp, name)) for name in exp.nets()}
    if exp.controlnet and os.path.basename(exp.controlnet) in nets:
        problems.append(f"[models] controlnet {exp.controlnet}: its file name is that of a net this experiment "
                        f"trains (in {exp.path('models', 'controlnet')}): rename your file, e.g. control_sd15_canny"
                        f"{os.path.splitext(exp.controlnet)[1]}")
        skip.add(stages.link_path(exp, "controlnet", exp.controlnet))
    for key in ("checkpoint", "controlnet", "arcface", "lpips_weights"):
        path = getattr(exp, key)
        clash = path and next((o for o in planned if o not in skip and overlap(o, path)), None)
        if clash:
            problems.append(f"[models] {key} {path} lies where the experiment writes {planned[clash]} ({clash}): "
                            f"move the file out of there")
            skip.add(clash)
    for path, what in planned.items():
        if path not in skip and os.path.lexists(path) and not state.owns(path):
            problems.append(f"{path} exists and was not written by this experiment, which writes {what} there: "
                            f"move it away, or choose another experiment folder")
    return problems
