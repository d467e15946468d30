"""Conditions for an expression video: landmarks smoothed over time, one crop and one set of organ scales
for the whole sequence, so that PF and CODC conditions move only as the face moves.

Per frame, a still-photo pipeline would re-crop the face (the crop follows the jaw as the mouth
opens) and re-measure every organ (its scale follows the expression): both make the condition
jump between frames. Here the rest frame decides: the face crop is frame 0's (the first frame is
the rest frame unless the patient's rest photo is given) and the organ scales come from the rest
landmarks, so frame 0's condition is the still pipeline's and later frames differ from it only by
how the landmarks moved.
"""
import numpy as np

from ..base.errors import InputError
from ..face.landmarks import face_landmarks
from ..face.smoothing import BETA, D_CUTOFF, MIN_CUTOFF, one_euro
from .codc import codc_conditions
from .edges import ANNOTATOR, HIGH, LOW, canny, check_edge_settings
from .facecrop import face_crop, transform_points
from .make import codc_donor


def sequence_landmarks(frames, fps, min_cutoff=MIN_CUTOFF, beta=BETA, d_cutoff=D_CUTOFF, min_confidence=0.5,
                       backend="auto"):
    """Landmarks of every frame, raw and One-Euro smoothed: list of (H, W, 3) -> ((T, 478, 2), (T, 478, 2)) pixels.

    A frame without a face is an InputError naming the frame (a gap would make the filter jump).
    """
    raw = [face_landmarks(f, min_confidence=min_confidence, backend=backend, what=f"frame {t + 1} of {len(frames)}").xy
           for t, f in enumerate(frames)]
    raw = np.stack(raw).astype(np.float64)
    return raw, one_euro(raw, fps, min_cutoff, beta, d_cutoff)


def sequence_conditions(frames, xys, mode="codc", donor_image=None, donor_xy=None, rest_xy=None, size=512,
                        contour="canny", low_threshold=LOW, high_threshold=HIGH, blur_sigma=0.0,
                        convention=ANNOTATOR):
    """One condition per frame: frames (T of (H, W, 3)) + their (T, 478, 2) landmarks -> (conditions, organs).

    conditions: list of (S, S) uint8 0/255 (S = size; 0 keeps the frames' size for PF and the donor's
    for CODC); organs: per frame the codc.Organs placed (None for PF). rest_xy: the patient's rest
    landmarks for the organ scales (their rest photo's, any size), default frame 0's.
    """
    if len(frames) != len(xys) or not len(frames):
        raise InputError(f"{len(frames)} frames and {len(xys)} landmark sets: give one landmark set per frame")
    check_edge_settings(low_threshold, high_threshold, blur_sigma, convention)
    xys = np.asarray(xys, dtype=np.float64)[..., :2]
    if size:
        # Frame 0's crop box for every frame: the face moves inside a still frame, as it does in the video.
        crops = [face_crop(f, xys[0], size) for f in frames]
        frames = [c for c, _ in crops]
        xys = np.stack([transform_points(xy, m) for xy, (_, m) in zip(xys, crops)])
    if mode == "pf":
        return [canny(f, low_threshold, high_threshold, blur_sigma, convention=convention) for f in frames], \
            [None] * len(frames)
    if mode != "codc":
        raise InputError(f"unknown condition mode {mode!r}: use pf or codc")
    donor_image, donor_xy = codc_donor(donor_image, donor_xy, size)
    rest_xy = xys[0] if rest_xy is None else rest_xy
    placed = codc_conditions(list(zip(frames, xys)), donor_image, donor_xy, contour, low_threshold, high_threshold,
                             blur_sigma, convention, rest_xy)
    return [c for c, _ in placed], [o for _, o in placed]
