"""--resume checks whole-file digests of the base models (issue 24, part 5): a ControlNet of the same
size with one tensor changed by 1% is refused, whether it sits in another folder under the same name or
replaced the file in place; an unchanged file is not read again on resume."""
import json
import os
import shutil
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file
from training_helpers import one_photo_files, training_config

from training import checkpointing as ckpt
from training.recipe import train


@pytest.fixture(scope="module")
def files(module_tmp):
    """Tiny models and one real photo."""
    return one_photo_files(module_tmp("reid_resume"))


def config(files, out, **kw):
    return training_config(files, out, **{"batch_size": 1, "steps": 1, **kw})


def unsampled_tensor(path, weights, blocks=64, block=1 << 16):
    """A tensor whose bytes lie wholly between the 64 evenly spaced 64 KiB blocks the old sampled
    fingerprint read, so only a whole-file digest can see it change."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    starts = [max(0, size - block) * i // (blocks - 1) for i in range(blocks)]
    for name, info in header.items():
        if name == "__metadata__":
            continue
        lo, hi = (8 + n + o for o in info["data_offsets"])
        if weights[name].any() and not any(s < hi and lo < s + block for s in starts):
            return name
    raise AssertionError("every tensor overlaps a sampled block")


def scale_one_tensor(src, dst):
    """dst: src with one tensor scaled by 1.01, same size in bytes."""
    weights = load_file(src)
    name = unsampled_tensor(src, weights)
    weights[name] = weights[name] * 1.01
    save_file(weights, dst)
    assert os.path.getsize(dst) == os.path.getsize(src) and not torch.equal(load_file(dst)[name], load_file(src)[name])


def saved_controlnet(cfg):
    state, _, _ = ckpt.load_latest(os.path.join(os.path.splitext(cfg.out)[0] + "_training", ckpt.STATE_FILE))
    return state["base_files"]["controlnet"]


def test_a_same_size_controlnet_with_one_tensor_changed_is_refused_and_named(files, tmp_path):
    first = config(files, "digest.safetensors")
    train(first)
    before = saved_controlnet(first)
    other = tmp_path / "cn.safetensors"  # the same name in another folder
    scale_one_tensor(files["controlnet"], str(other))
    again = config(files, "digest.safetensors", steps=2, resume=True, overwrite=True)
    again.controlnet = str(other)
    with pytest.raises(ValueError, match=r"--controlnet cn\.safetensors is not the controlnet this run was trained from"):
        train(again)
    assert saved_controlnet(first) == before  # the state still names the file it was trained from


def test_a_controlnet_changed_in_place_is_refused(files, tmp_path):
    own = str(tmp_path / "mine.safetensors")
    shutil.copyfile(files["controlnet"], own)
    first = config(files, "in_place.safetensors")
    first.controlnet = own
    train(first)
    scale_one_tensor(files["controlnet"], own)
    again = config(files, "in_place.safetensors", steps=2, resume=True, overwrite=True)
    again.controlnet = own
    with pytest.raises(ValueError, match=r"--controlnet mine\.safetensors is not the controlnet"):
        train(again)


def test_an_unchanged_model_file_is_not_hashed_again_on_resume(files, monkeypatch):
    first = config(files, "rehash.safetensors")
    train(first)
    hashed = []
    real = ckpt.sha256_of
    monkeypatch.setattr(ckpt, "sha256_of", lambda path: hashed.append(path) or real(path))
    train(config(files, "rehash.safetensors", steps=2, resume=True, overwrite=True))
    assert hashed == []
    assert saved_controlnet(first)["sha256"] == real(files["controlnet"])


# --- re-identification (issue 24, part 7) ----------------------------------------------------------
PATIENTS = ("Jane_Roe_MRN4471", "John_Doe_MRN9923")  # stand-ins for real names: must not leak


@pytest.fixture(scope="module")
def gallery_tree(module_tmp):
    """Two patients (Grace Hopper, the astronaut), Tom Hanks as a distractor, and one method whose three
    images for patient 1 show: her own synthetic palsy, the other patient's, and the distractor's."""
    import cv2
    from real_faces import photos

    from palsysim.base.photos import write_image
    from palsysim.face.landmarks import face_landmarks
    from palsysim.face.synth import synth_palsy
    root = module_tmp("reid")
    f = photos()
    tom = cv2.resize(f["tom_hanks"], (336, 336), interpolation=cv2.INTER_CUBIC)  # a 112 px crop: dlib needs more
    write_image(str(root / "patients" / PATIENTS[0] / "rest.png"), f["grace_hopper"])
    write_image(str(root / "patients" / PATIENTS[1] / "rest.png"), f["astronaut"])
    write_image(str(root / "distractors" / "tom.png"), tom)
    for i, face in enumerate((f["grace_hopper"], f["astronaut"], tom), 1):
        palsy, _ = synth_palsy(face, face_landmarks(face), "left", 0.7)
        write_image(str(root / "generated" / "method" / PATIENTS[0] / "rest" / f"{i}.png"), palsy)
    return root


def test_a_synthetic_palsy_of_a_gallery_face_is_reidentified_by_dlib_and_other_people_are_not(gallery_tree):
    from palsysim.measure import reid
    from palsysim.measure.evaluate import evaluate
    root = gallery_tree
    result = evaluate(str(root / "generated"), str(root / "patients"), None, str(root / "out"), backend="dlib",
                      distractors=str(root / "distractors"))
    dlib = result["reid"]["method"]["dlib"]
    assert dlib["images"] == 3
    assert dlib["rank1"] == pytest.approx(1 / 3)  # only her own palsy picks her out of the three people
    assert dlib["below"] == pytest.approx(2 / 3)  # the two other people are not taken for her
    # memorisation: each image's closest training photo, by dlib distance
    (own, own_photo, own_d), (other, other_photo, other_d), (stranger, _, stranger_d) = dlib["nearest"]
    assert (own, own_photo) == ("patient 1, rest, image 1", "patient 1, rest") and own_d < 0.3
    assert (other, other_photo) == ("patient 1, rest, image 2", "patient 2, rest") and other_d < 0.3
    assert stranger == "patient 1, rest, image 3" and stranger_d > 0.6  # far from every training photo

    # the same decisions straight from the functions, on the descriptors themselves
    from palsysim.base.photos import read_image
    from palsysim.identity import dlib_face as identity_dlib
    dlib = identity_dlib.Dlib()
    gallery = identity_dlib.descriptors([read_image(str(root / "patients" / p / "rest.png")) for p in PATIENTS]
                                        + [read_image(str(root / "distractors" / "tom.png"))])
    probes = identity_dlib.descriptors([read_image(str(root / "generated" / "method" / PATIENTS[0] / "rest" / f"{i}.png"))
                                        for i in (1, 2, 3)])
    close = dlib.closeness(dlib.scores(probes, gallery))
    hits = reid.rank1_hits(close, ["jane", "john", "tom"], ["jane", "jane", "jane"])
    assert hits.tolist() == [True, False, False]
    assert reid.rank1_hits(close, ["jane", "john", "tom"], ["jane", "john", "tom"]).all()

    report = (root / "out" / "report.md").read_text()
    assert "## Re-identification" in report and "| method | dlib | 3 | 33.3% | 66.7% |" in report
    assert "1 distractor faces" in report and "patient 1, rest" in report
    assert not any(name in report for name in PATIENTS + ("tom",))


def test_a_distractor_without_a_face_is_refused_by_name_before_any_report(gallery_tree, tmp_path):
    import subprocess
    import sys

    import numpy as np

    from palsysim.base.photos import write_image
    root = gallery_tree
    shutil.copytree(root / "distractors", tmp_path / "distractors")
    write_image(str(tmp_path / "distractors" / "wall.png"), np.full((200, 200, 3), 120, np.uint8))
    proc = subprocess.run([sys.executable, "-m", "palsysim", "evaluate", "--generated", str(root / "generated"),
                           "--patients", str(root / "patients"), "--backend", "dlib", "--out", str(tmp_path / "out"),
                           "--distractors", str(tmp_path / "distractors")],
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0 and "--distractors: wall.png: no face found" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()
