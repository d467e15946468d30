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


def sheet(tiles, labels, tile_size=384, columns=4):
    """Side-by-side sheet: each (H, W, C) tile letterboxed to tile_size, its label written beneath."""
    label_h = 28
    cells = []
    for tile, label in zip(tiles, labels):
        cell = np.full((tile_size + label_h, tile_size, 3), 24, np.uint8)
        cell[:tile_size] = letterbox(to_rgb_uint8(tile), tile_size, tile_size, fill=24)
        cv2.putText(cell, label, (6, tile_size + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (235, 235, 235), 1, cv2.LINE_AA)
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
