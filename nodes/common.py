"""Plumbing every PalsySim node shares: ComfyUI IMAGE tensors <-> the core's uint8 arrays, model folders,
the input check every node's validate_inputs makes."""
import math
import os

import folder_paths
import numpy as np
import torch
from comfy_api.latest import io

from ..palsysim.base.errors import InputError
from ..palsysim.base.model_files import missing_hint

Landmarks = io.Custom("PALSY_LANDMARKS")


def output(kind, name, **kw):
    """An output socket named `name` in the UI too: V3 lists an output under its display_name, else its type."""
    return kind.Output(name, display_name=name, **kw)

# Model folders the pack adds beside ComfyUI's own (models/controlnet exists already). ComfyUI's own
# models/<name>/ is searched even when an extra_model_paths.yaml (or the runner's MODELS_DIR) declares
# the name first: after the declared folders, as ComfyUI orders its own kinds' extra folders.
# Another pack may share a folder (InstantID and ReActor use insightface/): its file types are kept and
# ours added; an empty set, which lists every file, is another pack's choice and stays.
for _name, _exts in (("mediapipe", {".task"}), ("insightface", {".onnx"})):
    _known = _name in folder_paths.folder_names_and_paths
    folder_paths.add_model_folder_path(_name, os.path.join(folder_paths.models_dir, _name))
    _paths, _theirs = folder_paths.folder_names_and_paths[_name]
    if _theirs or not _known:
        folder_paths.folder_names_and_paths[_name] = (_paths, set(_theirs) | _exts)


class Node(io.ComfyNode):
    """Every pack node: ComfyUI's V3 node whose validate_inputs is check_inputs over its own schema."""

    @classmethod
    def own_checks(cls, inputs):
        """{input name: check(value) -> True, None or a message}: check_inputs' `own` for this node."""
        return {}

    @classmethod
    def validate_inputs(cls, **inputs):
        return check_inputs(cls, inputs, **cls.own_checks(inputs))


def check_inputs(cls, inputs, **own):
    """True, or one message naming every input value of `inputs` that node `cls` cannot use.

    Node.validate_inputs(cls, **inputs) returns this. Taking **inputs makes ComfyUI
    call it even when an input is missing (ComfyUI's own "Required input is missing" then stands
    alone), and turns off ComfyUI's min/max checks, which are redone here from the node's schema
    (ComfyUI never checks a V3 combo's value at all). Added: a FLOAT must be finite (NaN passes
    every comparison), a combo value must be one of its options, a socket such as IMAGE takes a
    link, not a typed value. Linked values arrive as None and are checked by the node that makes
    them. A value ComfyUI could not convert (t_lo "abc") has its message from ComfyUI already.
    own: {input name: check(value) -> True, None or a message}: the node's own check of a value
    that passed these; for a combo it replaces the options check (a model file name: its message
    names the folder the file belongs in).
    """
    problems = []
    for inp in cls.define_schema().inputs:  # GET_SCHEMA would set attributes on the locked class ComfyUI passes
        value = inputs.get(inp.id)
        if value is not None:
            problem = _input_problem(inp, value, own.get(inp.id))
            if problem not in (None, True):
                problems.append(problem)
    return "; ".join(problems) or True


def _input_problem(inp, value, own):
    name, kind = inp.id, inp.get_io_type()
    if not isinstance(inp, io.WidgetInput):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        source = " such as Load Image" if kind == "IMAGE" else ""
        return (f"{name} takes a link from a node's {kind} output{source}, not the value {shown}: "
                f"connect one to it")
    if isinstance(inp, io.Combo.Input):
        if not isinstance(value, str):
            return f"{name}={value!r} is not one of its choices: pick a name from its list"
        if own is None and value not in inp.options:
            shown = ", ".join(map(str, inp.options[:12])) + (", ..." if len(inp.options) > 12 else "")
            return f"{name}={value!r} is not one of its choices ({shown}): pick one of them"
    if isinstance(inp, (io.Float.Input, io.Int.Input)) and isinstance(value, (int, float)):
        lo = -math.inf if inp.min is None else inp.min
        hi = math.inf if inp.max is None else inp.max
        if not math.isfinite(value):
            return f"{name} is {value}, not a number: give a number from {lo} to {hi}"
        if not lo <= value <= hi:
            return f"{name}={value} is out of range: give a number from {lo} to {hi}"
    return own(value) if own is not None else None


def to_arrays(images, what="image"):
    """IMAGE [B, H, W, C] float 0..1 -> list of B (H, W, C) float32 arrays; an empty batch is refused."""
    if images is None or images.shape[0] == 0:
        raise InputError(f"{what} batch is empty: connect a node that outputs at least one image")
    return [im.detach().cpu().float().numpy() for im in images]


def to_image(arrays):
    """list of (H, W, 3) uint8 arrays of one size -> IMAGE [B, H, W, 3] float 0..1."""
    return torch.from_numpy(np.stack(arrays).astype(np.float32) / 255.0)


def _one(values):
    """A list node's value: ComfyUI hands each input as a list (to validate_inputs, a tuple), one item for a widget."""
    return values[0] if isinstance(values, (list, tuple)) and len(values) == 1 else values


def model_file(folder, name, input_name):
    """Full path of a file chosen from a models/<folder> list (the node input input_name), or a message
    that names file and folder."""
    if not isinstance(name, str) or not name:  # a null in a prompt reaches the node as None, past validation
        raise InputError(f"{input_name} is {name!r}, not a file name: pick a file of ComfyUI/models/{folder}/ "
                         f"from its list")
    path = folder_paths.get_full_path(folder, name)
    if path is None or not os.path.isfile(path):
        raise InputError(f"model file {name!r} not found: put it in ComfyUI/models/{folder}/{missing_hint(name)}")
    return path
