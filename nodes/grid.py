"""The Yanagihara grid's nodes: the ten item photos as one batch, text lines as a list (one run per
identity), and the labelled sheet of every row."""
import glob

import numpy as np
from comfy_api.latest import io

from ..palsysim.base.errors import InputError
from ..palsysim.base.photos import letterbox, to_rgb_uint8
from ..palsysim.base.vocabulary import ITEMS
from ..palsysim.face.draw import LABEL_H, LABEL_PAD, fit_label, sheet
from .common import Node, _one, output, to_arrays, to_image

# The items' names for the grid's columns: English as the dataset's folder names, Japanese as the
# Yanagihara (40-point) grading system's own item names.
ITEM_NAMES = {
    "en": {item: item for item in ITEMS},
    "ja": {"rest": "安静時", "raise_eyebrows": "額のしわ寄せ", "blink": "瞬目",
           "gentle_eye_closure": "軽い閉眼", "tight_eye_closure": "強い閉眼", "wink": "片目つぶり",
           "nose_wrinkle": "鼻翼を動かす", "whistle": "口笛", "grin": "イーと歯を見せる",
           "lower_lip_depression": "口をへの字にまげる"},
}
# Fonts with Japanese glyphs that Debian ships: fonts-ipafont-gothic, fonts-noto-cjk.
FONT_GLOBS = ("/usr/share/fonts/opentype/ipafont-gothic/*.ttf", "/usr/share/fonts/truetype/fonts-japanese-gothic.ttf",
              "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def _lines(text):
    return [s.strip() for s in (text or "").splitlines() if s.strip()]


def font_for(text):
    """Path of an installed font that has a glyph for every character of text, else an InputError naming one."""
    from fontTools.ttLib import TTFont
    wanted = {ord(c) for c in text if not c.isspace()}
    for path in (p for g in FONT_GLOBS for p in sorted(glob.glob(g))):
        with TTFont(path, fontNumber=0, lazy=True) as f:
            if wanted <= set(f.getBestCmap()):
                return path
    missing = "".join(sorted({c for c in text if not c.isspace()}))
    raise InputError(f"no installed font has glyphs for the labels' characters {missing[:40]!r}: install one, e.g. "
                     f"`apt-get install fonts-ipafont-gothic` (Japanese) or fonts-noto-cjk, then run again")


def draw_labels(grid, labels, tile_size, columns):
    """Labels written with a font that has their glyphs, under each tile of a draw.sheet grid (labels left blank);
    smaller or on two lines where one would not fit the tile's width, as draw.sheet's."""
    from PIL import Image, ImageDraw, ImageFont
    path = font_for("".join(labels))
    fonts = {size: ImageFont.truetype(path, size) for size in range(16, 8, -1)}
    im = Image.fromarray(grid)
    pen = ImageDraw.Draw(im)
    for i, label in enumerate(labels):
        r, c = divmod(i, columns)
        lines, size = fit_label(label, tile_size - 2 * LABEL_PAD, lambda t, s: fonts[s].getlength(t), tuple(fonts))
        top = r * (tile_size + LABEL_H) + tile_size + (4 if len(lines) == 1 else 1)
        for k, line in enumerate(lines):
            pen.text((c * tile_size + LABEL_PAD, top + 13 * k), line, font=fonts[size], fill=(235, 235, 235))
    return np.asarray(im)


class YanagiharaBatch(Node):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PalsyYanagiharaBatch",
            display_name="Yanagihara Photos (10 items -> batch)",
            category="PalsySim",
            description="The patient's photo of each Yanagihara item, in the grading order, as one batch (each "
                        "photo letterboxed to the first one's size, never stretched); `items` names them, one "
                        "per line, for the grid's columns, in `language`.",
            inputs=[io.Image.Input(item, tooltip=f"The patient doing '{item}' (one photo).") for item in ITEMS]
            + [io.Combo.Input("language", options=list(ITEM_NAMES), default="en", optional=True,
                              tooltip="The items' names: en (the folder names) or ja (柳原法の項目名).")],
            outputs=[output(io.Image, "images"), output(io.String, "items")],
        )

    @classmethod
    def execute(cls, language="en", **photos) -> io.NodeOutput:
        firsts = [(item, to_arrays(photos[item], item)) for item in ITEMS]
        several = [f"{item} ({len(a)})" for item, a in firsts if len(a) != 1]
        if several:
            raise InputError(f"each item takes one photo, but {', '.join(several)} got a batch: connect one "
                             f"Load Image per item")
        rgbs = [to_rgb_uint8(a[0], item) for item, a in firsts]
        h, w = rgbs[0].shape[:2]
        names = "\n".join(ITEM_NAMES[language][item] for item in ITEMS)
        return io.NodeOutput(to_image([letterbox(r, h, w) for r in rgbs]), names)


