"""Photos and graphs shared by the tests that drive the real host (test_host.py, test_bad_inputs.py,
bench_server_memory.py): package data photos, the landmarks graph, and the check that a preview's
landmarks sit on the face."""
import importlib.util
import os

import cv2
import numpy as np


def package_file(package, *parts):
    """A data file shipped inside an installed package, found without importing it."""
    return os.path.join(importlib.util.find_spec(package).submodule_search_locations[0], *parts)


ASTRONAUT = package_file("skimage", "data", "astronaut.png")        # 512x512 RGB, one face
COFFEE = package_file("skimage", "data", "coffee.png")              # a cup of coffee, no face
GRACE_HOPPER = package_file("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg")
TOM_HANKS = package_file("insightface", "data", "images", "Tom_Hanks_54745.png")  # 112x112 crop


def landmarks_graph(image_name, min_confidence=0.5, backend="auto", prefix="landmarks"):
    """LoadImage -> PalsyFaceLandmarks -> SaveImage of the preview (node "3")."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image_name}},
        "2": {"class_type": "PalsyFaceLandmarks",
              "inputs": {"image": ["1", 0], "max_faces": 1, "min_confidence": min_confidence,
                         "face_index": 0, "backend": backend}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 1], "filename_prefix": prefix}},
    }


def haar_face_box(rgb):
    """OpenCV's Haar face detector: an independent opinion of where the face is (x0, y0, x1, y1)."""
    cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml"))
    faces = cascade.detectMultiScale(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 1.1, 5)
    assert len(faces) >= 1, "the Haar detector finds no face in the test photo"
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    return x, y, x + w, y + h


def assert_landmarks_drawn_on_face(photo, preview):
    """The preview is the photo with marks drawn on it, and the marks sit on the face."""
    assert preview.shape == photo.shape
    changed = np.abs(preview.astype(int) - photo.astype(int)).max(axis=2) > 40
    assert changed.sum() > 200, "the preview shows (almost) no landmarks"
    assert changed.mean() < 0.5, "the preview does not look like the photo any more"
    x0, y0, x1, y1 = haar_face_box(photo)
    ys, xs = np.nonzero(changed)
    pad = 0.25 * (x1 - x0)  # the mesh reaches a little past Haar's box (chin, forehead)
    inside = (xs >= x0 - pad) & (xs <= x1 + pad) & (ys >= y0 - pad) & (ys <= y1 + pad)
    assert inside.mean() > 0.9, f"only {inside.mean():.0%} of the drawn marks are on the face"
