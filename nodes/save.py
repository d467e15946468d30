"""PalsySaveAnonymized: save images with no workflow, prompt or file-name metadata.

ComfyUI's SaveImage writes the whole prompt and workflow into every PNG (text chunks "prompt" and
"workflow"), and with them the patient photo's file name from LoadImage. This node writes pixels
only, plus, if asked, one "Description" text chunk holding a method summary.
"""
import os
import re

import folder_paths
import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from comfy_api.latest import io, ui

from ..palsysim.files import write_atomically
from ..palsysim.images import InputError, to_rgb_uint8
from .common import check_inputs, to_arrays

SUMMARY_KEY = "Description"  # a registered PNG keyword, shown by ordinary image viewers
# Something a file name or path would contain; a method summary never needs one.
_PATHLIKE = re.compile(r"[/\\]|\.(png|jpe?g|webp|bmp|tiff?|heic|dcm)\b", re.IGNORECASE)


MAX_SUMMARY = 2000  # characters: a method description, not a document
# Control characters (NUL included) but not the line breaks and tabs of a multiline text.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def check_summary(text):
    """None if the summary is fit to embed, else why not."""
    text = text or ""
    if len(text) > MAX_SUMMARY:
        return f"method_summary is {len(text)} characters long: keep it to {MAX_SUMMARY} (it is written into every image)"
    if _CONTROL.search(text):
        return "method_summary holds a control character (e.g. NUL): type plain text, line breaks are fine"
    if _PATHLIKE.search(text):
        return ("method_summary looks like it holds a file name or path; it is written into every image, "
                "so keep it to the method (no patient file names)")
    return None


def check_prefix(prefix):
    """None if filename_prefix names files, else why not (empty, or a hidden '.name')."""
    name = os.path.basename((prefix or "").strip().replace("\\", "/"))
    if not name:
        return "filename_prefix is empty or ends in '/': give a file name such as palsysim/synthetic"
    if name.startswith("."):
        return f"filename_prefix {prefix!r} would write hidden files (a name starting with '.'): drop the dot"
    return None


def save_png(path, rgb, summary=""):
    """(H, W, 3) uint8 -> PNG at path, written whole (aside, then renamed), with at most the summary chunk."""
    info = None
    if summary:
        info = PngInfo()
        info.add_itxt(SUMMARY_KEY, summary)  # iTXt: UTF-8, unlike tEXt's Latin-1
    write_atomically(path, lambda tmp: Image.fromarray(rgb).save(tmp, format="PNG", pnginfo=info, compress_level=4))


class SaveAnonymized(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        # ComfyUI hands every output node the prompt and workflow (hidden inputs); this one ignores them.
        return io.Schema(
            node_id="PalsySaveAnonymized",
            display_name="Save Image (anonymized)",
            category="PalsySim",
            description="Saves PNGs to the output folder with no workflow, prompt or input file names in them; "
                        "optionally one method-summary text chunk.",
            inputs=[
                io.Image.Input("images"),
                io.String.Input("filename_prefix", default="palsysim/synthetic",
                                tooltip="Output file name prefix (a subfolder may be given). Avoid patient names."),
                io.String.Input("method_summary", default="", multiline=True,
                                tooltip="Written into each PNG as its Description; leave empty for no text at all."),
            ],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, **inputs):
        # A linked input is not passed here (its value comes at run time): execute checks it then.
        return check_inputs(cls, inputs, filename_prefix=check_prefix, method_summary=check_summary)

    @classmethod
    def execute(cls, images, filename_prefix, method_summary) -> io.NodeOutput:
        problem = check_prefix(filename_prefix) or check_summary(method_summary)
        if problem:
            raise InputError(problem)
        arrays = to_arrays(images, "images")
        # All converted before any file is written: NaN is refused, RGBA composited on white.
        rgbs = [to_rgb_uint8(np.clip(a, 0.0, 1.0), f"image {i + 1} of {len(arrays)}") for i, a in enumerate(arrays)]
        out_dir = folder_paths.get_output_directory()
        folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, out_dir, arrays[0].shape[1], arrays[0].shape[0])
        results = []
        for i, a in enumerate(arrays):
            file = f"{name}_{counter + i:05}_.png"
            save_png(os.path.join(folder, file), rgbs[i], method_summary.strip())
            results.append(ui.SavedResult(file, subfolder, io.FolderType.output))
        return io.NodeOutput(ui=ui.SavedImages(results))
