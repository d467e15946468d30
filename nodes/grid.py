"""PalsyLabelledGrid: a batch of images as one labelled sheet (rows x columns)."""
from comfy_api.latest import io

from ..palsysim.draw import sheet
from ..palsysim.images import InputError, to_rgb_uint8
from .common import output, to_arrays, to_image


def _lines(text):
    return [s.strip() for s in (text or "").splitlines() if s.strip()]


class LabelledGrid(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PalsyLabelledGrid",
            display_name="Labelled Grid",
            category="PalsySim",
            description="Lays a batch out row by row, `columns` per row; each tile is labelled "
                        "'<row label> | <column label>'.",
            inputs=[
                io.Image.Input("images"),
                io.Int.Input("columns", default=10, min=1, max=64),
                io.String.Input("column_labels", default="", multiline=True, tooltip="One per line."),
                io.String.Input("row_labels", default="", multiline=True, tooltip="One per line."),
                io.Int.Input("tile_size", default=256, min=32, max=1024),
            ],
            outputs=[output(io.Image, "grid")],
        )

    @classmethod
    def execute(cls, images, columns, column_labels, row_labels, tile_size) -> io.NodeOutput:
        tiles = [to_rgb_uint8(a) for a in to_arrays(images, "images")]
        cols, rows = _lines(column_labels), _lines(row_labels)
        n_rows = -(-len(tiles) // columns)
        for what, labels, n in (("column_labels", cols, columns), ("row_labels", rows, n_rows)):
            if labels and len(labels) != n:
                raise InputError(f"{what} has {len(labels)} line(s) but the grid has {n}: "
                                 f"{len(tiles)} images in rows of {columns}")
        labels = [" | ".join(x for x in (rows[i // columns] if rows else "", cols[i % columns] if cols else "") if x)
                  for i in range(len(tiles))]
        return io.NodeOutput(to_image([sheet(tiles, labels, tile_size, columns)]))
