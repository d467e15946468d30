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
