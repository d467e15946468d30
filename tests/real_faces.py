"""Real face photographs that ship inside installed packages (no downloads), found via __file__."""
import os


def photo_paths():
    """{name: path} of three different people's frontal photos."""
    import insightface
    import matplotlib
    import skimage
    return {
        "astronaut": os.path.join(os.path.dirname(skimage.__file__), "data", "astronaut.png"),
        "grace_hopper": os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg"),
        # a 112x112 crop insightface itself aligned to the ArcFace template
        "tom_hanks": os.path.join(os.path.dirname(insightface.__file__), "data", "images", "Tom_Hanks_54745.png"),
    }


def photos():
    """{name: (H, W, 3) uint8 RGB} of photo_paths()."""
    from palsysim.images import read_image
    return {k: read_image(p) for k, p in photo_paths().items()}
