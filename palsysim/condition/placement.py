"""Where CODC puts each patient organ in the donor's image: the donor's layout (issue 24).

Each organ's anchor (pupil, nose tip, the mouth corners' midpoint) lands on the donor's own, moved by
as much as the patient's moved from their rest photo (in face units, times the facial scale), and the
organ turns with the pupil line from the patient's head tilt to the donor's. Matrices are (2, 3),
patient pixels -> condition pixels; boxes integer (x0, y0, x1, y1), x1 and y1 exclusive.
"""
import numpy as np

from ..face import regions as R
from ..face.asymmetry import face_frame

ORGAN_NAMES = tuple(R.ORGANS)  # right_eye, left_eye, nose, mouth: codc's order
NOSE_TIP = 4  # MediaPipe's nose tip


def _placed(anchor_to, anchor_from, scale, rotation):
    """(2, 3) matrix: isotropic scale and a (2, 2) rotation about anchor_from (2,), which lands on anchor_to
    (sub-pixel, not rounded)."""
    out = np.empty((2, 3))
    out[:, :2] = a = scale * rotation
    out[:, 2] = anchor_to - a @ anchor_from
    return out


def _tilt(xy):
    """The pupil line's angle in the image (radians, y down)."""
    axis = xy[R.PUPIL["left"]] - xy[R.PUPIL["right"]]
    return float(np.arctan2(axis[1], axis[0]))


def organ_anchors(xy):
    """{organ: (2,) point} of (478, 2+) landmarks: each pupil, the nose tip, the mouth corners' midpoint."""
    xy = np.asarray(xy, dtype=np.float64)[:, :2]
    return {"right_eye": xy[R.PUPIL["right"]], "left_eye": xy[R.PUPIL["left"]], "nose": xy[NOSE_TIP],
            "mouth": (xy[R.MOUTH_CORNER["right"]] + xy[R.MOUTH_CORNER["left"]]) / 2.0}  # the mean, as one sum


def anchor_moves(xy, rest_xy):
    """{organ: (2,)} how far each anchor moved from the rest photo, in the face frame (asymmetry.face_frame:
    pupil axis, IPD units), so photos of any crop or size compare; zeros without rest_xy."""
    if rest_xy is None:
        return {n: np.zeros(2) for n in ORGAN_NAMES}
    now, rest = (organ_anchors(face_frame(np.asarray(a, dtype=np.float64)[:, :2])[0]) for a in (xy, rest_xy))
    return {n: now[n] - rest[n] for n in ORGAN_NAMES}


def placements(xy, donor_xy, scales, rest_xy=None):
    """Where the patient's organs go in the donor's image: {name: (2, 3) matrix, patient -> condition pixels}.

    xy, donor_xy, rest_xy: (478, 2) pixels (rest_xy: the patient's rest photo, or None); scales:
    organ_scales(). Each organ's anchor lands on the donor's own, moved by as much (in face units)
    as the patient's moved from their rest photo, so what the expression moves still moves while the
    layout, an identity cue, is the donor's. Each organ turns with the pupil line from the patient's
    tilt to the donor's, so that inside it every left/right measure read in the face frame is the patient's.
    """
    xy, donor_xy = (np.asarray(a, dtype=np.float64)[:, :2] for a in (xy, donor_xy))
    turn = _tilt(donor_xy) - _tilt(xy)
    right, left = donor_xy[R.PUPIL["right"]], donor_xy[R.PUPIL["left"]]
    ipd = float(np.hypot(*(left - right)))  # face_frame's, without carrying all 478 points into the frame
    ex = (left - right) / ipd
    to_donor = ipd * np.stack([ex, [-ex[1], ex[0]]], axis=1)  # face frame -> donor pixels
    anchors, donor_anchors, moves = organ_anchors(xy), organ_anchors(donor_xy), anchor_moves(xy, rest_xy)
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])  # one turn for every organ
    return {n: _placed(donor_anchors[n] + to_donor @ moves[n], anchors[n], scales[n], rotation) for n in ORGAN_NAMES}


def separate(boxes, extents):
    """Target boxes {name: (x0, y0, x1, y1)} trimmed so that no two overlap. Each overlapping pair is cut
    in the middle of the overlap, moved where it can be to pass between the two organs' placed landmarks
    (extents: {name: ((2,) min, (2,) max)}), so that the margins give way before any landmark does;
    across an axis on which the landmarks leave a gap if there is one, else the thinner overlap."""
    out = {n: list(b) for n, b in boxes.items()}
    names = list(out)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            lo = [max(out[a][k], out[b][k]) for k in (0, 1)]
            hi = [min(out[a][k + 2], out[b][k + 2]) for k in (0, 1)]
            if hi[0] <= lo[0] or hi[1] <= lo[1]:
                continue
            order = [sorted((a, b), key=lambda n: extents[n][0][k] + extents[n][1][k]) for k in (0, 1)]
            gaps = [(int(np.ceil(extents[f][1][k])), int(np.floor(extents[s][0][k]))) for k, (f, s) in enumerate(order)]
            # an axis the landmarks leave a gap on first, then the thinner overlap
            k = min((0, 1), key=lambda k: (gaps[k][0] > gaps[k][1], hi[k] - lo[k]))
            cut = (lo[k] + hi[k]) // 2
            if gaps[k][0] <= gaps[k][1]:
                cut = min(max(cut, gaps[k][0]), gaps[k][1])
            first, second = order[k]
            out[first][k + 2], out[second][k] = cut, cut
    return {n: tuple(int(v) for v in b) for n, b in out.items()}