class Lines(Node):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PalsyLines",
            display_name="Lines -> List (one run per line)",
            category="PalsySim",
            description="Each non-empty line of `text` as one item of a list: the nodes fed by `lines` run once "
                        "per line (ComfyUI's list mapping), so one chain serves every identity. `labels`: the same "
                        "lines as one text, e.g. for the grid's row labels.",
            inputs=[io.String.Input("text", default="a man\na woman", multiline=True, tooltip="One per line.")],
            outputs=[output(io.String, "lines", is_output_list=True), output(io.String, "labels")],
        )

    @classmethod
    def own_checks(cls, inputs):
        return {"text": _no_line}

    @classmethod
    def execute(cls, text) -> io.NodeOutput:
        if _no_line(text):  # a linked text is first seen here
            raise InputError(_no_line(text))
        lines = _lines(text)
        return io.NodeOutput(lines, "\n".join(lines))


def _no_line(text):
    return None if _lines(text) else "text has no line: write one per line"


class LabelledGrid(Node):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PalsyLabelledGrid",
            display_name="Labelled Grid",
            category="PalsySim",
            description="Lays a batch out row by row, `columns` per row; each tile is labelled "
                        "'<row label> | <column label>'.",
            inputs=[
                io.Image.Input("images", tooltip="One batch, or one batch per row (fed by a node that runs once "
                                                 "per identity); batches follow one another."),
                io.Int.Input("columns", default=10, min=1, max=64),
                io.String.Input("column_labels", default="", multiline=True, tooltip="One per line."),
                io.String.Input("row_labels", default="", multiline=True, tooltip="One per line."),
                io.Int.Input("tile_size", default=256, min=32, max=1024),
                io.String.Input("reports", optional=True, force_input=True,
                                tooltip="The privacy gate's report, one per row (the gate runs once per identity): "
                                        "`report` names each row's."),
            ],
            outputs=[output(io.Image, "grid"),
                     output(io.String, "report", tooltip="Each row's gate report under its row label, every row's "
                                                         "outcome first.")],
            is_input_list=True,  # every row's batch at once, not one sheet per row
        )

    @classmethod
    def validate_inputs(cls, **inputs):
        return super().validate_inputs(**{k: _one(v) for k, v in inputs.items()})

    @classmethod
    def execute(cls, images, columns, column_labels, row_labels, tile_size, reports=None) -> io.NodeOutput:
        columns, column_labels, row_labels, tile_size = map(_one, (columns, column_labels, row_labels, tile_size))
        tiles = [to_rgb_uint8(a) for batch in images for a in to_arrays(batch, "images")]
        cols, rows = _lines(column_labels), _lines(row_labels)
        n_rows = -(-len(tiles) // columns)
        for what, labels, n in (("column_labels", cols, columns), ("row_labels", rows, n_rows)):
            if labels and len(labels) != n:
                raise InputError(f"{what} has {len(labels)} line(s) but the grid has {n}: "
                                 f"{len(tiles)} images in rows of {columns}")
        labels = [" | ".join(x for x in (rows[i // columns] if rows else "", cols[i % columns] if cols else "") if x)
                  for i in range(len(tiles))]
        text = rows_report(reports or [], rows)
        if all(label.isascii() for label in labels):  # OpenCV's own font has ASCII glyphs only
            return io.NodeOutput(to_image([sheet(tiles, labels, tile_size, columns)]), text)
        blank = sheet(tiles, [""] * len(tiles), tile_size, columns)
        return io.NodeOutput(to_image([draw_labels(blank, labels, tile_size, columns)]), text)


def rows_report(reports, rows):
    """One text of the gate's reports, one per row: every row's outcome (its report's first line) under its
    row label first, then each report in full, so a text box that shows one screen shows every row's."""
    if not reports:
        return "No privacy gate report: connect the gate's report to reports (a bypassed gate gives none)."
    names = [rows[i] if len(rows) == len(reports) else f"row {i + 1}" for i in range(len(reports))]
    parts = [(name, *(str(r) + "\n").split("\n", 1)) for name, r in zip(names, reports)]
    summary = "\n".join(f"- {name}: {first}" for name, first, _ in parts)
    return "\n\n".join([summary] + [f"**{name}**: {first}\n{rest}".rstrip() for name, first, rest in parts])
