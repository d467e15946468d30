"""One list of photo file types and one patients layout: every command that reads a folder of photos sees
the same photos, and an expression may be one photo or a folder of many, each image paired with its own."""
import json
import os
import shutil

import pytest
from real_faces import photo_paths
from runner_helpers import NO_ARCFACE, api, pngs, run_runner

from palsysim.base.errors import InputError
from palsysim.base.layout import find_patients as runner_patients
from palsysim.base.layout import find_rest_photo, generated_sources
from palsysim.base.video_files import frame_files


def test_the_runner_evaluate_the_rest_finder_and_the_frame_reader_see_the_same_photos(tmp_path):
    # evaluate, the study and the experiment read patients with the runner's find_patients itself
    folder = tmp_path / "patients" / "p1"
    folder.mkdir(parents=True)
    photo = photo_paths()["astronaut"]
    # a macOS "._" copy and an editor's hidden temporary are not photos; a .webp is no photo for any command
    for name in ("rest.png", "grin.JPG", "whistle.webp", "._grin.png", ".rest.png"):
        shutil.copyfile(photo, folder / name)
    runner = runner_patients(str(tmp_path / "patients"))
    want = [str(folder / "grin.JPG"), str(folder / "rest.png")]
    assert sorted(runner["p1"].values()) == want, runner
    assert frame_files(str(folder)) == want
    assert find_rest_photo(str(folder)) == str(folder / "rest.png")


def test_an_expression_may_be_a_folder_of_many_photos(tmp_path):
    folder = tmp_path / "patients" / "p1"
    (folder / "grin").mkdir(parents=True)
    photo = photo_paths()["astronaut"]
    shutil.copyfile(photo, folder / "rest.png")
    names = [f"IMG_{k:04d}.jpg" for k in range(1, 11)] + [".hidden.jpg"]  # ten: photo01 .. photo10
    for name in names:
        shutil.copyfile(photo, folder / "grin" / name)
    runner = runner_patients(str(tmp_path / "patients"))["p1"]
    want = {"rest": str(folder / "rest.png"), **{f"grin/photo{k:02d}": str(folder / "grin" / names[k - 1])
                                                 for k in range(1, 11)}}
    assert runner == want
    shutil.copyfile(photo, folder / "grin.png")  # one item in both forms: which photo is "grin" is unclear
    with pytest.raises(InputError, match="p1: grin is both a photo and a folder of photos: keep one"):
        runner_patients(str(tmp_path / "patients"))
    shutil.rmtree(folder / "grin")
    shutil.copyfile(photo, folder / "grin.jpg")  # two files of one item: neither may be dropped unsaid
    with pytest.raises(InputError, match="p1: two photos for grin"):
        runner_patients(str(tmp_path / "patients"))


def test_each_image_of_many_photos_is_generated_under_and_scored_against_its_own_photo(host, tmp_path):
    from palsysim.base.photos import read_image, write_image
    from palsysim.face.landmarks import face_landmarks
    from palsysim.face.synth import synth_expression
    from palsysim.measure.evaluate import evaluate
    image = read_image(photo_paths()["grace_hopper"])
    face = face_landmarks(image)
    folder = tmp_path / "patients" / "zq_patient_7731"
    write_image(str(folder / "rest.png"), image)
    for k, severity in enumerate((0.3, 0.9), 1):
        write_image(str(folder / "grin" / f"zq_secret_grin_{k}.png"), synth_expression(image, face, "grin", severity=severity)[0])
    out = tmp_path / "out"
    r = run_runner(api("palsy_pf"), host.url, tmp_path / "patients", out, *NO_ARCFACE, "--seeds", "7431")
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(os.path.relpath(p, out) for p in pngs(out)) == [
        f"zq_patient_7731/{s}/a_man_7431.png" for s in ("grin/photo1", "grin/photo2", "rest")]
    assert [s for s, _ in generated_sources(str(out / "zq_patient_7731"))] == ["grin/photo1", "grin/photo2", "rest"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert "zq_secret" not in json.dumps(manifest)
    assert {j["expression"] for j in manifest["jobs"].values()} == {"grin", "rest"}
    # The tiny models draw no face, so evaluate pairs the patient's own photos, copied in as "generated":
    # each finds its own source (fidelity 1, distance 0), never the other grin.
    for s in ("grin/photo1", "grin/photo2"):
        shutil.copyfile(folder / "grin" / f"zq_secret_grin_{s[-1]}.png", out / "zq_patient_7731" / s / "a_man_7431.png")
    result = evaluate([f"pf={out}"], str(tmp_path / "patients"), None, str(tmp_path / "eval"), backend="dlib")
    row = result["rows"][0]
    assert row["images"] == 2 and row["unpaired"] == 0, row  # the rest image is noise: no face, skipped
    assert row["dlib_mean"] == pytest.approx(0.0, abs=1e-6), row  # the other grin is a different photo: > 0


def test_videos_are_sources_only_where_asked_and_never_a_rest_photo(tmp_path):
    folder = tmp_path / "patients" / "p1"
    os.makedirs(folder)
    shutil.copyfile(photo_paths()["astronaut"], folder / "rest.png")
    (folder / "grin.mp4").write_bytes(b"")  # listed, not read: the runner reads every source before any job
    (folder / "whistle.MOV").write_bytes(b"")
    assert runner_patients(str(tmp_path / "patients")) == {"p1": {"rest": str(folder / "rest.png")}}
    assert runner_patients(str(tmp_path / "patients"), videos=True)["p1"] == {
        "grin": str(folder / "grin.mp4"), "rest": str(folder / "rest.png"), "whistle": str(folder / "whistle.MOV")}
    (folder / "rest.webm").write_bytes(b"")
    assert find_rest_photo(str(folder)) == str(folder / "rest.png")
    with pytest.raises(InputError, match="p1: two files for rest"):
        runner_patients(str(tmp_path / "patients"), videos=True)
