"""ControlNet files that carry their training window, and weights-only reading of any SD1.5 ControlNet.

The format is an ordinary ComfyUI-loadable ControlNet: safetensors with the `control_model.*` ldm
keys of the original `control_sd15_canny`, plus strings in the safetensors `__metadata__`:

    palsysim.format      "1"
    palsysim.t_lo        "500"     first timestep of the training window (inclusive)
    palsysim.t_hi        "700"     last timestep of the training window (inclusive)
    palsysim.schedule    "sd15-scaled-linear-1000"
    palsysim.mode        "partial" the training mode (partial, full, freeze, lora, ...)
    palsysim.base_model  "v1-5-pruned-emaonly.safetensors"  a file NAME, never a path
    palsysim.<key>       anything else training adds (extra=); non-strings are JSON-encoded

No value may look like a path (a `/` or `\\` in it): metadata travels with the file, and a path
could name a patient or a folder of patients.
"""
import json
import os
import pickle
import tempfile

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .images import InputError
from .schedule import SCHEDULE_NAME, check_window

FORMAT_VERSION = "1"
PREFIX = "palsysim."
CONTROL_PREFIX = "control_model."
SD15_CONTEXT_DIM = 768
_BASE_FAMILIES = {768: "SD1.x", 1024: "SD2.x", 2048: "SDXL"}


def _is_path_like(value):
    return "/" in value or "\\" in value or value.startswith("~") or (len(value) > 1 and value[1] == ":")


def _meta_value(key, value):
    """A metadata value as a string; refuses paths."""
    text = value if isinstance(value, str) else json.dumps(value)
    if _is_path_like(text):
        raise ValueError(f"metadata {key!r}={text!r} looks like a path: file metadata must not carry paths "
                         f"(they can name patients); pass a bare file name or drop the value")
    return text


def save_controlnet(path, state_dict, *, t_lo, t_hi, mode, base_model, extra=None):
    """Write ControlNet weights and their training window to `path` (.safetensors), atomically.

    state_dict: {name: tensor}, either `control_model.<ldm key>` or the bare keys of a
    comfy.cldm.cldm.ControlNet module's state_dict (prefixed on writing). t_lo, t_hi: the inclusive
    training window (0 <= t_lo <= t_hi <= 999). mode: training mode name. base_model: the base
    checkpoint's file name (a path is refused). extra: {key: str | JSON-able} written as
    `palsysim.<key>`. The file appears complete or not at all (temp file, fsync, rename).
    """
    check_window(t_lo, t_hi, what=f"save_controlnet({os.path.basename(path)})")
    if not str(path).endswith(".safetensors"):
        raise ValueError(f"{path}: a window ControlNet is written as .safetensors; change the file name")
    tensors = {}
    for k, v in state_dict.items():
        if not isinstance(v, torch.Tensor):
            raise ValueError(f"state_dict[{k!r}] is a {type(v).__name__}, not a tensor")
        key = k if k.startswith(CONTROL_PREFIX) else CONTROL_PREFIX + k
        tensors[key] = v.detach().to("cpu").contiguous()
    if CONTROL_PREFIX + "zero_convs.0.0.weight" not in tensors:
        raise ValueError("state_dict has no ControlNet weights (no zero_convs.0.0.weight): pass the state_dict "
                         "of the ControlNet module (ComfyUI's cldm.ControlNet), not of the UNet or a diffusers model")
    meta = {"format": FORMAT_VERSION, "t_lo": str(t_lo), "t_hi": str(t_hi), "schedule": SCHEDULE_NAME,
            "mode": mode, "base_model": base_model}
    for k, v in (extra or {}).items():
        if k in meta:
            raise ValueError(f"extra key {k!r} would overwrite the window metadata; rename it")
        meta[k] = v
    metadata = {PREFIX + k: _meta_value(k, v) for k, v in meta.items()}

    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)  # the rename itself survives a power cut only once the folder is synced
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_window(path):
    """The window metadata of a ControlNet file, or None when it has none (or is not safetensors).

    Returns {"t_lo": int, "t_hi": int, "mode": str, "base_model": str, "schedule": str,
    "format": str, plus any extra keys as stored (strings)}. Reads only the header. Raises
    InputError for a corrupt header or an incoherent window.
    """
    name = os.path.basename(path)
    if not str(path).lower().endswith((".safetensors", ".sft")):
        return None
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise InputError(f"{name}: not a readable safetensors file ({e}); it is corrupt or truncated: copy it again") from e
    if PREFIX + "t_lo" not in metadata or PREFIX + "t_hi" not in metadata:
        return None
    out = {k[len(PREFIX):]: v for k, v in metadata.items() if k.startswith(PREFIX)}
    try:
        out["t_lo"], out["t_hi"] = int(out["t_lo"]), int(out["t_hi"])
        check_window(out["t_lo"], out["t_hi"], what=name)
    except ValueError as e:
        raise InputError(f"{name}: its window metadata is damaged ({e}); set t_lo and t_hi by hand") from e
    if out.get("schedule", SCHEDULE_NAME) != SCHEDULE_NAME:
        raise InputError(f"{name}: trained on schedule {out['schedule']!r}, not SD1.5's {SCHEDULE_NAME}: "
                         f"its window cannot be mapped to SD1.5 sampling")
    return out


