"""Every model file the pack, its workflows and its training can use: where it goes, where it comes from.

Digests are the SHA-256 that the files' public pages list (Hugging Face shows it per LFS file); a
file whose digest could not be confirmed there has sha256=None and is reported "unverified"; a
download of one is installed only if it has the size and the format its kind has (min_size, check).
"""
import os
import zipfile
from dataclasses import dataclass

from .files import sha256_of

TORCH_HUB = "torch-hub"  # torch's own cache (torch.hub.get_dir()/checkpoints), not a ComfyUI folder


@dataclass(frozen=True)
class Model:
    name: str          # file name inside folder, may hold a sub-folder (buffalo_l/w600k_r50.onnx)
    folder: str        # ComfyUI models/<folder>, or TORCH_HUB
    url: str
    sha256: str = None  # None: no public digest confirmed
    size: int = None    # bytes, where the public page gives them exactly
    licence: str = ""
    used_by: str = ""
    min_size: int = None  # bytes; with check(path) -> None or why not, what an unverified file must pass
    check: object = None

    @property
    def key(self):
        """The short name `models --fetch` takes: the file name without folders."""
        return os.path.basename(self.name)


TASK_MEMBERS = ("face_detector.tflite", "face_landmarks_detector.tflite")  # what FaceLandmarker loads


def task_bundle_problem(path):
    """None if path is a MediaPipe face_landmarker.task: a zip holding the face detector and the landmark
    model, each a TFLite flatbuffer ("TFL3" at byte 4); else what it is instead."""
    try:
        with zipfile.ZipFile(path) as bundle:
            missing = [m for m in TASK_MEMBERS if m not in bundle.namelist()]
            if missing:
                return f"it is a zip without {', '.join(missing)}, not a MediaPipe face landmarker bundle"
            for member in TASK_MEMBERS:
                with bundle.open(member) as f:
                    if f.read(8)[4:] != b"TFL3":
                        return f"its {member} is not a TFLite model"
    except Exception as e:  # zipfile raises many types for a damaged archive (BadZipFile, EOFError, zlib.error...)
        return f"it is not a zip archive, so not a MediaPipe .task bundle ({type(e).__name__})"
    return None


MODELS = [
    Model("v1-5-pruned-emaonly.safetensors", "checkpoints",
          "https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5/resolve/main/v1-5-pruned-emaonly.safetensors",
          "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa", None,
          "CreativeML OpenRAIL-M", "workflows, training, make demo"),
    Model("control_sd15_canny.pth", "controlnet",
          "https://huggingface.co/lllyasviel/ControlNet/resolve/main/models/control_sd15_canny.pth",
          "4de384b16bc2d7a1fb258ca0cbd941d7dd0a721ae996aff89f905299d6923f45", None,
          "OpenRAIL", "workflows (zero-shot, base of fine-tuning), training, make demo"),
    Model("buffalo_l/w600k_r50.onnx", "insightface",
          "https://huggingface.co/public-data/insightface/resolve/main/models/buffalo_l/w600k_r50.onnx",
          "4c06341c33c2ca1f86781dab0e829f88ad5b64be9fba56e56bc9ebdefc619e43", 174383860,
          "insightface pretrained models: non-commercial research use only", "ArcFace privacy gate, evaluate"),
    Model("face_landmarker.task", "mediapipe",
          "https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/face_landmarker.task",
          None, None, "Apache-2.0", "landmarks with mediapipe >= 0.10.30 (Tasks API)",
          # the public float16 bundle is about 3.6 MB, one built offline from mediapipe 0.10.21's models 2.7 MB
          min_size=1_000_000, check=task_bundle_problem),
    Model("alexnet-owt-7be5be79.pth", TORCH_HUB,
          "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
          "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02", None,
          "BSD-3-Clause (torchvision)", "LPIPS in evaluate"),
]


def by_key(key):
    """The catalog entry for a short name (or full name); KeyError names the choices."""
    for m in MODELS:
        if key in (m.key, m.name):
            return m
    raise KeyError(f"unknown model {key!r}: choose from {', '.join(m.key for m in MODELS)} or all")


def fetch_hint(*keys):
    """The command line that downloads these catalog files, for "missing model" messages."""
    return f"python -m palsysim models --fetch {' '.join(by_key(k).key for k in keys)}"


def missing_hint(name):
    """ " (python -m palsysim models --fetch NAME downloads it)" for a catalog file, " (training writes it:
    python -m training ...)" for the fine-tuned ControlNet the PF and CODC templates load, else "": the
    tail every "model file not found" message gets."""
    from .workflows import TRAIN_COMMAND, TRAINED_CONTROLNET
    if os.path.basename(name) == TRAINED_CONTROLNET:
        return (f" (the fine-tuned ControlNet: make it with {TRAIN_COMMAND}, DATA holding your "
                f"<patient>/<expression>/*.png photos; or pick another file there)")
    try:
        return f" ({fetch_hint(os.path.basename(name))} downloads it)"
    except KeyError:
        return ""


