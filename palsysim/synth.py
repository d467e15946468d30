"""Synthetic facial palsy: a one-sided, landmark-driven warp of a healthy face.

Gives tests and demos a patient-like face whose asymmetry is known: on the palsied side the brow
droops, the lower lid sags (the eye opens wider) and the mouth corner drops and pulls in, as in
a flaccid facial-nerve palsy at rest. Everything else, the other side included, stays put.
"""
import cv2
import numpy as np

from . import regions as R
from .asymmetry import face_frame
from .images import InputError, to_rgb_uint8

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


def synth_palsy(image, face, side="left", severity=0.6):
    """Warp a healthy face into a one-sided palsy.

    image: (H, W, C) photo; face: its Face (palsysim.landmarks). side: the subject's "left" or
    "right"; severity: 0 (unchanged) .. 1 (marked). Returns (warped (H, W, 3) uint8, moved
    (478, 2) float32 pixel landmarks, where the warp carried the input landmarks).
    """
    if side not in R.SIDES:
        raise InputError(f"side must be 'left' or 'right', not {side!r}")
    if not 0.0 <= severity <= 1.0:
        raise InputError(f"severity must lie in 0..1, not {severity}")
    rgb = to_rgb_uint8(image)
    h, w = rgb.shape[:2]
    xy = face.xy.astype(np.float64)
    idx, disp = palsy_displacements(xy, side, severity)
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
