"""The face crop every stage shares (the dataset convention), and the PF condition made from it.

A square around the face oval, grown by FACE_MARGIN on each side, resampled to size x size; its
matrix carries landmarks into the crop. PF (the paper's Method 1) is the Canny of that crop.
CODC (codc.py) crops the same way and places organs with the same box and point helpers.

All coordinates are pixels, x right and y down, continuous (pixel i spans [i, i + 1)); boxes are
integer (x0, y0, x1, y1) with x1, y1 exclusive.
"""
import cv2
import numpy as np

from ..base.photos import to_rgb_uint8
from ..face import regions as R
from .edges import ANNOTATOR, HIGH, LOW, canny

FACE_MARGIN = 0.25  # face crop: fraction of the face oval's larger side added on each side


def box_at(centre, size):
    """Integer (x0, y0, x1, y1) of the given (w, h) centred on centre (x, y)."""
    x0, y0 = int(round(centre[0] - size[0] / 2.0)), int(round(centre[1] - size[1] / 2.0))
    return (x0, y0, x0 + int(size[0]), y0 + int(size[1]))


def _box_size(box):
    return np.array([box[2] - box[0], box[3] - box[1]], dtype=np.float64)


def _affine(src, dst):
    """(2, 3) matrix taking box src onto box dst (per-axis scale, then shift)."""
    s = _box_size(dst) / _box_size(src)
    return np.array([[s[0], 0.0, dst[0] - src[0] * s[0]], [0.0, s[1], dst[1] - src[1] * s[1]]])


def transform_points(xy, matrix):
    """(N, 2) points through a (2, 3) affine matrix -> (N, 2)."""
    xy = np.asarray(xy, dtype=np.float64)[:, :2]
    return xy @ np.asarray(matrix)[:, :2].T + np.asarray(matrix)[:, 2]


def _resample(image, box, size):
    """Crop box of image and resize it to size (w, h): area averaging down, bilinear up."""
    crop = image[box[1]:box[3], box[0]:box[2]]
    shrink = size[0] < crop.shape[1] or size[1] < crop.shape[0]
    return cv2.resize(crop, (int(size[0]), int(size[1])), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def face_box(xy, margin=FACE_MARGIN):
    """Square (x0, y0, x1, y1) around the face oval, centred on it, its larger side grown by margin each side."""
    pts = np.asarray(xy, dtype=np.float64)[list(R.FACE_OVAL), :2]
    lo, hi = pts.min(0), pts.max(0)
    side = int(np.ceil((hi - lo).max() * (1 + 2 * margin)))
    return box_at((lo + hi) / 2.0, (side, side))


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


def crop_points(xy, matrix):
    """(N, 2) photo points -> (N, 2) float32 points in a face_crop's pixels, as a Face holds them.

    float32 like crop_face's, so that the CLI and the nodes (which pass Faces) place organs on the
    same sub-pixel and give the same condition bytes.
    """
    return transform_points(xy, matrix).astype(np.float32)


def crop_face(face, matrix, size):
    """A Face carried through a face_crop: same points in the crop's pixels (depth scaled alike)."""
    from ..face.landmarks import Face
    pts = np.asarray(face.points, dtype=np.float32).copy()
    pts[:, :2] = crop_points(pts, matrix)
    pts[:, 2] *= matrix[0][0]
    return Face(pts, (int(size), int(size)), face.face_index, face.faces_found)


def pf_photo(image, xy, size=512, margin=FACE_MARGIN):
    """What the PF condition edges: the (size, size, 3) face crop; size 0: the whole photo (H, W, 3). uint8."""
    return face_crop(image, xy, size, margin)[0] if size else to_rgb_uint8(image)


def pf_condition(image, xy, size=512, margin=FACE_MARGIN, low_threshold=LOW, high_threshold=HIGH, blur_sigma=0.0,
                 convention=ANNOTATOR):
    """The PF condition: Canny of the patient's face crop -> (size, size) uint8 0/255; size 0: the whole photo."""
    return canny(pf_photo(image, xy, size, margin), low_threshold, high_threshold, blur_sigma, convention=convention)


def pf_preview(image, xy, condition, size=512, margin=FACE_MARGIN):
    """The PF condition's edges over the dimmed photo they came from -> uint8 (condition's size, 3)."""
    return edges_over(pf_photo(image, xy, size, margin), condition)


def edges_over(photo, edges):
    """White edges over the dimmed photo of the same size -> (H, W, 3) uint8."""
    canvas = (to_rgb_uint8(photo).astype(np.float32) * 0.45).astype(np.uint8)
    canvas[edges > 0] = (255, 255, 255)
    return canvas
