"""CODC: contour-guided and organ-size deformation conditioning (the plain PF condition and the face
crop both share are facecrop.py's; a whole condition from photos is conditions.py's).

The privacy step of the method: boxes around each eye with its brow, the nose and the mouth of the
patient are cropped, scaled, Canny-edged at their new size and placed on the donor's face contour.
The organs keep the patient's pathology and expression; the contour, the organ sizes and the layout
are the donor's, so the condition no longer carries the patient's face outline.

Organ-size deformation keeps the expression: each organ is scaled isotropically (one factor, aspect
ratio kept) by the facial-scale ratio, donor inter-pupil distance over the patient's (the paper's
rule); organ_size "rest" also scales by the donor's organ size over the patient's at rest.

Placement follows the donor's layout (issue 24): each organ's anchor (pupil, nose tip, the mouth
corners' midpoint) lands on the donor's own, moved by as much as the patient's moved from their rest
photo (in face units, times the facial scale) where the rest photo is known, so that what an
expression moves still moves while the eye-to-mouth proportion, an identity cue, is the donor's.
Each organ turns with the pupil line from the patient's head tilt to the donor's, so every left/right
measure read inside an organ in the face frame is the patient's; the commissure height, read from the
pupil line, keeps its left/right difference but follows the donor's mouth height. Organ boxes never
overlap: where two would, both are cut back to a shared edge (placement.py).

All coordinates are pixels, x right and y down, continuous (pixel i spans [i, i + 1)); boxes are
integer (x0, y0, x1, y1) with x1, y1 exclusive. Sides are the subject's (regions.py).
"""
from dataclasses import dataclass

import cv2
import numpy as np

from ..base.errors import InputError
from ..base.photos import to_rgb_uint8
from ..face import regions as R
from ..face.draw import COLOURS
from .edges import ANNOTATOR, HIGH, LOW, canny, check_edge_settings
from .facecrop import box_at, edges_over, transform_points
from .placement import organ_anchors, placements, separate
from .reuse import DonorResults

EYE_MARGIN, NOSE_MARGIN, MOUTH_MARGIN = 0.12, 0.08, 0.12  # in inter-pupil distances
ORGAN_NAMES = ("right_eye", "left_eye", "nose", "mouth")
CONTOURS = ("canny", "oval")
# Organ sizes: "face" scales every organ by the facial-scale ratio (donor IPD / patient IPD, the
# paper's rule); "rest" also by the donor's organ size over the patient's at rest.
ORGAN_SIZES = ("face", "rest")
MAX_REST_RATIO = 3.0  # donor organ size over the patient's rest one, in IPD units: beyond, not the same face
# The contours of the last few donors: one donor serves many patients (reuse.py).
CONTOURS_KEPT = DonorResults()
# Each organ's landmark indices as an array once: indexing with the list converted it on every call.
_INDEX = {n: np.array(R.ORGANS[n]) for n in ORGAN_NAMES}
# All four organs' indices end to end, and where each starts: their extents in one reduceat each.
_ALL = np.concatenate([_INDEX[n] for n in ORGAN_NAMES])
_STARTS = np.cumsum([0] + [len(_INDEX[n]) for n in ORGAN_NAMES[:-1]])


def _ipd(xy):
    return float(np.hypot(*(xy[R.PUPIL["left"]] - xy[R.PUPIL["right"]])))


def organ_boxes(xy, image_size=None, eye_margin=EYE_MARGIN, nose_margin=NOSE_MARGIN,
                mouth_margin=MOUTH_MARGIN, what="image"):
    """Organ boxes of one face.

    xy: (478, 2) pixels. Margins in inter-pupil distances, added on every side. image_size:
    (H, W); when given, a box reaching outside the image is an InputError (a face at the border).
    Returns {name: (x0, y0, x1, y1)} for right_eye, left_eye (eye with brow), nose and mouth. The two
    eye boxes have one size (the larger eye's), so a droop on one side changes positions, not sizes.
    """
    xy = np.asarray(xy, dtype=np.float64)[:, :2]
    ipd = _ipd(xy)
    if not np.isfinite(ipd) or ipd < 1.0:
        raise InputError(f"the landmarks of {what} are degenerate (pupils {ipd:.2f} px apart): detect the face again")
    points = xy[_ALL]
    ext = dict(zip(ORGAN_NAMES, zip(np.minimum.reduceat(points, _STARTS), np.maximum.reduceat(points, _STARTS))))
    eye_size = np.maximum(*(ext[n][1] - ext[n][0] for n in ("right_eye", "left_eye"))) + 2 * eye_margin * ipd
    boxes = {n: box_at((ext[n][0] + ext[n][1]) / 2.0, np.ceil(eye_size)) for n in ("right_eye", "left_eye")}
    for n, m in (("nose", nose_margin), ("mouth", mouth_margin)):
        boxes[n] = box_at((ext[n][0] + ext[n][1]) / 2.0, np.ceil(ext[n][1] - ext[n][0] + 2 * m * ipd))
    if image_size is not None:
        h, w = image_size[:2]
        for n, (x0, y0, x1, y1) in boxes.items():
            if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
                raise InputError(
                    f"the {n.replace('_', ' ')} box of {what} ({x0},{y0})-({x1},{y1}) reaches outside the {w}x{h} "
                    f"image: the face is at the border; use a photo with the whole face and some space around "
                    f"it, or smaller margins")
    return boxes


