"""PalsyPreview: show images in the graph without writing any metadata.

ComfyUI's Preview Image writes the prompt and workflow, LoadImage file names included, into every
temp PNG. This one writes pixels only (save.save_png), into the temp folder ComfyUI empties at start.
"""
import os
import random

import folder_paths
import numpy as np
from comfy_api.latest import io, ui

from ..palsysim.base.photos import to_rgb_uint8
from .common import Node, to_arrays
from .save import save_png


class Preview(Node):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PalsyPreview",
            display_name="Preview (no metadata)",
            category="PalsySim",
            description="Shows images in the graph; the temp PNGs hold pixels only, no workflow, prompt or "
                        "file names (ComfyUI's Preview Image writes all of those).",
            inputs=[io.Image.Input("images")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, images) -> io.NodeOutput:
        arrays = to_arrays(images, "images")
        rgbs = [to_rgb_uint8(np.clip(a, 0.0, 1.0), f"image {i + 1} of {len(arrays)}") for i, a in enumerate(arrays)]
        # A random name per run, as core previews use, so the browser never shows a cached older image.
        prefix = "palsysim_preview_" + "".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(8))
        folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(
            prefix, folder_paths.get_temp_directory(), rgbs[0].shape[1], rgbs[0].shape[0])
        results = []
        for i, rgb in enumerate(rgbs):
            file = f"{name}_{counter + i:05}_.png"
            save_png(os.path.join(folder, file), rgb)
            results.append(ui.SavedResult(file, subfolder, io.FolderType.temp))
        return io.NodeOutput(ui=ui.SavedImages(results))
