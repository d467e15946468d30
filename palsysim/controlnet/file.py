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

    palsysim.format_kind "controlnet" (a whole ControlNet) or "lora" (low-rank factors, below)

A LoRA file (training --lora-format lora|both) holds, instead of `control_model.*` weights, the
low-rank factors of a ControlNet's linear and convolution weights relative to the BASE ControlNet
it was trained from (e.g. control_sd15_canny, not the UNet: this is not ComfyUI's Control-LoRA):

    lora.<ControlNet key>.down   [rank, fan_in]    e.g. lora.control_model.input_blocks.1.1.proj_in.weight.down
    lora.<ControlNet key>.up     [out, rank]
    lora.<ControlNet key>.alpha  scalar; the update is (alpha / rank) * up @ down, reshaped to the weight
    palsysim.format_kind "lora", palsysim.lora_rank, palsysim.base_controlnet (the base's file NAME),
    palsysim.base_fingerprint (hash of the base's input_hint_block.0.weight as fp16: a different base is refused)

`merge_lora` is the one merge: training's merged file and the loader's base + LoRA both come from it.

No value may look like a path (a `/` or `\\` in it): metadata travels with the file, and a path
could name a patient or a folder of patients.
"""
import hashlib
import json
import os
import pickle

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..base.errors import InputError
from ..base.files import write_atomically
from .keys import CONTROL_PREFIX, RECOGNISED_BY, SD15_CONTEXT_DIM
from .schedule import SCHEDULE_NAME, check_window

FORMAT_VERSION = "1"
PREFIX = "palsysim."
LORA_PREFIX = "lora."
KIND_CONTROLNET, KIND_LORA = "controlnet", "lora"
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
    metadata = _metadata(t_lo, t_hi, mode, base_model, KIND_CONTROLNET, extra)
    write_atomically(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def _metadata(t_lo, t_hi, mode, base_model, kind, extra):
    meta = {"format": FORMAT_VERSION, "t_lo": str(t_lo), "t_hi": str(t_hi), "schedule": SCHEDULE_NAME,
            "mode": mode, "base_model": base_model, "format_kind": kind}
    for k, v in (extra or {}).items():
        if k in meta:
            raise ValueError(f"extra key {k!r} would overwrite the window metadata; rename it")
        meta[k] = v
    return {PREFIX + k: _meta_value(k, v) for k, v in meta.items()}


def lora_keys(weight_key):
    """(down, up, alpha) file keys of the factors of ControlNet weight `weight_key` (control_model.* added)."""
    key = weight_key if weight_key.startswith(CONTROL_PREFIX) else CONTROL_PREFIX + weight_key
    return tuple(f"{LORA_PREFIX}{key}.{part}" for part in ("down", "up", "alpha"))


def merge_lora(base, lora):
    """The ControlNet `base` with the LoRA `lora` merged in: {control_model.<key>: tensor}, floats as float32.

    base: {name: tensor}, `control_model.<ldm key>` or bare ldm keys (a cldm.ControlNet state_dict).
    lora: {lora.<control_model key>.down / .up / .alpha: tensor} (see lora_keys; alpha optional, default
    rank). Each factored weight becomes weight + (alpha / rank) * (up @ down) reshaped to it, in float32;
    every other tensor is copied (as float32). Raises ValueError when the factors do not fit the base.
    """
    out = {}
    for k, v in base.items():
        key = k if k.startswith(CONTROL_PREFIX) else CONTROL_PREFIX + k
        out[key] = v.detach().float() if v.is_floating_point() else v.detach()
    targets = sorted(k[len(LORA_PREFIX):-len(".down")] for k in lora if k.startswith(LORA_PREFIX) and k.endswith(".down"))
    if not targets:
        raise ValueError("holds no LoRA factors (no lora.*.down tensors)")
    missing = [t for t in targets if t not in out]
    if missing:
        raise ValueError(f"{len(missing)} of its {len(targets)} factored weights are not in the base ControlNet "
                         f"(first: {missing[0]}): the base is not the ControlNet this LoRA was trained from")
    for target in targets:
        down_key, up_key, alpha_key = lora_keys(target)
        if up_key not in lora:
            raise ValueError(f"{up_key} is missing: the LoRA file is incomplete")
        down, up, weight = lora[down_key].float(), lora[up_key].float(), out[target]
        if up.shape[1] != down.shape[0] or up.shape[0] != weight.shape[0] or down.shape[1] != weight[0].numel():
            raise ValueError(f"{target}: LoRA factors {tuple(up.shape)} x {tuple(down.shape)} do not fit the base's "
                             f"weight {tuple(weight.shape)}: the base is not the ControlNet this LoRA was trained from")
        delta = up @ down
        rank = down.shape[0]
        alpha = float(lora[alpha_key]) if alpha_key in lora else float(rank)
        if alpha != rank:
            delta = delta * (alpha / rank)
        out[target] = weight + delta.view_as(weight).to(weight.dtype)  # as training's parametrization computes it
    return out


FINGERPRINT_KEY = "input_hint_block.0.weight"  # the first layer of the hint encoder: differs between canny, depth, ...


def base_fingerprint(base):
    """A short hash telling ControlNets apart, the same for fp32 and fp16 copies of one net (or None)."""
    weight = base.get(CONTROL_PREFIX + FINGERPRINT_KEY, base.get(FINGERPRINT_KEY))
    if weight is None:
        return None
    return hashlib.sha256(weight.detach().cpu().float().half().numpy().tobytes()).hexdigest()[:16]


def check_lora_base(meta, base, lora_name, base_name):
    """InputError when `base` is not the ControlNet the LoRA file (metadata `meta`) was trained from."""
    expected = meta.get("base_fingerprint")
    if expected and base_fingerprint(base) != expected:
        raise InputError(f"{lora_name}: was trained from the base ControlNet {meta.get('base_controlnet')!r}, and "
                         f"{base_name} holds other weights (another ControlNet, not a renamed copy): choose that base "
                         f"as base_control_net_name")


def save_controlnet_lora(path, lora, *, t_lo, t_hi, mode, base_model, base_controlnet, rank, base=None, extra=None):
    """Write LoRA factors ({lora.<key>.down/.up/.alpha: tensor}) and their window to `path`, atomically.

    base_controlnet: the file NAME of the ControlNet the factors are relative to (a path is refused);
    the loader needs that file to merge them. base: the base's weights, to record base_fingerprint
    (the loader then refuses a different ControlNet under that name). Other arguments as save_controlnet.
    """
    check_window(t_lo, t_hi, what=f"save_controlnet_lora({os.path.basename(path)})")
    if not str(path).endswith(".safetensors"):
        raise ValueError(f"{path}: a LoRA file is written as .safetensors; change the file name")
    if not lora or not all(k.startswith(LORA_PREFIX) and isinstance(v, torch.Tensor) for k, v in lora.items()):
        raise ValueError("lora must map lora.<ControlNet key>.down/.up/.alpha names to tensors")
    extra = {"base_controlnet": base_controlnet, "lora_rank": str(rank), **(extra or {})}
    fingerprint = base_fingerprint(base) if base is not None else None
    if fingerprint:
        extra["base_fingerprint"] = fingerprint
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in lora.items()}
    metadata = _metadata(t_lo, t_hi, mode, base_model, KIND_LORA, extra)
    write_atomically(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def is_lora(meta):
    """Whether read_window's metadata is that of a LoRA file."""
    return bool(meta) and meta.get("format_kind") == KIND_LORA


def load_lora_factors(path):
    """{lora.*: tensor} of a LoRA file; InputError naming the file when it is unreadable or holds none."""
    sd = _load_any(path)
    lora = {k: v for k, v in sd.items() if k.startswith(LORA_PREFIX)}
    if not lora:
        raise InputError(f"{os.path.basename(path)}: is marked as a LoRA file but holds no lora.* factors; copy it again")
    return lora


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
    if "controlnet_cond_embedding.conv_in.weight" not in control:  # ldm keys, which ComfyUI does not convert
        lacking = [k for k in RECOGNISED_BY if k not in _bare_keys(control)]
        if lacking:
            raise InputError(f"{name}: is an incomplete ControlNet: it has {len(control)} ControlNet weights but "
                             f"not {', '.join(lacking)}, which every SD1.5 ControlNet has; the file was cut or "
                             f"filtered: copy the original again")
    sdxl = any(part in ("label_emb", "add_embedding") for k in control for part in k.split("."))
    width = _context_dim(control)
    if sdxl or width not in (None, SD15_CONTEXT_DIM):
        family = "SDXL" if sdxl else _BASE_FAMILIES.get(width, f"a base model of cross-attention width {width}")
        raise InputError(f"{name}: is a ControlNet for {family}, not for SD1.5 (cross-attention width {width}, "
                         f"SD1.5 needs {SD15_CONTEXT_DIM}); use an SD1.5 ControlNet such as control_sd15_canny")
    return control


def _bare_keys(weights):
    return {k[len(CONTROL_PREFIX):] if k.startswith(CONTROL_PREFIX) else k for k in weights}


def check_complete(name, weights, expected):
    """InputError naming file `name` when ldm ControlNet `weights` lack any of the `expected` keys.

    weights: {control_model.<key> or <key>: tensor}; expected: the keys of the state_dict of the
    cldm.ControlNet built for them (ComfyUI loads a net with missing weights, left at random, and
    only logs it).
    """
    bare = _bare_keys(weights)
    missing = sorted(k for k in expected if k not in bare)
    if missing:
        raise InputError(f"{name}: is an incomplete ControlNet: {len(missing)} of its {len(expected)} weights are "
                         f"missing (first: {missing[0]}); the file was cut or filtered: copy the original again")


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