def organ_sizes(xy):
    """Each organ's size in inter-pupil distances: {name: sqrt(width * height) of its landmarks' extent}.

    xy: (478, 2) pixels. The two eyes (with brows) get one size, their mean, as they get one scale.
    """
    xy = np.asarray(xy, dtype=np.float64)[:, :2]
    ipd = _ipd(xy)
    out = {}
    for n in ORGAN_NAMES:
        pts = xy[_INDEX[n]]
        out[n] = float(np.sqrt(np.prod(np.maximum(pts.max(0) - pts.min(0), 1e-6)))) / ipd
    out["right_eye"] = out["left_eye"] = (out["right_eye"] + out["left_eye"]) / 2.0
    return out


def organ_scales(xy, donor_xy, ratios):
    """Isotropic scale of each organ, patient pixels -> condition pixels: {name: float}.

    xy: the patient's (478, 2) landmarks on this photo; donor_xy: the donor's; ratios:
    rest_ratios(). Scale = face scale (donor IPD / patient IPD) x donor organ size / patient rest
    organ size (both in IPD units; 1 without a rest photo).
    """
    face = _ipd(np.asarray(donor_xy, dtype=np.float64)[:, :2]) / _ipd(np.asarray(xy, dtype=np.float64)[:, :2])
    return {n: face * ratio for n, ratio in ratios.items()}


def organ_ratios(donor_xy, rest_xy, organ_size="face", what="patient"):
    """rest_ratios for organ_size "rest"; all 1 (the face scale alone, the default) for "face". A rest
    photo is checked to be of this face either way: it also gives each organ's move from rest."""
    if organ_size not in ORGAN_SIZES:
        raise InputError(f"unknown organ size rule {organ_size!r}: use one of {', '.join(ORGAN_SIZES)}")
    ratios = rest_ratios(donor_xy, rest_xy, what)
    return ratios if organ_size == "rest" else {n: 1.0 for n in ratios}


def rest_ratios(donor_xy, rest_xy, what="patient"):
    """Donor organ size over the patient's rest organ size (IPD units), {name: float}; 1 without rest_xy.

    rest_xy: the patient's (478, 2) landmarks on their rest photo (any size or crop: sizes are read
    in inter-pupil distances). The same for every photo of one patient against one donor.
    """
    if rest_xy is None:
        return {n: 1.0 for n in ORGAN_NAMES}
    donor, rest = organ_sizes(donor_xy), organ_sizes(rest_xy)
    out = {}
    for n in ORGAN_NAMES:
        out[n] = donor[n] / rest[n]
        if not 1.0 / MAX_REST_RATIO <= out[n] <= MAX_REST_RATIO:
            raise InputError(f"the {n.replace('_', ' ')} of {what}'s rest photo is {1 / out[n]:.2f} times the donor's "
                             f"(relative to the pupils): the rest landmarks are not of this face; connect the "
                             f"landmarks of the same patient's rest photo")
    return out


def _bounds(box, matrix):
    """Integer box holding box carried through matrix (its corners' floor and ceiling)."""
    x0, y0, x1, y1 = box
    corners = transform_points(np.array([(x0, y0), (x1, y1), (x0, y1), (x1, y0)], dtype=np.float64), matrix)
    x0, y0 = np.floor(corners.min(0) + 1e-6).astype(int).tolist()
    x1, y1 = np.ceil(corners.max(0) - 1e-6).astype(int).tolist()
    return (x0, y0, max(x1, x0 + 1), max(y1, y0 + 1))


@dataclass(frozen=True)
class Organ:
    """One patient organ, ready to place.

    edges: (h, w) uint8 0/255 at the target box's size. source_box: in the patient's pixels;
    target_box: in the condition's (donor's) pixels; matrix: (2, 3) patient pixels -> condition pixels;
    scale: the organ's isotropic factor (the matrix's, bar rounding the box to whole pixels).
    """
    name: str
    edges: np.ndarray
    source_box: tuple
    target_box: tuple
    matrix: np.ndarray
    scale: float
    anchor_offset: tuple  # (dx, dy) of the placed anchor from the donor's own, in donor IPD


