"""CODC: contour-guided and organ-size deformation conditioning, and the plain PF condition.

The privacy step of the method: boxes around each eye with its brow, the nose and the mouth of the
patient are cropped, Canny-edged at the size of the donor's matching box and placed on the donor's
face contour. The organs keep the patient's pathology; the contour, the organ sizes and the layout
are the donor's, so the condition no longer carries the patient's face outline.

Left/right differences survive: both eyes share one scale and keep the patient's vertical offset
(scaled to the donor), and each organ's content, mouth corners included, moves rigidly with its box.

All coordinates are pixels, x right and y down, continuous (pixel i spans [i, i + 1)); boxes are
integer (x0, y0, x1, y1) with x1, y1 exclusive. Sides are the subject's (regions.py).
"""
from dataclasses import dataclass

import cv2
import numpy as np

from . import regions as R
from .draw import COLOURS
from .edges import HIGH, LOW, canny
from .images import InputError, to_rgb_uint8

EYE_MARGIN, NOSE_MARGIN, MOUTH_MARGIN = 0.12, 0.08, 0.12  # in inter-pupil distances
FACE_MARGIN = 0.25  # face crop: fraction of the face oval's larger side added on each side
ORGAN_NAMES = ("right_eye", "left_eye", "nose", "mouth")
CONTOURS = ("canny", "oval")


def _ipd(xy):
    return float(np.hypot(*(xy[R.PUPIL["left"]] - xy[R.PUPIL["right"]])))


def _box(centre, size):
    x0, y0 = int(round(centre[0] - size[0] / 2.0)), int(round(centre[1] - size[1] / 2.0))
    return (x0, y0, x0 + int(size[0]), y0 + int(size[1]))


