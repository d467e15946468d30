"""Emotrics-style facial-asymmetry measures from 478 landmarks.

Everything is measured in the face's own frame: origin midway between the pupils, x along the line
from the right pupil to the left pupil (the subject's sides), y perpendicular to it pointing down
the face, and one unit = the inter-pupil distance. So photos of any size, slightly tilted, compare.
"""
import numpy as np

from . import regions as R

MEASURES = ("brow_height", "palpebral_fissure_height", "commissure_height", "commissure_excursion",
            "smile_angle")


def face_frame(xy):
    """(478, 2) pixels -> (478, 2) in the pupil frame (origin mid-pupils, x to the left pupil, unit IPD).

    Returns (points, ipd_px).
    """
    right, left = xy[R.PUPIL["right"]], xy[R.PUPIL["left"]]
    axis = left - right
    ipd = float(np.hypot(*axis))
    if ipd < 1e-6:
        raise ValueError("pupils coincide: these are not face landmarks")
    ex = axis / ipd
    ey = np.array([-ex[1], ex[0]])  # image y points down, so this points down the face
    centred = xy - (right + left) / 2.0
    return np.stack([centred @ ex, centred @ ey], axis=1) / ipd, ipd


def side_measures(p, side):
    """Measures of one side from frame points p (478, 2); lengths in IPD units, angles in degrees.

    brow_height: pupil to the upper brow (mean of its middle three points), upwards positive.
    palpebral_fissure_height: upper to lower lid at the pupil.
    commissure_height: mouth corner below the pupil line.
    commissure_excursion: mouth corner to the lower lip's midline point.
    smile_angle: elevation of the corner seen from the lower lip's midline point (up is positive).
    """
    pupil = p[R.PUPIL[side]]
    brow = p[list(R.BROW_UPPER[side][1:4])].mean(axis=0)
    upper, lower = (p[i] for i in R.LID_MID[side])
    corner, lip_mid = p[R.MOUTH_CORNER[side]], p[R.LOWER_LIP_MID]
    reach = corner - lip_mid
    return {
        "brow_height": float(pupil[1] - brow[1]),
        "palpebral_fissure_height": float(np.hypot(*(lower - upper))),
        "commissure_height": float(corner[1]),
        "commissure_excursion": float(np.hypot(*reach)),
        "smile_angle": float(np.degrees(np.arctan2(-reach[1], abs(reach[0])))),
    }


def measure(xy):
    """(478, 2+) landmarks in pixels -> per-side measures and their left/right asymmetry.

    Returns {"right": {...}, "left": {...}, "asymmetry": {measure: {"difference": right - left,
    "percent": 100 |right - left| / mean(|right|, |left|)}}, "ipd_px": inter-pupil distance,
    "midline_deviation": nose tip and lip midline off the pupil midline, in IPD}.
    """
    p, ipd = face_frame(np.asarray(xy, dtype=np.float64)[:, :2])
    sides = {s: side_measures(p, s) for s in R.SIDES}
    asym = {}
    for m in MEASURES:
        r, l = sides["right"][m], sides["left"][m]
        mean = (abs(r) + abs(l)) / 2.0
        asym[m] = {"difference": r - l, "percent": 100.0 * abs(r - l) / mean if mean > 1e-9 else 0.0}
    midline = {"nose_tip": float(p[4, 0]), "lower_lip": float(p[R.LOWER_LIP_MID, 0])}
    return {**sides, "asymmetry": asym, "ipd_px": ipd, "midline_deviation": midline}
