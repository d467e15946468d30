"""Synthetic facial palsy and expressions: landmark-driven warps of a healthy face.

Gives tests and demos a patient-like face whose asymmetry is known: on the palsied side the brow
droops, the lower lid sags (the eye opens wider) and the mouth corner drops and pulls in, as in
a flaccid facial-nerve palsy at rest. Everything else, the other side included, stays put.
synth_expression adds one of the ten Yanagihara items on top, the palsied side moving less.
"""
import cv2
import numpy as np

from ..base.errors import InputError
from ..base.photos import to_rgb_uint8
from . import regions as R
from .asymmetry import face_frame

# Displacements at severity 1, in inter-pupil distances.
BROW_DROOP = 0.14
LID_SAG = 0.08
CORNER_DROP = 0.18
CORNER_PULL_IN = 0.04

# Control points of the warp: organ outlines, not the dense iris or inner-lip points, whose
# near-coincident pairs make the thin-plate spline ill-conditioned.
_ANCHORS = sorted(set(R.FACE_OVAL + R.NOSE + R.MIDLINE + R.LIPS_OUTER + tuple(R.PUPIL.values())
                      + sum((R.EYE_UPPER[s] + R.EYE_LOWER[s] + R.BROW_UPPER[s] + R.BROW_LOWER[s]
                             for s in R.SIDES), ())) - {13, 14})


def palsy_displacements(xy, side, severity):
    """Where the palsy moves each anchor landmark.

    xy: (478, 2) pixels. Returns (indices (K,), displacement (K, 2) pixels) for every anchor (moved
    or held still), so the warp keeps unmoved features where they are.
    """
    p, ipd = face_frame(xy)
    ex = (xy[R.PUPIL["left"]] - xy[R.PUPIL["right"]]) / ipd  # pixel direction of the frame's x
    down = np.array([-ex[1], ex[0]])
    inward = ex if side == "right" else -ex  # towards the midline from the palsied side
    disp = {i: np.zeros(2) for i in _ANCHORS}
    for i in R.BROW_UPPER[side] + R.BROW_LOWER[side]:
        disp[i] = down * BROW_DROOP * ipd
    lid = R.EYE_LOWER[side]
    for k, i in enumerate(lid[1:-1], start=1):  # corners stay, the middle sags most
        disp[i] = down * LID_SAG * ipd * np.sin(np.pi * k / (len(lid) - 1))
    corner_x = abs(p[R.MOUTH_CORNER[side], 0])
    for i in R.LIPS_OUTER:
        if np.sign(p[i, 0]) == (-1 if side == "right" else 1):
            w = min(1.0, abs(p[i, 0]) / corner_x) ** 2
            disp[i] = (down * CORNER_DROP + inward * CORNER_PULL_IN) * ipd * w
    idx = np.array(sorted(disp))
    return idx, severity * np.stack([disp[i] for i in idx])


# Each Yanagihara item as moves of brows, lids and lips, in inter-pupil distances (frame: x to the
# subject's left, y down). "lid": fraction of the eye's opening closed by the upper lid; "wink"
# closes the healthy side's eye only. Sizes are of a clear, not maximal, expression.
EXPRESSIONS = {
    "rest": {},
    "raise_eyebrows": {"brow": -0.15},
    "blink": {"lid": 0.85},
    "gentle_eye_closure": {"lid": 0.7},
    "tight_eye_closure": {"lid": 0.85, "brow": 0.05, "lower_lid": -0.02},
    "wink": {"wink": 0.85},
    "nose_wrinkle": {"upper_lip": -0.05, "corner": (0.0, -0.03), "lower_lid": -0.03},
    "whistle": {"width": 0.7, "open": 1.2},
    "grin": {"width": 1.4, "open": 1.5, "corner": (0.0, -0.05)},
    "lower_lip_depression": {"lower_lip": 0.08, "corner": (0.0, 0.03)},
}


