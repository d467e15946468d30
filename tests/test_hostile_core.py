"""Issue 29, hostile input to the core, the nodes, identity, evaluate and the model manager: each case
ends in a clear message naming the problem and the fix (exit 2 for the CLI, a refusal for the host),
nothing half written, nothing installed that is not what it claims. Real photos, the real host."""
import os
import struct
import zlib

import pytest

from palsysim.cli import main
from palsysim.images import MAX_PIXELS
from real_faces import photo_paths


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def png_claiming(path, width, height):
    """A small PNG file whose header claims width x height grey pixels (its first rows all there is)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = zlib.compress(b"\0" * (width + 1) * 4)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    return str(path)


# --- 1. a photo too large to decode -------------------------------------------------------------

@pytest.mark.parametrize("width, height", [(40000, 40000), (10000, 9000)])
@pytest.mark.parametrize("command", ["identity", "landmarks", "condition", "measure"])
def test_a_photo_too_large_to_decode_is_refused_by_every_command(tmp_path, capsys, command, width, height):
    big = png_claiming(tmp_path / "big.png", width, height)
    face = photo_paths()["astronaut"]
    argv = {"identity": ["identity", face, big, "--backend", "dlib"],
            "landmarks": ["landmarks", big, "--out", tmp_path / "out"],
            "condition": ["condition", "--mode", "pf", "--patient", big, "--out", tmp_path / "out.png"],
            "measure": ["measure", big]}[command]
    code, err = run(capsys, *argv)
    assert code == 2, err
    assert "big.png" in err and f"{MAX_PIXELS:,} pixels" in err and "downscale" in err, err
    assert (f"{width}x{height}" in err) if width * height < 2 * 89478485 else f"{width * height:,}" in err, err
    assert "Traceback" not in err and "DecompressionBomb" not in err
    assert not os.path.exists(tmp_path / "out") and not os.path.exists(tmp_path / "out.png")


# --- 4, 5. evaluate and identity: unreadable photos, thresholds that are not numbers --------------

def evaluation_folders(tmp_path, broken):
    """PATIENTS/p1 with a real smile photo and `broken` as rest.jpg; a method tree with one real image."""
    from PIL import Image
    faces = photo_paths()
    (tmp_path / "patients" / "p1").mkdir(parents=True)
    Image.open(faces["astronaut"]).convert("RGB").save(tmp_path / "patients" / "p1" / "smile.png")
    (tmp_path / "patients" / "p1" / "rest.jpg").write_bytes(broken)
    (tmp_path / "gen" / "p1" / "smile").mkdir(parents=True)
    Image.open(faces["grace_hopper"]).convert("RGB").save(tmp_path / "gen" / "p1" / "smile" / "a_0.png")
    return ["evaluate", "--generated", f"m={tmp_path / 'gen'}", "--patients", tmp_path / "patients",
            "--backend", "dlib", "--out", tmp_path / "evaluation"]


def cut_short_jpeg():
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.open(photo_paths()["astronaut"]).convert("RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()[: len(buf.getvalue()) // 2]


@pytest.mark.parametrize("broken", [b"", cut_short_jpeg()], ids=["0 bytes", "cut short"])
def test_evaluate_refuses_an_unreadable_patient_photo_by_name_before_any_work(tmp_path, capsys, broken):
    code, err = run(capsys, *evaluation_folders(tmp_path, broken))
    assert code == 2, err
    assert "1 photo(s) cannot be read" in err and os.path.join("p1", "rest.jpg") in err, err
    assert not os.path.exists(tmp_path / "evaluation")


@pytest.mark.parametrize("flag, value", [("--dlib-threshold", "nan"), ("--dlib-threshold", "inf"),
                                         ("--dlib-threshold", "-0.1"), ("--threshold", "nan"),
                                         ("--threshold", "2.5")])
@pytest.mark.parametrize("command", ["identity", "evaluate"])
def test_thresholds_must_be_finite_numbers_in_range(tmp_path, capsys, command, flag, value):
    face = photo_paths()["astronaut"]
    argv = (["identity", face, face, "--backend", "dlib"] if command == "identity"
            else evaluation_folders(tmp_path, open(face, "rb").read()))
    code, err = run(capsys, *argv, flag, value)
    assert code == 2, err
    assert f"{flag} {value}" in err and "give a number from" in err, err
    assert not os.path.exists(tmp_path / "evaluation")


def test_identity_of_one_photo_twice_is_one_person(capsys):
    face = photo_paths()["astronaut"]
    code = main(["identity", face, face, "--backend", "dlib"])
    assert code == 0 and "same person" in capsys.readouterr().out
