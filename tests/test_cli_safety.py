"""The core CLI (python -m palsysim condition | synth | landmarks) never writes onto or into its
inputs, never gives two results one name, and answers bad arguments with a message, not a traceback.
Real face photos, real files written and read back."""
import hashlib
import os

import pytest
from PIL import Image

from cli_helpers import run_main
from palsysim.cli import main
from real_faces import photo_paths


def photo(path, size=256):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.open(photo_paths()["astronaut"]).convert("RGB").resize((size, size)).save(path)
    return str(path)


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def digests(root):
    return {os.path.relpath(os.path.join(d, f), root): digest(os.path.join(d, f))
            for d, _, fs in os.walk(root) for f in fs}


@pytest.mark.parametrize("argv", [
    ["condition", "--mode", "pf", "--patient", "{a}", "--out", "{a}"],
    ["condition", "--mode", "pf", "--patient", "{a}", "--out", "{link}"],
    ["condition", "--mode", "pf", "--patient", "{dir}", "--out", "{dir}"],
    ["condition", "--mode", "pf", "--patient", "{dir}", "--out", "{dir}/conditions"],
    ["condition", "--mode", "pf", "--patient", "{linkdir}", "--out", "{dir}"],
    ["synth", "{a}", "--out", "{a}"],
    ["synth", "{a}", "--out", "{link}"],
])
def test_an_output_never_overwrites_an_input(tmp_path, capsys, argv):
    a = photo(tmp_path / "data" / "p1" / "rest.png")
    os.symlink(a, tmp_path / "link.png")
    os.symlink(tmp_path / "data", tmp_path / "linkdir")
    before = digests(tmp_path / "data")
    names = {"a": a, "link": tmp_path / "link.png", "dir": tmp_path / "data", "linkdir": tmp_path / "linkdir"}
    code, err = run_main(capsys, *(x.format(**names) for x in argv))
    assert code == 2 and "--out" in err and "input" in err, err
    assert digests(tmp_path / "data") == before


def test_landmarks_of_two_photos_with_one_name_give_two_results(tmp_path, capsys):
    a = photo(tmp_path / "a" / "face.png")
    b = photo(tmp_path / "b" / "face.png", size=200)
    code, err = run_main(capsys, "landmarks", a, b, "--out", tmp_path / "lm")
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "lm")) == ["face_2_landmarks.json", "face_2_landmarks.png",
                                                   "face_landmarks.json", "face_landmarks.png"]
    assert Image.open(tmp_path / "lm" / "face_landmarks.png").size == (256, 256)
    assert Image.open(tmp_path / "lm" / "face_2_landmarks.png").size == (200, 200)


def test_condition_of_face_jpg_and_face_png_writes_both(tmp_path, capsys):
    photo(tmp_path / "data" / "p1" / "face.jpg")
    photo(tmp_path / "data" / "p1" / "face.png", size=200)
    code, err = run_main(capsys, "condition", "--mode", "pf", "--size", "0", "--patient", tmp_path / "data",
                    "--out", tmp_path / "out")
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "out" / "p1")) == ["face.png", "face_2.png"]
    sizes = {Image.open(tmp_path / "out" / "p1" / f).size for f in ("face.png", "face_2.png")}
    assert sizes == {(256, 256), (200, 200)}


def test_unreadable_photos_in_a_folder_are_listed_in_one_message_before_any_work(tmp_path, capsys):
    photo(tmp_path / "data" / "p1" / "rest.png")
    (tmp_path / "data" / "p1" / "grin.png").write_bytes(b"")
    (tmp_path / "data" / "p2").mkdir()
    (tmp_path / "data" / "p2" / "rest.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    code, err = run_main(capsys, "condition", "--mode", "pf", "--patient", tmp_path / "data", "--out", tmp_path / "out")
    assert code == 2 and "2 photo(s) cannot be read" in err, err
    assert "p1/grin.png" in err and "p2/rest.jpg" in err
    assert not os.path.exists(tmp_path / "out" / "p1")  # nothing half done


@pytest.mark.parametrize("argv, message", [
    (["condition", "--mode", "pf", "--patient", "{a}", "--out", "{tmp}/x.gif"], "name a .png or .jpg file"),
    (["condition", "--mode", "pf", "--patient", "{data}", "--out", "{file}"], "is an existing file"),
    (["condition", "--mode", "pf", "--patient", "{data}", "--out", "{file}/sub"], "cannot create the folder"),
    (["synth", "{a}", "--out", "{tmp}"], "name a .png or .jpg file"),
    (["landmarks", "{a}", "--out", "{file}"], "is an existing file"),
])
def test_bad_out_is_a_message(tmp_path, capsys, argv, message):
    a = photo(tmp_path / "data" / "p1" / "rest.png")
    (tmp_path / "file.txt").write_text("not a folder")
    names = {"a": a, "tmp": tmp_path, "data": tmp_path / "data", "file": tmp_path / "file.txt"}
    code, err = run_main(capsys, *(x.format(**names) for x in argv))
    assert code == 2 and message in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["condition", "--patient", "p.png", "--out", "o.png", "--size", "-5"], "--size: must be 0 or more"),
    (["landmarks", "p.png", "--out", "o", "--max-faces", "0"], "--max-faces: must be 1 or more"),
])
def test_bad_numbers_are_refused(capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err
