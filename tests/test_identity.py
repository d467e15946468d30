"""ArcFace identity core: insightface's real loader on a tiny ONNX, alignment, similarity, threshold."""
import cv2
import numpy as np
import pytest
from insightface.model_zoo.arcface_onnx import ArcFaceONNX
from insightface.utils.face_align import arcface_dst
from real_faces import photos
from tiny_arcface import write_tiny_arcface

from palsysim.base.errors import InputError
from palsysim.face.landmarks import face_landmarks
from palsysim.identity import arcface as arc
from palsysim.identity import check as identity


def arcface_rows(images, references, arcface, threshold=arc.THRESHOLD):
    return [r["arcface"] for r in identity.check(images, references, "arcface", arcface, threshold)[1]]


@pytest.fixture(scope="module")
def arcface(module_tmp):
    return write_tiny_arcface(str(module_tmp("insightface") / "tiny_arcface.onnx"))


@pytest.fixture(scope="module")
def faces():
    return photos()


def test_tiny_arcface_goes_through_insightfaces_loader_once_per_file(arcface):
    model = arc.load_model(arcface)
    assert isinstance(model, ArcFaceONNX)
    assert model.input_size == (112, 112) and model.input_mean == 127.5
    assert arc.load_model(arcface) is model
    assert "CPUExecutionProvider" in model.session.get_providers()
    assert arc.providers()[-1] == "CPUExecutionProvider"


def test_alignment_puts_the_five_points_on_the_template(faces):
    """Dots drawn on a real photo at the five MediaPipe keypoints land on insightface's template."""
    photo = faces["grace_hopper"]  # neutral and frontal: a similarity fit can reach every point
    xy = face_landmarks(photo).xy
    plain = arc.align(photo, xy).astype(np.float64)
    assert plain.shape == (112, 112, 3)
    for (x, y), target in zip(arc.keypoints(xy), arcface_dst):
        marked = photo.copy()
        # sub-pixel dot (shift 4 = 1/16 px) so rounding does not move it
        cv2.circle(marked, (int(round(x * 16)), int(round(y * 16))), 4 * 16, (255, 0, 255), -1,
                   lineType=cv2.LINE_AA, shift=4)
        diff = np.abs(arc.align(marked, xy).astype(np.float64) - plain).sum(-1)
        ys, xs = np.mgrid[0:112, 0:112]
        centre = np.array([(xs * diff).sum(), (ys * diff).sum()]) / diff.sum()
        assert np.hypot(*(centre - target)) < 2.0, (centre, target)


def test_similarity_to_itself_is_one_and_to_other_people_lower(arcface, faces):
    ims = [faces["astronaut"], faces["grace_hopper"], faces["tom_hanks"]]
    rows = arcface_rows(ims, [faces["astronaut"]], arcface)
    sims = [r["similarity"] for r in rows]
    assert sims[0] == pytest.approx(1.0, abs=1e-6)
    assert sims[1] < 0.999 and sims[2] < 0.999
    assert all(r["passed"] == (r["similarity"] < arc.THRESHOLD) for r in rows)
    # the highest similarity over several reference photos decides, and names that photo
    rows2 = arcface_rows(ims, [faces["tom_hanks"], faces["grace_hopper"]], arcface)
    assert [r["closest"] for r in rows2][1:] == [1, 0]
    assert rows2[1]["similarity"] == pytest.approx(1.0, abs=1e-6)


def test_threshold_between_measured_values_passes_exactly_the_images_below(arcface, faces):
    ims = [faces["astronaut"], faces["grace_hopper"], faces["tom_hanks"]]
    sims = [r["similarity"] for r in arcface_rows(ims, [faces["astronaut"]], arcface)]
    order = np.argsort(sims)
    threshold = (sims[order[0]] + sims[order[1]]) / 2  # only the least similar image is under it
    rows = arcface_rows(ims, [faces["astronaut"]], arcface, threshold)
    assert [r["passed"] for r in rows] == [i == order[0] for i in range(3)]
    text = identity.report(("arcface",), [{"passed": r["passed"], "problem": None, "arcface": r} for r in rows],
                           threshold)
    assert "1 of 3 passed, 2 held back." in text and f"{threshold:.3f}" in text


def test_fixed_batch_export_gives_the_same_embeddings(tmp_path, arcface, faces):
    fixed = write_tiny_arcface(str(tmp_path / "fixed.onnx"), dynamic_batch=False)
    ims = [faces["astronaut"], faces["grace_hopper"]]
    assert isinstance(arc.load_model(fixed).input_shape[0], int)
    np.testing.assert_allclose(arc.embeddings(ims, fixed), arc.embeddings(ims, arcface), atol=1e-6)


def test_bad_model_files_get_messages_that_name_file_and_fix(tmp_path, faces):
    with pytest.raises(InputError, match=r"'.*nothere.onnx' not found.*models/insightface/"):
        arc.load_model(str(tmp_path / "nothere.onnx"))
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07not an onnx model" * 50)
    with pytest.raises(InputError, match="corrupt.onnx is not a loadable ONNX model"):
        arc.load_model(str(corrupt))
    # a loadable ONNX of another kind (insightface's 192x192 landmark shape) is refused by name
    import torch
    other = str(tmp_path / "landmark.onnx")
    torch.onnx.export(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 96, stride=96), torch.nn.Flatten()),
                      torch.zeros(1, 3, 192, 192), other, dynamo=False)
    with pytest.raises(InputError, match="landmark.onnx is not an ArcFace recognition model"):
        arc.load_model(other)


def test_no_face_and_empty_inputs_get_clear_messages(arcface, faces):
    with pytest.raises(InputError, match="no face found in image 2 of 2"):
        arc.embeddings([faces["astronaut"], np.full((128, 128, 3), 200, np.uint8)], arcface)
    with pytest.raises(InputError, match="at least one image and one reference"):
        arcface_rows([], [faces["astronaut"]], arcface)