def expression_displacements(xy, item, palsy_side="left", severity=0.6):
    """Where one Yanagihara item moves each anchor landmark: (indices (K,), displacement (K, 2) pixels).

    xy: (478, 2) pixels. The palsied side moves (1 - severity) as far as the healthy one.
    """
    if item not in EXPRESSIONS:
        raise InputError(f"unknown expression {item!r}: use one of {', '.join(EXPRESSIONS)}")
    e = EXPRESSIONS[item]
    p, ipd = face_frame(xy)
    ex = (xy[R.PUPIL["left"]] - xy[R.PUPIL["right"]]) / ipd
    axes = np.stack([ex, np.array([-ex[1], ex[0]])])  # frame (dx, dy) @ axes -> pixels
    move = {i: np.zeros(2) for i in _ANCHORS}
    gain = {s: (1.0 - severity) if s == palsy_side else 1.0 for s in R.SIDES}

    def add(i, d, s):
        move[i] = move[i] + gain[s] * np.asarray(d, dtype=np.float64)

    for s in R.SIDES:
        for i in R.BROW_UPPER[s] + R.BROW_LOWER[s]:
            add(i, (0.0, e.get("brow", 0.0)), s)
        closing = e.get("lid", 0.0) + (e.get("wink", 0.0) if s != palsy_side else 0.0)
        upper, lower = R.EYE_UPPER[s], R.EYE_LOWER[s]
        for k in range(1, len(upper) - 1):  # corners stay; the middle of each lid moves most
            gap = p[lower[k], 1] - p[upper[k], 1]
            add(upper[k], (0.0, closing * gap), s)
            add(lower[k], (0.0, e.get("lower_lid", 0.0) * np.sin(np.pi * k / (len(lower) - 1))), s)
    # Lips: scaled about the mouth centre (width, opening), then lips and corners shifted.
    centre = p[list(R.LIPS_OUTER)].mean(0)
    half = abs(p[R.MOUTH_CORNER["left"], 0] - p[R.MOUTH_CORNER["right"], 0]) / 2.0
    upper_lip = set(R.LIPS_OUTER[11:]) | {0}
    for i in R.LIPS_OUTER:
        rel = p[i] - centre
        s = "left" if rel[0] > 0 else "right"
        reach = min(1.0, abs(rel[0]) / half)  # 0 at the midline, 1 at the corner
        d = np.array([(e.get("width", 1.0) - 1.0) * rel[0], (e.get("open", 1.0) - 1.0) * rel[1]])
        d += np.asarray(e.get("corner", (0.0, 0.0))) * reach ** 2
        d[1] += e.get("upper_lip", 0.0) * (1 - reach) * (i in upper_lip)
        d[1] += e.get("lower_lip", 0.0) * (1 - reach) * (i not in upper_lip)
        # near the midline both sides pull: the palsied side's weakness fades towards it
        g = 1.0 - (1.0 - gain[s]) * reach
        move[i] = move[i] + g * d
    idx = np.array(sorted(move))
    return idx, np.stack([move[i] for i in idx]) @ axes * ipd


def _tps_fit(centres, values):
    """Thin-plate spline through centres (N, 2) taking values (N, D); returns (weights (N, D), affine (3, D))."""
    n = len(centres)
    r2 = ((centres[:, None] - centres[None]) ** 2).sum(-1)
    k = 0.5 * r2 * np.log(np.maximum(r2, 1e-300))  # r^2 log r, written on r^2
    p = np.concatenate([np.ones((n, 1)), centres], axis=1)
    a = np.block([[k, p], [p.T, np.zeros((3, 3))]])
    sol = np.linalg.solve(a, np.concatenate([values, np.zeros((3, values.shape[1]))]))
    return sol[:n], sol[n:]


def _tps_eval(points, centres, weights, affine):
    """Evaluate a fitted spline at points (M, 2) -> (M, D)."""
    r2 = ((points[:, None] - centres[None]) ** 2).sum(-1)
    k = 0.5 * r2 * np.log(np.maximum(r2, 1e-300))
    return k @ weights + np.concatenate([np.ones((len(points), 1)), points], axis=1) @ affine


