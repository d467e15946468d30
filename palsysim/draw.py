"""Previews a person can look at: landmarks over the photo, labelled sheets."""
import cv2
import numpy as np

from . import regions as R
from .images import to_rgb_uint8

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
        rgb = to_rgb_uint8(tile)
        s = tile_size / max(rgb.shape[:2])
        small = cv2.resize(rgb, (max(1, round(rgb.shape[1] * s)), max(1, round(rgb.shape[0] * s))),
                           interpolation=cv2.INTER_AREA)
        cell = np.full((tile_size + label_h, tile_size, 3), 24, np.uint8)
        y0, x0 = (tile_size - small.shape[0]) // 2, (tile_size - small.shape[1]) // 2
        cell[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
        cv2.putText(cell, label, (6, tile_size + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (235, 235, 235), 1, cv2.LINE_AA)
        cells.append(cell)
    while len(cells) % columns:
        cells.append(np.full_like(cells[0], 24))
    rows = [np.concatenate(cells[i:i + columns], axis=1) for i in range(0, len(cells), columns)]
    return np.concatenate(rows, axis=0)
