"""A donor's contour kept for the next patient (condition/reuse.py): never stale, bounded, same bytes."""
import numpy as np
import pytest

from palsysim.bench.pipeline import sample_faces
from palsysim.condition import codc
from palsysim.condition.reuse import DonorResults
from palsysim.face.landmarks import face_landmarks


@pytest.fixture(scope="module")
def pair():
    patient, donor = sample_faces(512)
    return patient, face_landmarks(patient).xy, donor, face_landmarks(donor).xy


def _fresh(donor, d_xy, boxes, *args):
    """The contour made without the cache, as the first run makes it."""
    return codc._contour(donor, d_xy, boxes, *(args or ("canny", codc.LOW, codc.HIGH, 0.0, codc.ANNOTATOR)))


def test_the_same_donor_again_gets_the_kept_contour_and_the_same_condition(pair):
    patient, p_xy, donor, d_xy = pair
    codc.CONTOURS_KEPT.clear()
    first, organs = codc.codc_condition(patient, p_xy, donor, d_xy)
    kept = codc.donor_contour(donor, d_xy, organs.donor_boxes)
    assert codc.donor_contour(donor.copy(), d_xy.copy(), organs.donor_boxes) is kept  # same bytes, new arrays
    assert not kept.flags.writeable
    assert np.array_equal(kept, _fresh(donor, d_xy, organs.donor_boxes))
    again, _ = codc.codc_condition(patient, p_xy, donor, d_xy)
    assert again.tobytes() == first.tobytes()
    float_donor = donor.astype(np.float32) / 255  # as the ComfyUI node passes it: kept under its own bytes
    assert np.array_equal(codc.donor_contour(float_donor, d_xy, organs.donor_boxes), kept)


def test_a_changed_donor_or_setting_gets_a_new_contour(pair):
    patient, p_xy, donor, d_xy = pair
    boxes = codc.organ_boxes(d_xy, donor.shape[:2])
    kept = codc.donor_contour(donor, d_xy, boxes)
    edited = donor.copy()
    edited[200:260, 20:80] = 255  # a patch on the cheek: new edges
    got = codc.donor_contour(edited, d_xy, boxes)
    assert np.array_equal(got, _fresh(edited, d_xy, boxes)) and not np.array_equal(got, kept)
    wider = codc.organ_boxes(d_xy, donor.shape[:2], eye_margin=0.3)
    assert np.array_equal(codc.donor_contour(donor, d_xy, wider), _fresh(donor, d_xy, wider))
    moved = d_xy + 2.0  # the oval follows the landmarks, the boxes given stay
    oval = ("oval", codc.LOW, codc.HIGH, 0.0, codc.ANNOTATOR)
    assert np.array_equal(codc.donor_contour(donor, moved, boxes, *oval), _fresh(donor, moved, boxes, *oval))
    for args in (("canny", 50.0, 120.0, 0.0, codc.ANNOTATOR), ("canny", codc.LOW, codc.HIGH, 1.0, codc.ANNOTATOR),
                 ("canny", codc.LOW, codc.HIGH, 0.0, "grey_l2"), ("oval", codc.LOW, codc.HIGH, 0.0, codc.ANNOTATOR)):
        assert np.array_equal(codc.donor_contour(donor, d_xy, boxes, *args), _fresh(donor, d_xy, boxes, *args)), args
    # the caller's array changed in place after the call: the kept copy is not it
    codc.donor_contour(edited, d_xy, boxes)
    edited[200:260, 20:80] = donor[200:260, 20:80]
    assert np.array_equal(codc.donor_contour(edited, d_xy, boxes), kept)


def test_what_is_kept_is_bounded():
    made = []

    def make(value):
        made.append(value)
        return np.full((4, 4), value, np.uint8)

    kept = DonorResults(max_items=2, max_bytes=200)
    donors = [(np.full((4, 4, 3), v, np.uint8), np.full((478, 2), v)) for v in range(3)]  # 48 + 16 bytes each
    for v, (d, xy) in enumerate(donors):
        kept.get(d, xy, "s", lambda: make(v))
    assert len(kept) == 2 and made == [0, 1, 2]
    kept.get(*donors[0], "s", lambda: make(0))  # the oldest went first
    assert made == [0, 1, 2, 0]
    kept.get(*donors[0], "s", lambda: make(0))
    assert made == [0, 1, 2, 0]
    big = np.zeros((10, 10, 3), np.uint8)  # 300 bytes: over max_bytes alone, made every time
    kept.get(big, donors[0][1], "s", lambda: make(9))
    kept.get(big, donors[0][1], "s", lambda: make(9))
    assert made[-2:] == [9, 9] and len(kept) == 2
    small = DonorResults(max_items=8, max_bytes=130)  # room for eight by count, for two by bytes
    for v, (d, xy) in enumerate(donors):
        small.get(d, xy, "s", lambda: make(v))
    assert len(small) == 2
