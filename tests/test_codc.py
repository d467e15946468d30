"""CODC preprocessing and the PF condition on real photographs (astronaut as patient, Grace Hopper as donor)."""
import os

import cv2
import numpy as np
import pytest
import torch
from cli_helpers import palsysim_cli
from real_faces import photo_paths
from real_faces import photos as real_photos

from palsysim.base.errors import InputError
from palsysim.base.photos import read_image
from palsysim.condition import codc, facecrop
from palsysim.condition import make as conditions
from palsysim.condition.edges import canny
from palsysim.face.asymmetry import measure
from palsysim.face.landmarks import face_landmarks
from palsysim.face.synth import synth_palsy

# Measures read inside one organ box: both sides share the box's scale, so their percent asymmetry survives.
WITHIN_ORGAN = ("brow_height", "palpebral_fissure_height", "commissure_excursion", "smile_angle")
CLEAR = 8.0  # percent: an asymmetry a clinician would call clear (the healthy photo shows at most 6)


@pytest.fixture(scope="module")
def faces():
    p = real_photos()
    astronaut, donor = p["astronaut"], p["grace_hopper"]
    healthy = face_landmarks(astronaut, what="astronaut")
    patient, moved = synth_palsy(astronaut, healthy, side="left", severity=0.6)
    return {"patient": patient, "patient_xy": moved.astype(np.float64), "healthy": astronaut,
            "healthy_xy": healthy.xy, "donor": donor, "donor_face": face_landmarks(donor, what="donor")}


# ---- edges -------------------------------------------------------------------------------------
def _agreement(a, b):
    """(pixels in exactly one map / pixels in either, share of a's pixels with a b pixel within 1 px)."""
    a, b = a > 0, b > 0
    near_b = cv2.dilate(b.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    return (a ^ b).sum() / max(1, (a | b).sum()), (a & near_b).sum() / max(1, a.sum())


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("sigma", [0.0, 1.0])
def test_kornia_edges_match_opencv(faces, device, sigma):
    # Tolerance: at most 2% of edge pixels differ, and 99% of OpenCV's lie within 1 px of kornia's.
    # Without blur both see identical 8-bit grey levels; with blur, rounding of the blurred grey differs.
    crop = cv2.resize(faces["healthy"][60:316, 120:376], (192, 192), interpolation=cv2.INTER_AREA)
    ref = canny(crop, 100, 200, sigma, convention="grey_l2")
    t = torch.from_numpy(crop).permute(2, 0, 1)[None].float().div(255).to(device)
    out = canny(torch.cat([t, t.flip(-1)]), 100, 200, sigma, method="kornia", convention="grey_l2")
    assert out.shape == (2, 1, 192, 192) and out.device.type == device
    got = (out[0, 0].cpu().numpy() * 255).astype(np.uint8)
    assert ref.sum() > 0.03 * 255 * ref.size, "too few edges for a meaningful comparison"
    xor, near = _agreement(ref, got)
    assert xor <= 0.02 and near >= 0.99, (xor, near)
    assert _agreement(np.ascontiguousarray(ref[:, ::-1]), (out[1, 0].cpu().numpy() * 255).astype(np.uint8))[0] <= 0.02
    # the CPU tensor path is OpenCV itself; the annotator's convention on any device too
    assert np.array_equal((canny(t.cpu(), 100, 200, sigma, convention="grey_l2")[0, 0].numpy() * 255).astype(np.uint8), ref)
    assert np.array_equal((canny(t, 100, 200, sigma)[0, 0].cpu().numpy() * 255).astype(np.uint8), canny(crop, 100, 200, sigma))
    with pytest.raises(InputError, match="kornia computes the grey_l2 convention only"):
        canny(t, method="kornia")


def test_default_canny_is_the_stock_annotators(faces):
    # lllyasviel's annotator for control_sd15_canny: cv2.Canny(rgb, 100, 200), L1 gradient
    crop = facecrop.face_crop(faces["healthy"], faces["healthy_xy"], 512)[0]
    annotator = cv2.Canny(crop, 100, 200)
    assert np.array_equal(canny(crop), annotator)
    assert np.array_equal(facecrop.pf_condition(faces["healthy"], faces["healthy_xy"]), annotator)
    assert np.array_equal(conditions.make_condition(faces["healthy"], faces["healthy_xy"], "pf"), annotator)
    grey = canny(crop, convention="grey_l2")  # the option: grey luma, L2
    assert np.array_equal(grey, cv2.Canny(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), 100, 200, L2gradient=True))
    iou = ((grey > 0) & (annotator > 0)).sum() / ((grey > 0) | (annotator > 0)).sum()
    assert iou < 0.7, iou  # the two are different conditions
    with pytest.raises(InputError, match="unknown Canny convention 'grey'"):
        canny(crop, convention="grey")


