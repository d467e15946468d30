"""dlib's face recogniser: a real, pretrained identity model that installs from the package registry.

Model: dlib's ResNet face-recognition network (`dlib_face_recognition_resnet_model_v1.dat`, 128-d
descriptors, 99.38% on LFW), found with its 5-point landmark predictor
(`shape_predictor_5_face_landmarks.dat`), both CC0, shipped by the `face_recognition_models` package;
dlib itself (Boost licence) comes from the `dlib-bin` wheel and brings its HOG frontal-face detector.
The 68-point predictor in the same package is never used: its training data (iBUG 300-W) forbids
commercial use.

Alignment is dlib's own 5-point path (HOG detector, 5-point predictor, dlib's 150x150 face chip
with padding 0.25), dlib's reference pipeline for this network (dnn_face_recognition_ex.cpp). MediaPipe's
points mapped onto the same chip move each descriptor by 0.10 on average from the reference's (a
sixth of the threshold; pairwise distances by 0.011) on real photos, so dlib's own path is used
(`python tests/bench_dlib_alignment.py`, BENCHMARKS.md).

THRESHOLD: 0.6 Euclidean distance between descriptors is dlib's documented same-person decision
(dlib's dnn_face_recognition_ex.cpp and face_recognition's `tolerance`): below it two faces are
taken for one person. Privacy checks pass an image only at or above it.
"""
import importlib.util
import os
import threading

import numpy as np

from ..base.errors import InputError
from ..base.photos import to_rgb_uint8
from .recognizer import Recognizer

THRESHOLD = 0.6
THRESHOLD_RANGE = (0.0, 2.0)  # a distance; descriptors are about unit length
CHIP = 150       # dlib's face chip side for the recogniser
PADDING = 0.25   # dlib's default chip padding
UPSAMPLE = 1     # the detector's upsampling, as face_recognition calls it (finds faces down to ~40 px)
FILES = {"predictor": "shape_predictor_5_face_landmarks.dat",
         "recogniser": "dlib_face_recognition_resnet_model_v1.dat"}

_models = {}
_lock = threading.Lock()


def model_dir():
    """face_recognition_models' models/ folder, found without importing the package (its
    __init__ needs setuptools' pkg_resources, gone from new environments)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], "models")


def unavailable():
    """None when the dlib backend can run here, else the reason and the fix (a sentence)."""
    try:
        import dlib  # noqa: F401
    except ImportError as e:
        return (f"dlib is not importable ({e}); install it with `pip install dlib-bin==20.0.1` (prebuilt "
                f"wheels; where none exists for this platform, `pip install dlib` builds it with CMake)")
    folder = model_dir()
    if folder is None:
        return "face_recognition_models is not installed; install it with `pip install face_recognition_models==0.3.0`"
    missing = [f for f in FILES.values() if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        return f"face_recognition_models lacks {', '.join(missing)} in {folder}; reinstall face_recognition_models==0.3.0"
    return None


def models():
    """(detector, 5-point predictor, recogniser), loaded once per process; InputError when missing."""
    reason = unavailable()
    if reason:
        raise InputError(f"the dlib identity backend is missing: {reason}")
    with _lock:
        if not _models:
            import dlib
            folder = model_dir()
            _models["all"] = (dlib.get_frontal_face_detector(),
                              dlib.shape_predictor(os.path.join(folder, FILES["predictor"])),
                              dlib.face_recognition_model_v1(os.path.join(folder, FILES["recogniser"])))
        return _models["all"]


def five_points(image, what="image"):
    """(H, W, C) photo -> dlib full_object_detection of its largest face (5 points); InputError when none."""
    detector, predictor, _ = models()
    rgb = np.ascontiguousarray(to_rgb_uint8(image))
    faces = detector(rgb, UPSAMPLE)
    if not len(faces):
        raise InputError(f"no face found in {what} by dlib's detector: use a frontal, well-lit face")
    box = max(faces, key=lambda r: r.area())  # a patch of texture can also fire; the face is the big one
    return predictor(rgb, box)


def chip(image, shape):
    """The (150, 150, 3) uint8 RGB face chip dlib's recogniser sees for a 5-point shape."""
    import dlib
    return dlib.get_face_chip(np.ascontiguousarray(to_rgb_uint8(image)), shape, size=CHIP, padding=PADDING)


def descriptors(images, what="image"):
    """list of photos -> (N, 128) float64 descriptors (dlib's 5-point alignment)."""
    _, _, recogniser = models()
    out = []
    for i, im in enumerate(images):
        name = f"{what} {i + 1} of {len(images)}" if len(images) > 1 else what
        shape = five_points(im, name)
        out.append(np.asarray(recogniser.compute_face_descriptor(np.ascontiguousarray(to_rgb_uint8(im)), shape)))
    return np.asarray(out, dtype=np.float64).reshape(len(images), 128)


def distances(a, b):
    """(N, 128), (M, 128) descriptors -> (N, M) Euclidean distances."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)


class Dlib(Recognizer):
    name, label, unit, higher_is_alike = "dlib", "dlib", "distance", False
    threshold, threshold_range, threshold_source = THRESHOLD, THRESHOLD_RANGE, "dlib's documented decision"

    def features(self, images, what="image", landmarks=None):  # dlib finds and aligns faces itself
        return descriptors(images, what)

    def scores(self, a, b):
        return distances(a, b)

    report_columns = ["dlib distance", "closest reference (dlib)"]

    def report_cells(self, m):
        return [f"{m['distance']:.4f}", str(m["closest"] + 1)]