def model_dirs():
    """Where the embedded ComfyUI looks for models: $MODELS_DIR (if set), then its own models/."""
    from .paths import comfyui_dir
    dirs = [os.environ["MODELS_DIR"]] if os.environ.get("MODELS_DIR") else []
    try:
        dirs.append(os.path.join(comfyui_dir(), "models"))
    except ValueError:
        pass
    return dirs


def extra_folders():
    """{kind: [folder]} that the ComfyUI's extra_model_paths.yaml (beside its main.py) adds, read as ComfyUI
    reads it (utils/extra_config.py): base_path relative to the file, one or more folders per kind, a
    section's is_default folders searched before ComfyUI's own. {} without the file or a ComfyUI."""
    from .paths import comfyui_dir
    try:
        path = os.path.join(comfyui_dir(), "extra_model_paths.yaml")
    except ValueError:
        return {}
    if not os.path.isfile(path):
        return {}
    import yaml
    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    here, out = os.path.dirname(os.path.abspath(path)), {}
    for section in config.values():
        if not isinstance(section, dict):
            continue
        base = section.get("base_path")
        base = base and os.path.join(here, os.path.expandvars(os.path.expanduser(str(base))))
        for kind, folders in section.items():
            if kind in ("base_path", "is_default") or not isinstance(folders, str):
                continue
            found = [os.path.normpath(os.path.join(base or here, f)) for f in folders.split("\n") if f]
            out[kind] = found + out.get(kind, []) if section.get("is_default") else out.get(kind, []) + found
    return out


def model_folders(kind, roots=None):
    """The folders a model of `kind` (checkpoints, controlnet, ...) is looked for in, in order: each of
    roots/<kind> (default model_dirs()), then, without roots given, extra_model_paths.yaml's."""
    folders = [os.path.join(d, kind) for d in (model_dirs() if roots is None else roots)]
    return folders + extra_folders().get(kind, []) if roots is None else folders


def find_model(folder, name):
    return next((os.path.join(f, name) for f in model_folders(folder) if os.path.isfile(os.path.join(f, name))), None)


def torch_hub_dir():
    import torch
    return os.path.join(torch.hub.get_dir(), "checkpoints")


def target(model, models_dir):
    """The path a model file belongs at: models_dir/<folder>/<name>, or torch's hub cache."""
    if model.folder == TORCH_HUB:
        return os.path.join(torch_hub_dir(), model.name)
    return os.path.join(models_dir, model.folder, model.name)


def file_problem(model, path):
    """None if the file at path can be installed as model, else why not: its digest where one is pinned,
    else its size and format."""
    if model.sha256 is not None:
        digest = sha256_of(path)
        return None if digest == model.sha256 else f"its SHA-256 is {digest}, not the pinned {model.sha256}"
    size = os.path.getsize(path)
    if model.min_size and size < model.min_size:
        return f"it is {size:,} bytes, less than the {model.min_size:,} a {model.key} has at the least"
    return model.check(path) if model.check else None


def digest_state(path, digest):
    """What a user's model file is, by its name and SHA-256: "verified" (the published file), "MISMATCH"
    (named like a published file, other bytes: a wrong or damaged download), or "unverified" (no public
    digest, or a file this catalog does not list, such as a trained net) -> (state, why)."""
    model = next((m for m in MODELS if m.key == os.path.basename(path)), None)
    if model is None:
        return "unverified", "not a published file PalsySim lists"
    if model.sha256 is None:
        return "unverified", "no public digest"
    if digest == model.sha256:
        return "verified", f"the published {model.key}"
    return "MISMATCH", f"named like the published {model.key}, whose SHA-256 is {model.sha256[:16]}..."


def status(model, dirs=None, check=True):
    """One row of `models`: where it was found (model_folders of dirs), its size and digest verdict."""
    paths = ([target(model, None)] if model.folder == TORCH_HUB
             else [os.path.join(f, model.name) for f in model_folders(model.folder, dirs)])
    found = next((p for p in paths if os.path.isfile(p)), None)
    row = {"name": model.name, "folder": model.folder, "found": found, "size": None, "digest": "missing",
           "licence": model.licence, "url": model.url, "used_by": model.used_by}
    if found:
        row["size"] = os.path.getsize(found)
        if not check:
            row["digest"] = "not checked"
        elif model.sha256 is None:
            problem = file_problem(model, found)
            row["digest"] = (f"unverified (no public digest; this file's is {sha256_of(found)})"
                             + (f"; NOT USABLE: {problem}: replace this file" if problem else ""))
        else:
            row["digest"] = "ok" if sha256_of(found) == model.sha256 else "MISMATCH: replace this file"
    return row