def test_edge_thresholds_are_inputs_and_checked(faces):
    crop = faces["healthy"][60:316, 120:376]
    assert (canny(crop, 50, 100) > 0).sum() > (canny(crop, 150, 300) > 0).sum()
    with pytest.raises(InputError, match="low <= high"):
        canny(crop, 200, 100)


# ---- CODC --------------------------------------------------------------------------------------
def test_codc_keeps_patient_asymmetry_in_the_donor_layout(faces):
    donor, dxy = faces["donor"], faces["donor_face"].xy
    condition, organs = codc.codc_condition(faces["patient"], faces["patient_xy"], donor, dxy)
    assert condition.shape == donor.shape[:2] and condition.dtype == np.uint8
    assert set(np.unique(condition)) <= {0, 255}

    face = codc._ipd(dxy) / codc._ipd(faces["patient_xy"])  # the face scale, the paper's rule
    for o in organs.organs:  # isotropic: every organ by the face scale
        size = np.subtract(o.target_box[2:], o.target_box[:2])
        assert abs(o.scale - face) < 1e-6, o.name
        assert o.edges.shape == (size[1], size[0]) and (o.edges > 0).mean() > 0.005
    mapped = organs.map_landmarks(faces["patient_xy"])
    placed, donor_anchors = codc.organ_anchors(mapped), codc.organ_anchors(dxy)
    for n in codc.ORGAN_NAMES:  # no rest photo: each organ's anchor on the donor's own (pupils, nose tip, mouth)
        assert np.abs(placed[n] - donor_anchors[n]).max() < 0.5, n

    def inside(pts, box):
        x0, y0, x1, y1 = box
        return (pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1)
    # mapped organ landmarks land inside their target box, bar a few where boxes were trimmed apart
    # (boxes never overlap; the nose's bridge points reach between the eyes and brows)
    for o in organs.organs:
        from palsysim.face.regions import ORGANS
        assert inside(mapped[list(ORGANS[o.name])], o.target_box).mean() > (0.6 if o.name == "nose" else 0.9), o.name

    own, moved = measure(faces["patient_xy"])["asymmetry"], measure(mapped)["asymmetry"]
    clear = [m for m in WITHIN_ORGAN + ("commissure_height",) if own[m]["percent"] >= CLEAR]
    assert len(clear) >= 4, f"the synthetic palsy should be clearly asymmetric: {own}"
    for m in clear:  # commissure height: its left/right difference; its percent follows the donor's mouth height
        if m != "commissure_height":
            assert abs(moved[m]["percent"] / own[m]["percent"] - 1) <= 0.15, (m, own[m], moved[m])
        assert abs(moved[m]["difference"] / own[m]["difference"] - 1) <= 0.15, (m, own[m], moved[m])


def test_condition_has_donor_contour_not_patient_outline(faces):
    # Dataset convention: both faces cropped to 512x512, so the two edge maps share their pixel grid.
    p_img, pm = facecrop.face_crop(faces["patient"], faces["patient_xy"], 512)
    d_img, dm = facecrop.face_crop(faces["donor"], faces["donor_face"].xy, 512)
    p_xy, d_xy = facecrop.transform_points(faces["patient_xy"], pm), facecrop.transform_points(faces["donor_face"].xy, dm)
    condition, organs = codc.codc_condition(p_img, p_xy, d_img, d_xy)
    inside = np.zeros(condition.shape, bool)
    for o in organs.organs:  # the donor's own organ boxes are cleared too
        for x0, y0, x1, y1 in (o.source_box, o.target_box, organs.donor_boxes[o.name]):
            inside[max(y0, 0):y1, max(x0, 0):x1] = True
    patient_outer = (canny(p_img) > 0) & ~inside
    donor_outer = (canny(d_img) > 0) & ~inside
    assert patient_outer.sum() > 500 and donor_outer.sum() > 500
    kept = (patient_outer & (condition > 0)).sum() / patient_outer.sum()
    assert kept < 0.25, f"{kept:.0%} of the patient's outer-face edges are still in the condition"
    assert (donor_outer & (condition > 0)).sum() / donor_outer.sum() > 0.99
    oval = codc.codc_condition(p_img, p_xy, d_img, d_xy, contour="oval")[0]
    assert (oval & ~inside).sum() < (condition & ~inside).sum()  # the oval drops the donor's background


