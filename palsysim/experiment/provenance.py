"""What a report says it was made with: the date, the software, each model file with its SHA-256 and
whether it is the published file, and the settings actually used (each net's from its own train.json,
so that a step count or learning rate a default chose is the one shown)."""
import datetime
import json
import os
import re
import sys
from importlib import metadata

from ..base.errors import InputError
from ..base.paths import REPO

MODEL_KEYS = ("checkpoint", "controlnet", "arcface", "lpips_weights")


def made():
    """'2026-12-07 01:23 UTC' now."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def software():
    """'PalsySim 0.1.0, Python 3.11.9, torch ..., numpy ..., mediapipe ..., ComfyUI 0.3.75' of this run."""
    import tomllib
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        out = [f"PalsySim {tomllib.load(f)['project']['version']}", f"Python {sys.version.split()[0]}"]
    for package in ("torch", "numpy", "mediapipe"):
        try:
            out.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            out.append(f"{package} not installed")
    return ", ".join(out + [f"ComfyUI {comfyui_version()}"])


def comfyui_version():
    from ..base.paths import comfyui_dir
    try:
        with open(os.path.join(comfyui_dir(), "comfyui_version.py"), encoding="utf-8") as f:
            found = re.search(r'__version__\s*=\s*"([^"]+)"', f.read())
    except (InputError, OSError):
        return "not found"
    return found.group(1) if found else "of unknown version"


def model_rows(exp):
    """[(setting, file name, SHA-256, state)] of the model files the experiment ran on."""
    from ..base.files import sha256_of
    from ..base.model_files import digest_state
    rows = []
    for key in MODEL_KEYS:
        path = getattr(exp, key)
        if not path:
            continue
        digest = sha256_of(path)
        state, what = digest_state(path, digest)
        if state == "MISMATCH":
            state = "MISMATCH, accepted ([models] accept_mismatch = true)"
        rows.append((key, os.path.basename(path), digest, f"{state}: {what}"))
    return rows


def settings_rows(exp, found):
    """[(setting, value)] of what generation and scoring used."""
    g = exp.generate
    return [("methods", ", ".join(exp.methods) or "none"),
            ("Fig. 8 windows", ", ".join(f"{lo}..{hi}" for lo, hi in exp.windows) or "none"),
            ("patients, photos", f"{len(found)}, {sum(len(p) for p in found.values())}"),
            ("generated from", "every photo" if not g["photos"] else f"each expression's first {g['photos']} photo(s)"),
            ("identities x seeds", f"{', '.join(g['identities'])} x {', '.join(map(str, g['seeds']))}"),
            ("sampling", f"{g['steps']} steps, {g['sampler']} / {g['scheduler']}, cfg {g['cfg']:g}, "
                         f"{g['resolution']}x{g['resolution']}"),
            ("privacy gate", "bypassed in generation: every image is scored below"),
            ("identity backend", exp.identity_backend)]


def training_rows(exp):
    """[(net, mode, timesteps, steps, batch, lr, photos, latents)] from each net's train.json."""
    from .stages import work_path
    rows = []
    for name in exp.nets():
        path = os.path.join(work_path(exp, name), "train.json")
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as f:
            log = json.load(f)
        s = log["settings"]
        rows.append((name, s["mode"], f"{s['t_min']}..{s['t_max']}", str(s["steps"]), str(s["batch_size"]),
                     f"{s['lr']:g} ({s['lr_source']})", str(log["dataset"]["photos"]), str(s.get("latents", ""))))
    return rows
