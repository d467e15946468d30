"""Plumbing every PalsySim node shares: ComfyUI IMAGE tensors <-> the core's uint8 arrays, model folders."""
import os

import numpy as np
import torch

import folder_paths
from comfy_api.latest import io

from ..palsysim.images import InputError
from ..palsysim.models import missing_hint

Landmarks = io.Custom("PALSY_LANDMARKS")


def output(kind, name, **kw):
    """An output socket named `name` in the UI too: V3 lists an output under its display_name, else its type."""
    return kind.Output(name, display_name=name, **kw)

# Model folders the pack adds beside ComfyUI's own (models/controlnet exists already).
for _name, _exts in (("mediapipe", {".task"}), ("insightface", {".onnx"})):
    if _name not in folder_paths.folder_names_and_paths:
        folder_paths.add_model_folder_path(_name, os.path.join(folder_paths.models_dir, _name))
    folder_paths.folder_names_and_paths[_name] = (folder_paths.folder_names_and_paths[_name][0], _exts)


def to_arrays(images, what="image"):
    """IMAGE [B, H, W, C] float 0..1 -> list of B (H, W, C) float32 arrays; an empty batch is refused."""
    if images is None or images.shape[0] == 0:
        raise InputError(f"{what} batch is empty: connect a node that outputs at least one image")
    return [im.detach().cpu().float().numpy() for im in images]


def to_image(arrays):
    """list of (H, W, 3) uint8 arrays of one size -> IMAGE [B, H, W, 3] float 0..1."""
    return torch.from_numpy(np.stack(arrays).astype(np.float32) / 255.0)


def model_file(folder, name):
    """Full path of a file chosen from a models/<folder> list, or a message that names file and folder."""
    path = folder_paths.get_full_path(folder, name) if name else None
    if path is None or not os.path.isfile(path):
        raise InputError(f"model file {name!r} not found: put it in ComfyUI/models/{folder}/{missing_hint(name)}")
    return path