def test_face_crop_and_pf_condition(faces):
    image, xy = faces["donor"], faces["donor_face"].xy
    crop, m = facecrop.face_crop(image, xy, 512)
    assert crop.shape == (512, 512, 3)
    mapped = facecrop.crop_face(faces["donor_face"], m, 512)
    again = face_landmarks(crop, what="crop")
    err = np.linalg.norm(again.xy - mapped.xy, axis=1)
    assert np.median(err) < 3.0, "the crop's matrix does not carry the landmarks where the face is"
    pf = facecrop.pf_condition(image, xy, 512)
    assert pf.shape == (512, 512) and np.array_equal(pf, canny(crop))
    assert np.array_equal(conditions.make_condition(image, xy, "pf", size=512), pf)
    # a face near the border: the crop repeats border pixels instead of failing
    small = image[:, 60:]
    assert facecrop.face_crop(small, xy - [60, 0], 256)[0].shape == (256, 256, 3)


# ---- bad input ---------------------------------------------------------------------------------
def test_face_at_the_border_is_refused(faces):
    cut = faces["healthy"][:, 200:]  # cuts through the subject's right eye
    face = face_landmarks(cut, what="patient")
    with pytest.raises(InputError, match="right eye box of patient .* the face is at the border"):
        codc.organ_crop_resize(cut, face.xy, faces["donor_face"].xy, faces["donor"].shape[:2])
    with pytest.raises(InputError, match="right eye box of donor .* border"):
        codc.organ_crop_resize(faces["healthy"], faces["healthy_xy"], face.xy, cut.shape[:2])


def test_mismatched_batches_and_sizes_are_refused(faces):
    assert codc.pair_batches(3, 1) == [0, 0, 0] and codc.pair_batches(2, 2) == [0, 1]
    with pytest.raises(InputError, match="3 patient image.* but 2 donor.*one per patient"):
        codc.pair_batches(3, 2)
    organs = codc.organ_crop_resize(faces["patient"], faces["patient_xy"], faces["donor_face"].xy,
                                    faces["donor"].shape[:2])
    with pytest.raises(InputError, match="connect the same donor"):
        codc.reposition(organs, np.zeros((512, 512), np.uint8))


def test_cli_condition_file_and_folder(tmp_path, faces):
    paths = photo_paths()
    out = tmp_path / "codc.png"
    r = palsysim_cli("condition", "--patient", paths["astronaut"], "--donor", paths["grace_hopper"], "--mode", "codc",
             "--out", str(out))
    assert r.returncode == 0, r.stderr
    cond = read_image(str(out))
    assert cond.shape == (512, 512, 3) and 0.005 < (cond[..., 0] > 0).mean() < 0.2
    # folder form: an unreadable file is listed in one message before any work; once it is gone, same tree out
    ds = tmp_path / "data" / "p1" / "rest"
    ds.mkdir(parents=True)
    (ds / "a.png").write_bytes(open(paths["astronaut"], "rb").read())
    (ds / "broken.jpg").write_bytes(b"not a jpeg")
    r = palsysim_cli("condition", "--patient", str(tmp_path / "data"), "--mode", "pf", "--out", str(tmp_path / "pf"))
    assert r.returncode == 2 and "1 photo(s) cannot be read" in r.stderr and "broken.jpg" in r.stderr
    assert not [f for _, _, fs in os.walk(tmp_path / "pf") for f in fs]  # nothing written
    (ds / "broken.jpg").unlink()
    r = palsysim_cli("condition", "--patient", str(tmp_path / "data"), "--mode", "pf", "--out", str(tmp_path / "pf"))
    assert r.returncode == 0, r.stderr
    assert read_image(str(tmp_path / "pf" / "p1" / "rest" / "a.png")).shape == (512, 512, 3)
    # a donor without a face
    coffee = os.path.join(os.path.dirname(paths["astronaut"]), "coffee.png")
    r = palsysim_cli("condition", "--patient", paths["astronaut"], "--donor", coffee, "--out", str(tmp_path / "x.png"))
    assert r.returncode == 2 and "no face found in donor coffee.png" in r.stderr
    assert not (tmp_path / "x.png").exists()
