"""Previews a person can look at: landmarks over the photo, labelled sheets."""
import cv2
import numpy as np

from ..base.photos import letterbox, to_rgb_uint8
from . import regions as R

# RGB colours: organs in distinct hues, the mesh faint.
COLOURS = {"mesh": (160, 160, 160), "oval": (255, 255, 255), "brow": (255, 170, 0), "eye": (0, 200, 255),
           "lips": (255, 60, 120), "nose": (120, 255, 120), "pupil": (255, 255, 0), "midline": (255, 255, 255)}


def _polyline(canvas, pts, idx, colour, thickness, closed=False):
    cv2.polylines(canvas, [np.round(pts[list(idx)]).astype(np.int32)], closed, colour, thickness, cv2.LINE_AA)


def landmarks_preview(image, face):
    """Photo (H, W, C) + Face -> (H, W, 3) uint8: all 478 points faint, organs and pupils outlined."""
    canvas = to_rgb_uint8(image).copy()
    pts = face.xy
    scale = max(canvas.shape[:2]) / 512.0
    t = max(1, int(round(1.5 * scale)))
    for x, y in np.round(pts).astype(int):
        cv2.circle(canvas, (x, y), max(1, t - 1), COLOURS["mesh"], -1, cv2.LINE_AA)
    _polyline(canvas, pts, R.FACE_OVAL, COLOURS["oval"], t, closed=True)
    for side in R.SIDES:
        _polyline(canvas, pts, R.BROW_UPPER[side] + R.BROW_LOWER[side][::-1], COLOURS["brow"], t, closed=True)
        _polyline(canvas, pts, R.EYE_UPPER[side] + R.EYE_LOWER[side][::-1], COLOURS["eye"], t, closed=True)
        cv2.circle(canvas, tuple(np.round(pts[R.PUPIL[side]]).astype(int)), 2 * t, COLOURS["pupil"], -1, cv2.LINE_AA)
    _polyline(canvas, pts, R.LIPS_OUTER, COLOURS["lips"], t, closed=True)
    _polyline(canvas, pts, R.LIPS_INNER, COLOURS["lips"], t, closed=True)
    for i in R.NOSE:
        cv2.circle(canvas, tuple(np.round(pts[i]).astype(int)), t + 1, COLOURS["nose"], -1, cv2.LINE_AA)
    return canvas


LABEL_H, LABEL_PAD = 28, 6  # the strip under each tile, and the space left of (and right of) its label


def split_label(label):
    """Two lines of a label too long for one: at its ' | ' (row | column), else at the space or '_' nearest
    its middle; (label,) when there is nowhere to split."""
    if " | " in label:
        head, tail = label.split(" | ", 1)
        return (head + " |", tail)
    cuts = [i for i, c in enumerate(label) if c in " _"]
    if not cuts:
        return (label,)
    i = min(cuts, key=lambda i: abs(i - len(label) / 2))
    return (label[:i + (label[i] == "_")].rstrip(), label[i + 1:])


def fit_label(label, width, measure, sizes):
    """How to write label in `width`: (lines, size). One line at a size of `sizes` (largest first) down to 80%
    of the largest; else the two lines of split_label at a smaller size; else one line, smaller still; else
    the two lines cut to fit at the smallest size. measure(text, size) -> its width."""
    big = [s for s in sizes if s > sizes[0] * 0.8]
    small = [s for s in sizes if s not in big]
    lines = split_label(label)
    for size in big:
        if measure(label, size) <= width:
            return (label,), size
    for size in small:
        if len(lines) == 2 and all(measure(line, size) <= width for line in lines):
            return lines, size
    for size in small:
        if measure(label, size) <= width:
            return (label,), size
    return tuple(_cut(line, width, lambda t: measure(t, sizes[-1])) for line in lines), sizes[-1]


def _cut(text, width, measure):
    """text, or as much of its start as fits width with '..' after it."""
    if measure(text) <= width:
        return text
    return next((text[:n] + ".." for n in range(len(text) - 1, 0, -1) if measure(text[:n] + "..") <= width), "")


def _cv2_width(text, scale):
    return cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0]


def sheet(tiles, labels, tile_size=384, columns=4):
    """Side-by-side sheet: each (H, W, C) tile letterboxed to tile_size, its label written beneath, smaller or
    on two lines where it would not fit the tile's width (never cut off by the next tile)."""
    cells = []
    for tile, label in zip(tiles, labels):
        cell = np.full((tile_size + LABEL_H, tile_size, 3), 24, np.uint8)
        cell[:tile_size] = letterbox(to_rgb_uint8(tile), tile_size, tile_size, fill=24)
        lines, scale = fit_label(label, tile_size - 2 * LABEL_PAD, _cv2_width, (0.55, 0.5, 0.45, 0.4, 0.35, 0.3))
        baselines = [tile_size + 20] if len(lines) == 1 else [tile_size + 12, tile_size + 25]
        for line, y in zip(lines, baselines):
            cv2.putText(cell, line, (LABEL_PAD, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (235, 235, 235), 1, cv2.LINE_AA)
        cells.append(cell)
    while len(cells) % columns:
        cells.append(np.full_like(cells[0], 24))
    rows = [np.concatenate(cells[i:i + columns], axis=1) for i in range(0, len(cells), columns)]
    return np.concatenate(rows, axis=0)


def held_back_tile(height, width, text="held back"):
    """(height, width, 3) uint8 grey tile saying `text`: stands in for an image the privacy gate kept back."""
    tile = np.full((height, width, 3), 96, np.uint8)
    scale = max(0.3, width / 260)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.putText(tile, text, ((width - tw) // 2, (height + th) // 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (230, 230, 230), max(1, round(scale * 2)), cv2.LINE_AA)
    return tile
