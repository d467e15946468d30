"""Files that claim what they are not, for the hostile-input tests (test_hostile_core.py, test_study_hostile.py)."""
import struct
import zlib


def png_claiming(path, width, height):
    """A small PNG file whose header claims width x height grey pixels (its first rows all there is) -> str(path)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = zlib.compress(b"\0" * (width + 1) * 4)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    return str(path)
