"""Real face photographs that ship inside installed packages (no downloads), found via __file__."""
import os

from palsysim.demo import sample_photos


def photo_paths():
    """{name: path} of three different people's frontal photos: the demo's two, and Tom Hanks."""
    import insightface

    # a 112x112 crop insightface itself aligned to the ArcFace template
    tom_hanks = os.path.join(os.path.dirname(insightface.__file__), "data", "images", "Tom_Hanks_54745.png")
    return {**sample_photos(), "tom_hanks": tom_hanks}


def photos():
    """{name: (H, W, 3) uint8 RGB} of photo_paths()."""
    from palsysim.base.photos import read_image
    return {k: read_image(p) for k, p in photo_paths().items()}
