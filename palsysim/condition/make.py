"""One condition image from photos, as the CLI writes it and the demo and thumbnails show it: PF or
CODC, both faces first face-cropped like a dataset image (facecrop.py), then codc.py's placement.
"""
from ..base.errors import InputError
from .codc import codc_condition
from .edges import ANNOTATOR, HIGH, LOW
from .facecrop import crop_points, face_crop, pf_condition


def make_condition(image, xy, mode="codc", donor_image=None, donor_xy=None, size=512, contour="canny",
                   low_threshold=LOW, high_threshold=HIGH, blur_sigma=0.0, convention=ANNOTATOR, rest_xy=None,
                   **margins):
    """One condition image, the form training caches and the CLI writes -> (S, S) uint8 0/255.

    mode "pf": Canny of the patient's face crop; "codc": the patient's organs on the donor's
    contour, both faces first cropped like a dataset image. size: the square crop's side S;
    0 keeps the photos as they are (PF then edges the whole photo, CODC takes the donor's size).
    rest_xy (codc): the patient's (478, 2) landmarks on their rest photo, in that photo's pixels
    (uncropped is fine), so that every expression of the patient gets the same organ scales.
    """
    return make_codc(image, xy, mode, donor_image, donor_xy, size, contour, low_threshold, high_threshold,
                     blur_sigma, convention, rest_xy, **margins)[0]


def make_codc(image, xy, mode="codc", donor_image=None, donor_xy=None, size=512, contour="canny",
              low_threshold=LOW, high_threshold=HIGH, blur_sigma=0.0, convention=ANNOTATOR, rest_xy=None, **margins):
    """make_condition, also returning what was done: -> (condition (S, S) uint8, Organs or None for pf)."""
    edge = dict(low_threshold=low_threshold, high_threshold=high_threshold, blur_sigma=blur_sigma,
                convention=convention)
    if mode == "pf":
        return pf_condition(image, xy, size, **edge), None
    if mode != "codc":
        raise InputError(f"unknown condition mode {mode!r}: use pf or codc")
    donor_image, donor_xy = codc_donor(donor_image, donor_xy, size)
    if size:
        image, m = face_crop(image, xy, size)
        xy = crop_points(xy, m)
    return codc_condition(image, xy, donor_image, donor_xy, contour, **edge, rest_xy=rest_xy, **margins)


def codc_donor(donor_image, donor_xy, size):
    """The donor as a CODC condition takes it: (image, (478, 2)) face-cropped to (size, size) like a dataset
    image, or as it is for size 0; refused when missing."""
    if donor_image is None or donor_xy is None:
        raise InputError("the codc condition needs a donor photo (a healthy, consenting non-patient face)")
    if not size:
        return donor_image, donor_xy
    donor_image, m = face_crop(donor_image, donor_xy, size)
    return donor_image, crop_points(donor_xy, m)
