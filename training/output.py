"""The trained ControlNet's file(s): merged (an ordinary ComfyUI ControlNet), a LoRA file, or both.

--lora-format (lora mode only): merged writes OUT (default); lora writes the LoRA factors to OUT;
both writes OUT merged and OUT_lora.safetensors beside it. Every file knows its window and mode.
"""
import os
import tempfile

from palsysim.controlnet.file import save_controlnet, save_controlnet_lora

from .modes import base_state_dict, lora_state_dict, plain_state_dict

LORA_FORMATS = ("merged", "lora", "both")


def lora_path(out):
    """Where --lora-format both writes the LoRA file: OUT_lora.safetensors."""
    return os.path.splitext(out)[0] + "_lora.safetensors"


def output_paths(out, mode, lora_format="merged"):
    """{kind: path} of the files a run writes: kind "merged" and/or "lora"."""
    if lora_format not in LORA_FORMATS:
        raise ValueError(f"--lora-format {lora_format!r}: use one of {', '.join(LORA_FORMATS)}")
    if mode != "lora" or lora_format == "merged":
        if mode != "lora" and lora_format != "merged":
            raise ValueError(f"--lora-format {lora_format} needs --mode lora (mode {mode} trains no LoRA factors)")
        return {"merged": out}
    return {"lora": out} if lora_format == "lora" else {"merged": out, "lora": lora_path(out)}


def write_output(cfg, control_model, t_lo, t_hi, steps):
    """Write the trained ControlNet as cfg.lora_format says; returns {kind: path}."""
    paths = output_paths(cfg.out, cfg.mode, getattr(cfg, "lora_format", "merged"))
    window = dict(t_lo=t_lo, t_hi=t_hi, mode=cfg.mode, base_model=os.path.basename(cfg.checkpoint))
    extra = {"steps": str(steps), "condition": cfg.condition, "resolution": str(cfg.resolution),
             "lora_rank": str(cfg.lora_rank) if cfg.mode == "lora" else "none"}
    if "merged" in paths:
        save_controlnet(paths["merged"], plain_state_dict(control_model), **window, extra=extra)
    if "lora" in paths:
        save_controlnet_lora(paths["lora"], lora_state_dict(control_model), **window,
                             base_controlnet=os.path.basename(cfg.controlnet), rank=cfg.lora_rank,
                             base=base_state_dict(control_model), extra=extra)
    return paths


def check_outputs(cfg, work):
    """Refuse, before anything is read or loaded, outputs that would replace an input or a trained file,
    or that cannot be written: the --out file(s) and the run's folder `work`."""
    outs = list(output_paths(cfg.out, cfg.mode, cfg.lora_format).values())
    data = os.path.realpath(cfg.data)
    for out in outs:
        for flag, path in (("--checkpoint", cfg.checkpoint), ("--controlnet", cfg.controlnet)):
            if os.path.realpath(out) == os.path.realpath(path) or _same_file(out, path):
                raise ValueError(f"--out {out} is {flag} {path} (or a link to it): an output never replaces an "
                                 "input; choose another --out")
        if os.path.isdir(out):
            raise ValueError(f"--out {out} is a folder; give the file to write, e.g. {os.path.join(out, 'palsy.safetensors')}")
        if os.path.lexists(out) and not cfg.overwrite:
            raise FileExistsError(f"{out} already exists: add --overwrite to replace it, or choose another --out")
    for path in outs + [work]:
        if os.path.commonpath([data, os.path.realpath(path)]) == data:
            raise ValueError(f"--out {cfg.out} is inside the dataset folder {cfg.data}; its files would be read as "
                             "patient photos next time: choose an --out outside it")
    for folder in {os.path.dirname(os.path.abspath(out)) for out in outs} | {work}:
        _check_writable(folder)


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)  # a hard link
    except OSError:
        return False


def _check_writable(folder):
    """A folder that exists and takes a new file, or whose nearest existing parent does (it is made later)."""
    probe = os.path.abspath(folder)
    while not os.path.lexists(probe):
        probe = os.path.dirname(probe)
    try:
        if not os.path.isdir(probe):
            raise NotADirectoryError(f"{probe} is a file, not a folder")
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise ValueError(f"cannot write {folder} ({e.strerror or e}): choose another --out in a folder you can "
                         "write to") from None