@dataclass(frozen=True)
class Organs:
    """A patient's organs for one donor (the PALSY_ORGANS socket carries a list of these, one per image).

    size: (H, W) of the condition = the donor's image; source_size: the patient's (H, W);
    donor_boxes: the donor's own organ boxes, whose edges the condition drops.
    """
    organs: tuple
    size: tuple
    source_size: tuple
    donor_boxes: dict

    def __getitem__(self, name):
        return next(o for o in self.organs if o.name == name)

    def to_json(self):
        """What was done, per organ: patient box, donor box, scale and placed box (x0, y0, x1, y1 pixels)."""
        return {"size": list(self.size), "source_size": list(self.source_size),
                "organs": {o.name: {"patient_box": list(o.source_box), "donor_box": list(self.donor_boxes[o.name]),
                                    "scale": round(o.scale, 6), "placed_box": list(o.target_box),
                                    "anchor_offset_ipd": [round(v, 6) for v in o.anchor_offset]}
                           for o in self.organs}}

    def map_landmarks(self, xy):
        """Patient (478, 2) pixels -> (478, 2) condition pixels; NaN for points outside every organ."""
        xy = np.asarray(xy, dtype=np.float64)[:, :2]
        out = np.full_like(xy, np.nan)
        for o in self.organs:
            out[_INDEX[o.name]] = transform_points(xy[_INDEX[o.name]], o.matrix)
        return out