def _centre(box):
    return np.array([(box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0])


def _size(box):
    return np.array([box[2] - box[0], box[3] - box[1]], dtype=np.float64)


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
    ext = {n: (xy[list(R.ORGANS[n])].min(0), xy[list(R.ORGANS[n])].max(0)) for n in ORGAN_NAMES}
    eye_size = np.maximum(*(ext[n][1] - ext[n][0] for n in ("right_eye", "left_eye"))) + 2 * eye_margin * ipd
    boxes = {n: _box((ext[n][0] + ext[n][1]) / 2.0, np.ceil(eye_size)) for n in ("right_eye", "left_eye")}
    for n, m in (("nose", nose_margin), ("mouth", mouth_margin)):
        boxes[n] = _box((ext[n][0] + ext[n][1]) / 2.0, np.ceil(ext[n][1] - ext[n][0] + 2 * m * ipd))
    if image_size is not None:
        h, w = image_size[:2]
        for n, (x0, y0, x1, y1) in boxes.items():
            if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
                raise InputError(
                    f"the {n.replace('_', ' ')} box of {what} ({x0},{y0})-({x1},{y1}) reaches outside the {w}x{h} "
                    f"image: the face is at the border; use a photo with the whole face and some space around "
                    f"it, or smaller margins")
    return boxes


def _affine(src, dst):
    """(2, 3) matrix taking box src onto box dst (per-axis scale, then shift)."""
    s = _size(dst) / _size(src)
    return np.array([[s[0], 0.0, dst[0] - src[0] * s[0]], [0.0, s[1], dst[1] - src[1] * s[1]]])


def transform_points(xy, matrix):
    """(N, 2) points through a (2, 3) affine matrix -> (N, 2)."""
    xy = np.asarray(xy, dtype=np.float64)[:, :2]
    return xy @ np.asarray(matrix)[:, :2].T + np.asarray(matrix)[:, 2]


def target_boxes(boxes, donor_boxes):
    """Where the patient's organs go in the donor's image: {name: box}, each the donor's box size.

    The nose and the mouth take the donor's box. The eyes keep their pair centre on the donor's, their
    horizontal spacing the donor's, and their vertical offset the patient's, scaled by the eye-box
    height ratio (the same scale their content gets), so one brow or eye lower than the other stays so.
    """
    out = {n: donor_boxes[n] for n in ("nose", "mouth")}
    c = {n: _centre(boxes[n]) for n in ("right_eye", "left_eye")}
    d = {n: _centre(donor_boxes[n]) for n in ("right_eye", "left_eye")}
    mid_p, mid_d = (c["right_eye"] + c["left_eye"]) / 2.0, (d["right_eye"] + d["left_eye"]) / 2.0
    span_p = c["left_eye"][0] - c["right_eye"][0]
    span_d = d["left_eye"][0] - d["right_eye"][0]
    sy = _size(donor_boxes["right_eye"])[1] / _size(boxes["right_eye"])[1]
    for n in ("right_eye", "left_eye"):
        off = c[n] - mid_p
        out[n] = _box(mid_d + np.array([off[0] * span_d / span_p, off[1] * sy]), _size(donor_boxes[n]))
    return out


@dataclass(frozen=True)
class Organ:
    """One patient organ, ready to place.

    edges: (h, w) uint8 0/255 at the target box's size. source_box: in the patient's pixels;
    target_box: in the condition's (donor's) pixels; matrix: (2, 3) patient pixels -> condition pixels.
    """
    name: str
    edges: np.ndarray
    source_box: tuple
    target_box: tuple
    matrix: np.ndarray


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

    def map_landmarks(self, xy):
        """Patient (478, 2) pixels -> (478, 2) condition pixels; NaN for points outside every organ."""
        xy = np.asarray(xy, dtype=np.float64)[:, :2]
        out = np.full_like(xy, np.nan)
        for o in self.organs:
            idx = list(R.ORGANS[o.name])
            out[idx] = transform_points(xy[idx], o.matrix)
        return out


def _resample(image, box, size):
    """Crop box of image and resize it to size (w, h): area averaging down, bilinear up."""
    crop = image[box[1]:box[3], box[0]:box[2]]
    shrink = size[0] < crop.shape[1] or size[1] < crop.shape[0]
    return cv2.resize(crop, (int(size[0]), int(size[1])), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def organ_crop_resize(image, xy, donor_xy, donor_size, eye_margin=EYE_MARGIN, nose_margin=NOSE_MARGIN,
                      mouth_margin=MOUTH_MARGIN, low_threshold=LOW, high_threshold=HIGH, blur_sigma=0.0,
                      what="patient", donor_what="donor"):
    """Patient organs cropped, edged at the donor's organ sizes and given their place in the donor's image.

    image: patient (H, W, C); xy: its (478, 2) landmarks; donor_xy: the donor's (478, 2);
    donor_size: the donor image's (H, W). Returns Organs.
    Each crop is resampled to its target size first and edged there, so the edges are one pixel
    wide at the condition's resolution (resizing a binary edge map breaks or thickens its lines).
    """
    rgb = to_rgb_uint8(image, what)
    margins = dict(eye_margin=eye_margin, nose_margin=nose_margin, mouth_margin=mouth_margin)
    boxes = organ_boxes(xy, rgb.shape[:2], what=what, **margins)
    donor_boxes = organ_boxes(donor_xy, donor_size, what=donor_what, **margins)
    targets = target_boxes(boxes, donor_boxes)
    organs = []
    for n in ORGAN_NAMES:
        size = _size(targets[n]).astype(int)
        # Enlarging spreads each edge over more pixels and lowers its gradient by the scale, so
        # the thresholds follow: an edge is kept or dropped as it would be in the patient's photo.
        gain = min(1.0, 1.0 / float(np.sqrt(np.prod(size / _size(boxes[n])))))
        edges = canny(_resample(rgb, boxes[n], size), low_threshold * gain, high_threshold * gain, blur_sigma)
        organs.append(Organ(n, edges, boxes[n], targets[n], _affine(boxes[n], targets[n])))
    return Organs(tuple(organs), tuple(donor_size[:2]), rgb.shape[:2], donor_boxes)


def donor_contour(donor_image, donor_xy, donor_boxes, mode="canny", low_threshold=LOW, high_threshold=HIGH,
                  blur_sigma=0.0):
    """The donor's face without its organs: (H, W) uint8 0/255.

    mode "canny": the donor photo's edges with its organ boxes cleared; "oval": only its face oval
    (jaw and forehead line) drawn from the landmarks, nothing of the background.
    """
    rgb = to_rgb_uint8(donor_image, "donor image")
    if mode == "canny":
        out = canny(rgb, low_threshold, high_threshold, blur_sigma).copy()
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
                   blur_sigma=0.0, **margins):
    """The CODC condition: patient (H, W, C) + (478, 2), donor (H', W', C) + (478, 2) -> ((H', W') uint8, Organs)."""
    donor = to_rgb_uint8(donor_image, "donor image")
    edge = dict(low_threshold=low_threshold, high_threshold=high_threshold, blur_sigma=blur_sigma)
    organs = organ_crop_resize(image, xy, donor_xy, donor.shape[:2], **edge, **margins)
    return reposition(organs, donor_contour(donor, donor_xy, organs.donor_boxes, contour, **edge)), organs


def face_box(xy, margin=FACE_MARGIN):
    """Square (x0, y0, x1, y1) around the face oval, centred on it, its larger side grown by margin each side."""
    pts = np.asarray(xy, dtype=np.float64)[list(R.FACE_OVAL), :2]
    lo, hi = pts.min(0), pts.max(0)
    side = int(np.ceil((hi - lo).max() * (1 + 2 * margin)))
    return _box((lo + hi) / 2.0, (side, side))


def face_crop(image, xy, size=512, margin=FACE_MARGIN):
    """Landmark-based square face crop, the dataset convention: (H, W, C) -> ((size, size, 3) uint8, (2, 3) matrix).

    The matrix takes the photo's pixels to the crop's (see transform_points). Parts of the square
    beyond the photo repeat its border pixels, which adds no edges.
    """
    rgb = to_rgb_uint8(image)
    box = face_box(xy, margin)
    h, w = rgb.shape[:2]
    pad = max(0, -box[0], -box[1], box[2] - w, box[3] - h)
    if pad:
        rgb = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    shifted = (box[0] + pad, box[1] + pad, box[2] + pad, box[3] + pad)
    return _resample(rgb, shifted, (size, size)), _affine(box, (0, 0, size, size))


def crop_face(face, matrix, size):
    """A Face carried through a face_crop: same points in the crop's pixels (depth scaled alike)."""
    from .landmarks import Face
    pts = np.asarray(face.points, dtype=np.float64).copy()
    pts[:, :2] = transform_points(pts, matrix)
    pts[:, 2] *= matrix[0][0]
    return Face(pts.astype(np.float32), (int(size), int(size)), face.face_index, face.faces_found)


def pf_photo(image, xy, size=512, margin=FACE_MARGIN):
    """What the PF condition edges: the (size, size, 3) face crop; size 0: the whole photo (H, W, 3). uint8."""
    return face_crop(image, xy, size, margin)[0] if size else to_rgb_uint8(image)


def pf_condition(image, xy, size=512, margin=FACE_MARGIN, low_threshold=LOW, high_threshold=HIGH, blur_sigma=0.0):
    """The PF condition: Canny of the patient's face crop -> (size, size) uint8 0/255; size 0: the whole photo."""
    return canny(pf_photo(image, xy, size, margin), low_threshold, high_threshold, blur_sigma)


def pf_preview(image, xy, condition, size=512, margin=FACE_MARGIN):
    """The PF condition's edges over the dimmed photo they came from -> uint8 (condition's size, 3)."""
    return edges_over(pf_photo(image, xy, size, margin), condition)


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


def edges_over(photo, edges):
    """White edges over the dimmed photo of the same size -> (H, W, 3) uint8."""
    canvas = (to_rgb_uint8(photo).astype(np.float32) * 0.45).astype(np.uint8)
    canvas[edges > 0] = (255, 255, 255)
    return canvas


def condition_preview(donor_image, condition, organs):
    """Condition edges over the dimmed donor photo, target boxes drawn -> (H, W, 3) uint8."""
    canvas = edges_over(donor_image, condition)
    t = max(1, round(max(canvas.shape[:2]) / 400))
    return _draw_boxes(canvas, {o.name: o.target_box for o in organs.organs}, t)


def make_condition(image, xy, mode="codc", donor_image=None, donor_xy=None, size=512, contour="canny",
                   low_threshold=LOW, high_threshold=HIGH, blur_sigma=0.0, **margins):
    """One condition image, the form training caches and the CLI writes -> (S, S) uint8 0/255.

    mode "pf": Canny of the patient's face crop; "codc": the patient's organs on the donor's
    contour, both faces first cropped like a dataset image. size: the square crop's side S;
    0 keeps the photos as they are (PF then edges the whole photo, CODC takes the donor's size).
    """
    edge = dict(low_threshold=low_threshold, high_threshold=high_threshold, blur_sigma=blur_sigma)
    if mode == "pf":
        return pf_condition(image, xy, size, **edge)
    if mode != "codc":
        raise InputError(f"unknown condition mode {mode!r}: use pf or codc")
    if donor_image is None or donor_xy is None:
        raise InputError("the codc condition needs a donor photo (a healthy, consenting non-patient face)")
    if size:
        image, m = face_crop(image, xy, size)
        xy = transform_points(xy, m)
        donor_image, m = face_crop(donor_image, donor_xy, size)
        donor_xy = transform_points(donor_xy, m)
    return codc_condition(image, xy, donor_image, donor_xy, contour, **edge, **margins)[0]