def _load_any(path):
    """{name: tensor} of a safetensors or torch file, never running code from a pickle."""
    name = os.path.basename(path)
    if str(path).lower().endswith((".safetensors", ".sft")):
        try:
            with safe_open(path, framework="pt") as f:
                return {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError) as e:
            raise InputError(f"{name}: not a readable safetensors file ({e}); it is corrupt or truncated "
                             f"(compare its size with the original and copy it again)") from e
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" not in str(e):
            raise InputError(f"{name}: cannot be read as a PyTorch checkpoint ({e}); it is truncated or corrupt: "
                             f"copy it again") from e
        why = next((line.strip() for line in str(e).splitlines() if "GLOBAL" in line), "it holds objects, not weights")
        raise InputError(f"{name}: refused: loading it could run code hidden in its pickle ({why}). Use a "
                         f"safetensors copy of this ControlNet, or re-save only its state_dict from a source "
                         f"you trust") from e
    except Exception as e:  # torch.load raises many types for a cut or foreign file (IndexError, KeyError, ...)
        why = (str(e).splitlines() or [type(e).__name__])[0]
        raise InputError(f"{name}: cannot be read as a PyTorch checkpoint ({why}); "
                         f"it is truncated or corrupt: copy it again") from e
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise InputError(f"{name}: holds no state dict of tensors; it is not a model checkpoint")
    return data


def _context_dim(sd):
    """Cross-attention width of a ControlNet state dict (ldm or diffusers keys), or None if it has none."""
    for k, v in sd.items():
        if k.endswith("attn2.to_k.weight") and v.ndim == 2:
            return v.shape[1]
    return None


def load_controlnet_weights(path):
    """The ControlNet weights of an SD1.5 ControlNet file, weights-only, ready for ComfyUI's loader.

    Accepts safetensors or .pth/.ckpt holding: `control_model.*` ldm keys (a full ControlLDM with
    UNet, VAE and CLIP too: only the ControlNet keys are kept), bare ldm ControlNet keys, or a
    diffusers ControlNet (left for comfy.controlnet.load_controlnet_state_dict to convert).
    Returns {name: tensor}. Raises InputError naming the file: no ControlNet inside, a ControlNet
    for another base model (SDXL, SD2), a code-running pickle, a truncated file.
    """
    name = os.path.basename(path)
    sd = _load_any(path)
    control = {k: v for k, v in sd.items() if k.startswith(CONTROL_PREFIX)}
    if not control:
        diffusers = "controlnet_cond_embedding.conv_in.weight" in sd
        if diffusers or "zero_convs.0.0.weight" in sd:
            control = sd
        elif any(k.startswith(("model.diffusion_model.", "diffusion_model.")) for k in sd):
            raise InputError(f"{name}: is a Stable Diffusion checkpoint with no ControlNet inside (no control_model.* "
                             f"keys): it belongs in models/checkpoints; choose a ControlNet file here")
        else:
            raise InputError(f"{name}: holds no ControlNet weights (neither control_model.* ldm keys nor a diffusers "
                             f"ControlNet); choose an SD1.5 ControlNet such as control_sd15_canny")
    sdxl = any(part in ("label_emb", "add_embedding") for k in control for part in k.split("."))
    width = _context_dim(control)
    if sdxl or width not in (None, SD15_CONTEXT_DIM):
        family = "SDXL" if sdxl else _BASE_FAMILIES.get(width, f"a base model of cross-attention width {width}")
        raise InputError(f"{name}: is a ControlNet for {family}, not for SD1.5 (cross-attention width {width}, "
                         f"SD1.5 needs {SD15_CONTEXT_DIM}); use an SD1.5 ControlNet such as control_sd15_canny")
    return control


def resolve_window(path, t_lo=-1, t_hi=-1):
    """(t_lo, t_hi, metadata or None): the file's window with the given overrides; -1 means "from the file".

    Raises InputError naming the file when a value is needed but the file carries no window.
    """
    meta = read_window(path)
    if (t_lo < 0 or t_hi < 0) and meta is None:
        raise InputError(f"{os.path.basename(path)}: has no training-window metadata (palsysim.t_lo/t_hi): set t_lo "
                         f"and t_hi on the node (the paper's window is 500 and 700), or load it with ComfyUI's "
                         f"Load ControlNet Model if it needs no window")
    t_lo = meta["t_lo"] if t_lo < 0 else t_lo
    t_hi = meta["t_hi"] if t_hi < 0 else t_hi
    try:
        check_window(t_lo, t_hi, what=os.path.basename(path))
    except ValueError as e:
        raise InputError(str(e)) from e
    return t_lo, t_hi, meta