def _warp(rgb, xy, idx, disp):
    """Thin-plate-spline warp moving landmarks xy[idx] by disp (K, 2) pixels -> (image, all 478 moved)."""
    h, w = rgb.shape[:2]
    # The image border is pinned so the warp stays local to the face.
    border = np.array([(x, y) for x in (0, w / 2, w - 1) for y in (0, h / 2, h - 1) if (x, y) != (w / 2, h / 2)])
    src = np.concatenate([xy[idx], border])
    dst = np.concatenate([xy[idx] + disp, border])
    unit = float(max(h, w))  # fit in unit coordinates: r^2 log r of pixel distances is badly scaled
    # Backward map for remap: each output pixel samples the input where the spline sends it.
    back = _tps_fit(dst / unit, (src - dst) / unit)
    step = 4  # the map is smooth: evaluate on a coarse grid and let resize interpolate
    gy, gx = np.mgrid[0:h + step:step, 0:w + step:step].astype(np.float64)
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
    offset = (_tps_eval(grid / unit, dst / unit, *back) * unit).reshape(gx.shape + (2,))
    full = cv2.resize(offset.astype(np.float32), (gx.shape[1] * step, gx.shape[0] * step),
                      interpolation=cv2.INTER_LINEAR)[:h, :w]
    # resize puts coarse sample j at pixel step*j + (step-1)/2; shift the map back by that half step
    full = cv2.warpAffine(full, np.float32([[1, 0, (step - 1) / 2], [0, 1, (step - 1) / 2]]), (w, h),
                          borderMode=cv2.BORDER_REPLICATE)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    out = cv2.remap(rgb, xs + full[..., 0], ys + full[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    forward = _tps_fit(src / unit, (dst - src) / unit)
    moved = xy + _tps_eval(xy / unit, src / unit, *forward) * unit
    return out, moved.astype(np.float32)


def _check(side, severity):
    if side not in R.SIDES:
        raise InputError(f"side must be 'left' or 'right', not {side!r}")
    if not 0.0 <= severity <= 1.0:
        raise InputError(f"severity must lie in 0..1, not {severity}")


def synth_palsy(image, face, side="left", severity=0.6):
    """Warp a healthy face into a one-sided palsy.

    image: (H, W, C) photo; face: its Face (palsysim.landmarks). side: the subject's "left" or
    "right"; severity: 0 (unchanged) .. 1 (marked). Returns (warped (H, W, 3) uint8, moved
    (478, 2) float32 pixel landmarks, where the warp carried the input landmarks).
    """
    _check(side, severity)
    xy = face.xy.astype(np.float64)
    return _warp(to_rgb_uint8(image), xy, *palsy_displacements(xy, side, severity))


def synth_expression(image, face, item, side="left", severity=0.6):
    """A palsy patient making one Yanagihara item: the palsy at rest plus the expression, weaker on side.

    Same arguments and return as synth_palsy, plus item (an EXPRESSIONS key); "rest" is synth_palsy.
    """
    _check(side, severity)
    xy = face.xy.astype(np.float64)
    idx, palsy = palsy_displacements(xy, side, severity)
    expression = expression_displacements(xy, item, side, severity)[1]  # the same anchors, in order
    return _warp(to_rgb_uint8(image), xy, idx, palsy + expression)


def synth_expression_video(image, face, item, frames=30, side="left", severity=0.6):
    """A palsy patient going from rest to one Yanagihara item and back: [(frame (H, W, 3) uint8, (478, 2)), ...].

    The expression's displacement follows sin(pi t / (frames - 1)), so frames 0 and frames - 1 are the
    palsy at rest and the middle one the item's apex (synth_expression's); the palsy itself stays.
    Each frame's landmarks are where the warp carried the input landmarks: the sequence's ground truth.
    """
    _check(side, severity)
    if not isinstance(frames, int) or frames < 2:
        raise InputError(f"frames={frames!r}: a video needs at least 2 frames")
    rgb, xy = to_rgb_uint8(image), face.xy.astype(np.float64)
    idx, palsy = palsy_displacements(xy, side, severity)
    expression = expression_displacements(xy, item, side, severity)[1]
    return [_warp(rgb, xy, idx, palsy + np.sin(np.pi * t / (frames - 1)) * expression) for t in range(frames)]
