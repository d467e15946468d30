"""PalsySaveAnonymized: save images with no workflow, prompt or file-name metadata.

ComfyUI's SaveImage writes the whole prompt and workflow into every PNG (text chunks "prompt" and
"workflow"), and with them the patient photo's file name from LoadImage. This node writes pixels
only, plus, if asked, one "Description" text chunk holding a method summary.
"""
import os
import re
import unicodedata

import folder_paths
import numpy as np
from comfy_api.latest import io, ui
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from ..palsysim.base.errors import InputError
from ..palsysim.base.files import write_atomically
from ..palsysim.base.photos import to_rgb_uint8
from .common import Node, to_arrays

SUMMARY_KEY = "Description"  # a registered PNG keyword, shown by ordinary image viewers
MAX_SUMMARY = 2000  # characters: a method description, not a document
# Control characters (NUL included) but not the line breaks and tabs of a multiline text.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# What a summary may hold besides letters, digits and marks of any script: no path separator, no '~' '$' '_'
# (file names join words with it), no lookalike of '.' or '/' (full-width dot, one-dot leader, division slash).
SUMMARY_PUNCTUATION = " \n\t.,;:()+-'\"!?%&=°±、。「」"
# A file name or path written with allowed characters: '.' then a letter (an extension: .dng, .JPG,
# .tar.gz, and also e.g.), or a letter, ':' and no space (a drive, C:name, or a scheme, file:name).
_FILE_LIKE = re.compile(r"\.[^\W\d_]|[^\W\d_]:(?=\S)")
SUMMARY_RULE = ("it is written into every image, so it may hold only words, digits, spaces and "
                f"{SUMMARY_PUNCTUATION.strip()}, nothing file-like (no file names, paths or patient names)")
NOT_CHECKED = "Identity not checked: no privacy gate ran before this save."
MAX_NAME_BYTES = 200  # of each folder or file name in filename_prefix: 255 is the usual limit, a counter is added


def check_summary(text):
    """None if the summary is fit to embed, else why not.

    Not a search for known file extensions (a raw photo's .dng or .cr2 slipped past that): only a fixed
    set of characters is allowed, and among them neither an extension-like '.x' nor a drive-like 'C:x'.
    """
    text = text or ""
    if len(text) > MAX_SUMMARY:
        return f"method_summary is {len(text)} characters long: keep it to {MAX_SUMMARY} (it is written into every image)"
    if _CONTROL.search(text):
        return "method_summary holds a control character (e.g. NUL): type plain text, line breaks are fine"
    odd = next((c for c in text if not (c.isalnum() or unicodedata.category(c)[0] == "M" or c in SUMMARY_PUNCTUATION)),
                None)
    if odd is not None:
        return f"method_summary holds {odd!r} ({unicodedata.name(odd, 'U+%04X' % ord(odd))}): {SUMMARY_RULE}"
    found = _FILE_LIKE.search(text)
    if found:
        # only the file-like mark itself: the text around it may be a patient's name, and errors are logged
        return (f"method_summary reads like it holds a file name or path ({found.group()!r} at character "
                f"{found.start() + 1}): {SUMMARY_RULE}")
    return None


def check_prefix(prefix):
    """None if filename_prefix names files inside the output folder, else why not."""
    prefix = (prefix or "").strip().replace("\\", "/")
    parts = prefix.split("/")
    if not parts[-1]:
        return "filename_prefix is empty or ends in '/': give a file name such as palsysim/synthetic"
    if parts[-1].startswith("."):
        return f"filename_prefix {prefix!r} would write hidden files (a name starting with '.'): drop the dot"
    if re.search(r"[\x00-\x1f\x7f-\x9f]", prefix):
        return "filename_prefix holds a control character (e.g. NUL or a line break): type a plain name"
    if prefix.startswith("/") or ".." in parts:
        return ("filename_prefix leaves the output folder ('..' or a leading '/'): give a path inside it such as "
                "palsysim/synthetic")
    sizes = [len(p.encode("utf-8")) for p in parts]
    if max(sizes) > MAX_NAME_BYTES:
        return (f"filename_prefix has a folder or file name {max(sizes)} bytes long (part {sizes.index(max(sizes)) + 1} "
                f"of the path): keep each to {MAX_NAME_BYTES} bytes")
    return None


def save_png(path, rgb, summary=""):
    """(H, W, 3) uint8 -> PNG at path, written whole (aside, then renamed), with at most the summary chunk."""
    info = None
    if summary:
        info = PngInfo()
        info.add_itxt(SUMMARY_KEY, summary)  # iTXt: UTF-8, unlike tEXt's Latin-1
    write_atomically(path, lambda tmp: Image.fromarray(rgb).save(tmp, format="PNG", pnginfo=info, compress_level=4))


class SaveAnonymized(Node):
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
                io.String.Input("identity_check", optional=True, force_input=True,
                                tooltip="The privacy gate's `checked`: the Description then says the image passed "
                                        "the identity check; unconnected, it says the image was not checked."),
            ],
            is_output_node=True,
        )

    @classmethod
    def own_checks(cls, inputs):
        # A linked input is not passed here (its value comes at run time): execute checks it then.
        return {"filename_prefix": check_prefix, "method_summary": check_summary}

    @classmethod
    def execute(cls, images, filename_prefix, method_summary, identity_check=None) -> io.NodeOutput:
        problem = check_prefix(filename_prefix) or check_summary(method_summary)
        if problem:
            raise InputError(problem)
        # A stamp never claims more than was checked: with a summary, the image says whether it passed the gate.
        text = "\n".join(filter(None, [method_summary.strip(),
                                       (identity_check or NOT_CHECKED) if method_summary.strip() or identity_check else ""]))
        arrays = to_arrays(images, "images")
        # All converted before any file is written: NaN is refused, RGBA composited on white.
        rgbs = [to_rgb_uint8(np.clip(a, 0.0, 1.0), f"image {i + 1} of {len(arrays)}") for i, a in enumerate(arrays)]
        out_dir = folder_paths.get_output_directory()
        folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, out_dir, arrays[0].shape[1], arrays[0].shape[0])
        results = []
        for i, a in enumerate(arrays):
            file = f"{name}_{counter + i:05}_.png"
            try:
                save_png(os.path.join(folder, file), rgbs[i], text)
            except OSError as e:  # its message holds the server's own path: name the file by the prefix alone
                raise InputError(f"cannot save {os.path.join(subfolder, file)} in the output folder: "
                                 f"{e.strerror or type(e).__name__}") from None
            results.append(ui.SavedResult(file, subfolder, io.FolderType.output))
        return io.NodeOutput(ui=ui.SavedImages(results))
