"""Expression fidelity on synthetic palsy of real faces, and LPIPS's weight handling."""
import numpy as np
import pytest
import torch
from real_faces import photos

from palsysim.base.errors import InputError
from palsysim.face.asymmetry import MEASURES
from palsysim.face.landmarks import face_landmarks
from palsysim.face.synth import synth_palsy
from palsysim.measure import fidelity


@pytest.fixture(scope="module")
def faces():
    return photos()


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_synthetic_palsy_scores_perfect_against_itself_and_worse_the_less_palsied(faces, name):
    healthy = faces[name]
    face = face_landmarks(healthy)
    patient_image, _ = synth_palsy(healthy, face, "left", 0.6)
    patient = face_landmarks(patient_image).xy
    # landmarks detected afresh on the same image: deterministic, so a perfect score
    assert fidelity.expression_fidelity(face_landmarks(patient_image).xy, patient)["score"] == 1.0
    milder = face_landmarks(synth_palsy(healthy, face, "left", 0.3)[0]).xy
    s_mild = fidelity.expression_fidelity(milder, patient)["score"]
    s_healthy = fidelity.expression_fidelity(face.xy, patient)["score"]
    assert s_healthy < s_mild < 0.9, (s_healthy, s_mild)


def test_items_weigh_the_measures_they_exercise(faces):
    healthy = faces["astronaut"]
    face = face_landmarks(healthy)
    patient = face_landmarks(synth_palsy(healthy, face, "left", 0.6)[0]).xy
    brows = fidelity.expression_fidelity(face.xy, patient, "raise_eyebrows")
    assert [r["measure"] for r in brows["rows"] if r["weight"] > 0] == ["brow_height"]
    brow_row = next(r for r in brows["rows"] if r["measure"] == "brow_height")
    assert brows["score"] == pytest.approx(brow_row["score"])
    assert brow_row["error"] == pytest.approx(abs(brow_row["generated"] - brow_row["patient"]))
    grin = fidelity.expression_fidelity(face.xy, patient, "grin")
    assert {r["measure"] for r in grin["rows"] if r["weight"] > 0} == {
        "commissure_excursion", "commissure_height", "smile_angle"}
    for item in ("blink", "gentle_eye_closure", "wink"):
        w = fidelity.ITEM_WEIGHTS[item]
        assert set(w) == {"palpebral_fissure_height"}
    assert set(fidelity.ITEM_WEIGHTS["rest"]) == set(MEASURES)
    table = fidelity.fidelity_table(grin)
    assert table.startswith("Expression fidelity (grin): ") and table.count("\n| ") == 6
    with pytest.raises(InputError, match="unknown Yanagihara item 'smile'"):
        fidelity.expression_fidelity(face.xy, patient, "smile")


def test_a_palsy_on_the_wrong_side_scores_worse_than_the_right_side(faces):
    healthy = faces["grace_hopper"]
    face = face_landmarks(healthy)
    patient = face_landmarks(synth_palsy(healthy, face, "left", 0.6)[0]).xy
    same = face_landmarks(synth_palsy(healthy, face, "left", 0.5)[0]).xy
    mirrored = face_landmarks(synth_palsy(healthy, face, "right", 0.6)[0]).xy
    assert (fidelity.expression_fidelity(mirrored, patient)["score"]
            < fidelity.expression_fidelity(same, patient)["score"])


def test_lpips_without_backbone_weights_says_what_file_and_where(tmp_path, faces):
    missing = str(tmp_path / "alexnet-owt-7be5be79.pth")
    with pytest.raises(InputError, match=r"alexnet-owt-7be5be79.pth.*found none at .*never downloads"):
        fidelity.lpips_distance([faces["astronaut"]], [faces["astronaut"]], weights=missing)


@pytest.fixture(scope="module")
def alexnet_file(module_tmp):
    """A file in torchvision's AlexNet format (random weights: the real ones cannot be fetched here)."""
    import torchvision
    torch.manual_seed(0)
    path = str(module_tmp("hub") / fidelity.ALEXNET_FILE)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    return path


def test_lpips_loads_the_backbone_and_feeds_minus_one_to_one(alexnet_file, faces):
    import lpips
    a, g = faces["astronaut"], faces["grace_hopper"]
    d = fidelity.lpips_distance([a, a, g], [a, g, a], weights=alexnet_file)
    assert d[0] == pytest.approx(0.0, abs=1e-7)
    assert d[1] > 0.01 and d[1] == pytest.approx(d[2], rel=1e-5)  # symmetric
    net = fidelity.lpips_model(alexnet_file)
    assert fidelity.lpips_model(alexnet_file) is net
    conv0 = torch.load(alexnet_file, weights_only=True)["features.0.weight"]
    assert torch.equal(net.net.slice1[0].weight, conv0)
    # the lpips package's own [0, 1] path (normalize=True) gives the same number
    x = torch.from_numpy(np.stack([fidelity.lpips_resize(a), fidelity.lpips_resize(g)])).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        ref = net(x[:1], x[1:], normalize=True)
    assert d[1] == pytest.approx(float(ref), rel=1e-5)
    assert isinstance(net, lpips.LPIPS)


def test_lpips_refuses_a_file_that_is_not_alexnet(tmp_path, faces):
    bad = tmp_path / "not_alexnet.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, str(bad))
    with pytest.raises(InputError, match="not_alexnet.pth is not torchvision's AlexNet"):
        fidelity.lpips_model(str(bad))