def _warp_into(image, matrix, box, source_box):
    """The photo carried through matrix, the pixels of box (condition pixels) -> (h, w, 3) uint8, sub-pixel exact.

    Linear sampling keeps the sub-pixel placement that the left/right measures need (half a pixel
    of pupil height turns a smile angle by 0.3 degrees). Shrinking by more than 2 would alias, so
    the source box is first area-averaged to the scale and the warp only places it.
    """
    m = np.asarray(matrix, dtype=np.float64).copy()
    # matrix takes continuous coordinates (pixel i spans [i, i + 1)); OpenCV's warp takes pixel
    # indices (centres): q + 0.5 = A (p + 0.5) + t
    m[:, 2] += 0.5 * m[:, :2].sum(1) - 0.5
    src = image
    if m[0, 0] < 0.5:
        h, w = image.shape[:2]
        pad = int(np.ceil(2.0 / m[0, 0]))
        x0, y0 = max(source_box[0] - pad, 0), max(source_box[1] - pad, 0)
        x1, y1 = min(source_box[2] + pad, w), min(source_box[3] + pad, h)
        size = (max(1, int(round((x1 - x0) * m[0, 0]))), max(1, int(round((y1 - y0) * m[0, 0]))))
        src = cv2.resize(image[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA)
        f = np.array([size[0] / (x1 - x0), size[1] / (y1 - y0)])
        # resize puts small pixel centre j at source (j + 0.5) / f - 0.5 (+ the crop's corner)
        to_source = np.array([[1 / f[0], 0.0, 0.5 / f[0] - 0.5 + x0], [0.0, 1 / f[1], 0.5 / f[1] - 0.5 + y0]])
        m = np.vstack([m, [0, 0, 1]]) @ np.vstack([to_source, [0, 0, 1]])
        m = m[:2]
    m[:, 2] -= box[:2]
    return cv2.warpAffine(src, m, (box[2] - box[0], box[3] - box[1]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def organ_crop_resize(image, xy, donor_xy, donor_size, eye_margin=EYE_MARGIN, nose_margin=NOSE_MARGIN,
                      mouth_margin=MOUTH_MARGIN, low_threshold=LOW, high_threshold=HIGH, blur_sigma=0.0,
                      what="patient", donor_what="donor", rest_xy=None, convention=ANNOTATOR, organ_size="face"):
    """Patient organs cropped, scaled to the donor's organ sizes, edged and given their place in the donor's image.

    image: patient (H, W, C); xy: its (478, 2) landmarks; donor_xy: the donor's (478, 2);
    donor_size: the donor image's (H, W); rest_xy: the patient's (478, 2) landmarks on their rest
    photo (any crop or size), or None for the face scale (rest_ratios). Returns Organs.
    Each crop is resampled to its target size first and edged there, so the edges are one pixel
    wide at the condition's resolution (resizing a binary edge map breaks or thickens its lines).
    """
    check_edge_settings(low_threshold, high_threshold, blur_sigma, convention)  # the user's values, before the gain
    margins = dict(eye_margin=eye_margin, nose_margin=nose_margin, mouth_margin=mouth_margin)
    donor_boxes = organ_boxes(donor_xy, donor_size, what=donor_what, **margins)
    return _place_organs(image, xy, donor_xy, donor_boxes, donor_size, margins, (low_threshold, high_threshold,
                         blur_sigma, convention), what, organ_ratios(donor_xy, rest_xy, organ_size, what),
                         rest_xy)


def _place_organs(image, xy, donor_xy, donor_boxes, donor_size, margins, edge, what, ratios, rest_xy=None):
    """organ_crop_resize once the donor's boxes and rest_ratios are known; edge: (low, high, blur_sigma, convention)."""
    low_threshold, high_threshold, blur_sigma, convention = edge
    rgb = to_rgb_uint8(image, what)
    xy = np.asarray(xy, dtype=np.float64)[:, :2]
    boxes = organ_boxes(xy, rgb.shape[:2], what=what, **margins)
    scales = organ_scales(xy, donor_xy, ratios)
    matrices = placements(xy, donor_xy, scales, rest_xy)
    anchors = {n: transform_points(a[None], matrices[n])[0] for n, a in organ_anchors(xy).items()}
    placed = {n: transform_points(xy[_INDEX[n]], matrices[n]) for n in ORGAN_NAMES}
    targets = separate({n: _bounds(boxes[n], matrices[n]) for n in ORGAN_NAMES},
                       {n: (p.min(0), p.max(0)) for n, p in placed.items()})
    donor_anchors, donor_ipd = organ_anchors(donor_xy), _ipd(np.asarray(donor_xy, dtype=np.float64)[:, :2])
    organs = []
    for n in ORGAN_NAMES:
        target = targets[n]
        # Enlarging spreads each edge over more pixels and lowers its gradient by the scale, so
        # the thresholds follow: an edge is kept or dropped as it would be in the patient's photo.
        # Shrinking averages pixels, and the thresholds hold at the condition's resolution.
        gain = min(1.0, 1.0 / scales[n])
        edges = canny(_warp_into(rgb, matrices[n], target, boxes[n]), low_threshold * gain, high_threshold * gain,
                      blur_sigma, convention=convention)
        organs.append(Organ(n, edges, boxes[n], target, matrices[n], scales[n],
                            tuple((anchors[n] - donor_anchors[n]) / donor_ipd)))
    return Organs(tuple(organs), tuple(donor_size[:2]), rgb.shape[:2], donor_boxes)


def donor_contour(donor_image, donor_xy, donor_boxes, mode="canny", low_threshold=LOW, high_threshold=HIGH,
                  blur_sigma=0.0, convention=ANNOTATOR):
    """The donor's face without its organs: (H, W) uint8 0/255, read-only (the same donor again gets the kept one).

    mode "canny": the donor photo's edges with its organ boxes cleared; "oval": only its face oval
    (jaw and forehead line) drawn from the landmarks, nothing of the background.
    """
    settings = (mode, float(low_threshold), float(high_threshold), float(blur_sigma), convention,
                tuple((n, tuple(int(v) for v in b)) for n, b in donor_boxes.items()))
    return CONTOURS_KEPT.get(donor_image, donor_xy, settings, lambda: _contour(
        donor_image, donor_xy, donor_boxes, mode, low_threshold, high_threshold, blur_sigma, convention))


def _contour(donor_image, donor_xy, donor_boxes, mode, low_threshold, high_threshold, blur_sigma, convention):
    rgb = to_rgb_uint8(donor_image, "donor image")
    if mode == "canny":
        out = canny(rgb, low_threshold, high_threshold, blur_sigma, convention=convention)
    elif mode == "oval":
        out = np.zeros(rgb.shape[:2], np.uint8)
        pts = np.round(np.asarray(donor_xy)[list(R.FACE_OVAL), :2]).astype(np.int32)
        cv2.polylines(out, [pts], True, 255, 1, cv2.LINE_8)
    else:
        raise InputError(f"unknown contour mode {mode!r}: use one of {', '.join(CONTOURS)}")
    for x0, y0, x1, y1 in donor_boxes.values():
        out[max(y0, 0):y1, max(x0, 0):x1] = 0
    return out


def reposition(organs, contour):
    """Patient organ edges placed on a donor contour (H, W) uint8 -> the condition, (H, W) uint8 0/255.

    Each target box is cleared first, so nothing of the donor's own organs shows through; where two
    boxes overlap, both organs' edges are kept.
    """
    if tuple(contour.shape[:2]) != tuple(organs.size):
        raise InputError(f"the donor image is {contour.shape[1]}x{contour.shape[0]} but the organs were sized for a "
                         f"{organs.size[1]}x{organs.size[0]} donor: connect the same donor image and landmarks")
    out = contour.copy()
    h, w = out.shape
    for o in organs.organs:
        x0, y0, x1, y1 = o.target_box
        out[max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)] = 0
    for o in organs.organs:
        x0, y0, x1, y1 = o.target_box
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if cx1 > cx0 and cy1 > cy0:
            patch = o.edges[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
            np.maximum(out[cy0:cy1, cx0:cx1], patch, out=out[cy0:cy1, cx0:cx1])
    return out


def codc_condition(image, xy, donor_image, donor_xy, contour="canny", low_threshold=LOW, high_threshold=HIGH,
                   blur_sigma=0.0, convention=ANNOTATOR, rest_xy=None, **margins):
    """The CODC condition: patient (H, W, C) + (478, 2), donor (H', W', C) + (478, 2) -> ((H', W') uint8, Organs).

    rest_xy: the patient's (478, 2) landmarks on their rest photo, or None (rest_ratios).
    """
    return codc_conditions([(image, xy)], donor_image, donor_xy, contour, low_threshold, high_threshold, blur_sigma,
                           convention, rest_xy, **margins)[0]


def codc_conditions(photos, donor_image, donor_xy, contour="canny", low_threshold=LOW, high_threshold=HIGH,
                    blur_sigma=0.0, convention=ANNOTATOR, rest_xy=None, eye_margin=EYE_MARGIN,
                    nose_margin=NOSE_MARGIN, mouth_margin=MOUTH_MARGIN, organ_size="face"):
    """codc_condition for many patient photos against one donor: [(image, xy), ...] -> [(condition, Organs), ...].

    The donor's organ boxes and contour edges are made once for all the photos (the contour's Canny
    is most of a condition's own time), the contour kept for the next call with this donor (reuse.py);
    each condition is byte for byte codc_condition's.
    """
    check_edge_settings(low_threshold, high_threshold, blur_sigma, convention)
    donor = to_rgb_uint8(donor_image, "donor image")
    margins = dict(eye_margin=eye_margin, nose_margin=nose_margin, mouth_margin=mouth_margin)
    donor_boxes = organ_boxes(donor_xy, donor.shape[:2], what="donor", **margins)
    edge = (low_threshold, high_threshold, blur_sigma, convention)
    ratios = organ_ratios(donor_xy, rest_xy, organ_size)
    organs = [_place_organs(image, xy, donor_xy, donor_boxes, donor.shape[:2], margins, edge, "patient", ratios, rest_xy)
              for image, xy in photos]
    edged = donor_contour(donor, donor_xy, donor_boxes, contour, low_threshold, high_threshold, blur_sigma, convention)
    return [(reposition(o, edged), o) for o in organs]


def pair_batches(n_patients, n_donors, what="donor"):
    """Donor index for each patient: one donor serves all, or one per patient; else a clear InputError."""
    if n_donors == 1:
        return [0] * n_patients
    if n_donors != n_patients:
        raise InputError(f"{n_patients} patient image(s) but {n_donors} {what}(s): give one {what} for all patients "
                         f"or exactly one per patient")
    return list(range(n_patients))


def _draw_boxes(canvas, boxes, thickness):
    colour = {"right_eye": COLOURS["eye"], "left_eye": COLOURS["eye"], "nose": COLOURS["nose"], "mouth": COLOURS["lips"]}
    for n, (x0, y0, x1, y1) in boxes.items():
        cv2.rectangle(canvas, (x0, y0), (x1 - 1, y1 - 1), colour[n], thickness)
    return canvas


def organs_preview(image, organs):
    """Patient photo with its organ boxes and, inside them, the edges that will be placed -> (H, W, 3) uint8."""
    canvas = to_rgb_uint8(image).copy()
    t = max(1, round(max(canvas.shape[:2]) / 400))
    for o in organs.organs:
        x0, y0, x1, y1 = o.source_box
        back = cv2.resize(o.edges, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST) > 0
        canvas[y0:y1, x0:x1][back] = (255, 255, 255)
    return _draw_boxes(canvas, {o.name: o.source_box for o in organs.organs}, t)


def condition_preview(donor_image, condition, organs):
    """Condition edges over the dimmed donor photo, target boxes drawn -> (H, W, 3) uint8."""
    canvas = edges_over(donor_image, condition)
    t = max(1, round(max(canvas.shape[:2]) / 400))
    return _draw_boxes(canvas, {o.name: o.target_box for o in organs.organs}, t)


