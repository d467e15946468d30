"""MediaPipe face landmarks (478 points) through either of MediaPipe's two APIs.

The legacy Face Mesh API (mediapipe <= 0.10.21) carries its model inside the wheel. The Tasks API
(every release since) needs a `face_landmarker.task` file; both give the same 478 indices.
"""
import contextlib
import math
import os
import sys
import threading
from collections import OrderedDict

# MediaPipe's C++ side logs a screenful per detector to stderr; keep warnings and errors only.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from dataclasses import dataclass

import numpy as np

from ..base.errors import InputError
from ..base.photos import check_size, to_rgb_uint8

N_POINTS = 478
TASK_FILE = "face_landmarker.task"


@dataclass(frozen=True)
class Face:
    """One chosen face of one photo.

    points: (478, 3) float32; x, y in pixels of the photo, z in MediaPipe's relative depth scaled
    by the photo's width. image_size: (height, width). face_index: its rank among the faces found,
    0 being the largest. faces_found: how many faces the detector saw.
    """
    points: np.ndarray
    image_size: tuple
    face_index: int
    faces_found: int

    @property
    def xy(self):
        """(478, 2) pixel coordinates."""
        return self.points[:, :2]

    def to_json(self):
        return {"image_size": list(self.image_size), "face_index": self.face_index,
                "faces_found": self.faces_found, "points": np.round(self.points, 3).tolist()}


# Each detector holds about 25 MiB of MediaPipe graph; a workflow uses one or two settings, so the
# least recently used beyond these few are closed (every distinct setting used to stay for good).
MAX_DETECTORS = 4
_detectors = OrderedDict()  # (backend, max_faces, min_confidence rounded, task_file) -> (detect, close)
_lock = threading.RLock()  # MediaPipe graphs are not safe to share between threads


def has_legacy_api():
    import mediapipe as mp
    return hasattr(getattr(mp, "solutions", None), "face_mesh")


def _legacy_detector(max_faces, min_confidence):
    import mediapipe as mp
    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=max_faces,
                                           refine_landmarks=True, min_detection_confidence=min_confidence)

    def detect(rgb):
        found = mesh.process(rgb).multi_face_landmarks or []
        return [[(p.x, p.y, p.z) for p in f.landmark] for f in found]
    return detect, mesh.close


def default_task_file():
    """The face_landmarker.task used when none is given: $PALSYSIM_FACE_LANDMARKER, else the
    models folder's (base.model_files.find_model); None when neither exists."""
    from ..base.model_files import find_model
    return os.environ.get("PALSYSIM_FACE_LANDMARKER") or find_model("mediapipe", TASK_FILE)


def missing_task_file(task_file=None):
    """Why the Tasks API cannot start: the model file, its URL and the folder it goes in (task_file's, and
    the first models/mediapipe/ folder searched, where the nodes find it)."""
    from ..base.model_files import by_key, missing_hint, model_folders
    folders = model_folders("mediapipe")
    folder = folders[0] if folders else os.path.join("ComfyUI", "models", "mediapipe")
    into = f"{os.path.dirname(task_file)}{os.sep}, or into {folder}" if task_file else folder
    looked = task_file or " and ".join(os.path.join(f, TASK_FILE) for f in folders) or TASK_FILE
    return (f"MediaPipe's Tasks API (mediapipe >= 0.10.30) needs the model file {TASK_FILE}, not found at "
            f"{looked}: download {by_key(TASK_FILE).url} into {into}{os.sep}{missing_hint(TASK_FILE)}; "
            f"the pack's install.py (run by ComfyUI-Manager) fetches it when downloads are allowed")


def _tasks_detector(max_faces, min_confidence, task_file):
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision
    if not task_file or not os.path.isfile(task_file):
        raise InputError(missing_task_file(task_file))
    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=task_file), running_mode=vision.RunningMode.IMAGE,
        num_faces=max_faces, min_face_detection_confidence=min_confidence,
        min_face_presence_confidence=min_confidence)
    try:
        landmarker = vision.FaceLandmarker.create_from_options(options)
    except (RuntimeError, ValueError) as e:
        raise InputError(f"{os.path.basename(task_file)} is not a usable MediaPipe face landmarker model ({e}); "
                         f"replace it with the official {TASK_FILE}") from None

    def detect(rgb):
        found = landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)).face_landmarks
        return [[(p.x, p.y, p.z) for p in f] for f in found]
    return detect, landmarker.close


def detector(max_faces=1, min_confidence=0.5, backend="auto", task_file=None):
    """The process-wide detector for these settings; built once, reused for every photo.

    backend: "legacy", "tasks", or "auto" (legacy where this mediapipe has it, else tasks).
    """
    if backend == "auto":
        backend = "legacy" if has_legacy_api() else "tasks"
    if backend not in ("legacy", "tasks"):
        raise InputError(f"unknown landmark backend {backend!r}: use auto, legacy or tasks")
    if backend == "legacy" and not has_legacy_api():
        raise InputError("this mediapipe has no legacy Face Mesh API (removed after 0.10.21): use backend tasks")
    if backend == "tasks" and task_file is None:
        task_file = default_task_file()
    key = (backend, int(max_faces), confidence_key(min_confidence), task_file if backend == "tasks" else None)
    with _lock:
        found = _detectors.pop(key, None)
        if found is None:
            found = _legacy_detector(*key[1:3]) if backend == "legacy" else _tasks_detector(*key[1:4])
        _detectors[key] = found  # the most recently used last
        while len(_detectors) > MAX_DETECTORS:
            _detectors.popitem(last=False)[1][1]()
        return found[0]


_mute_native_logs = False


def mute_native_logs():
    """For a command-line process: MediaPipe's C++ log lines (TFLite's delegate notice, absl's warnings about
    its own graph), written straight to file descriptor 2 whatever GLOG_minloglevel says, say nothing about
    the user's run. From now on they are dropped while a detector is built and runs. A server never calls
    this: its other threads write to the same descriptor."""
    global _mute_native_logs
    _mute_native_logs = True


@contextlib.contextmanager
def _native_logs_muted():
    if not _mute_native_logs:
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def confidence_key(min_confidence):
    """min_confidence as the detector cache's key: a finite number in [0, 1], rounded to 4 digits."""
    value = float(min_confidence)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise InputError(f"min_confidence must be a number from 0 to 1; got {min_confidence}: the default is 0.5")
    return round(value, 4)


def detect_faces(image, max_faces=1, min_confidence=0.5, backend="auto", task_file=None):
    """Every face MediaPipe finds, largest first.

    image: (H, W, C) photo (see images.to_rgb_uint8). Returns a list of (478, 3) float32 arrays in
    pixels (x, y) and width-scaled depth (z); empty when there is no face.
    """
    rgb = to_rgb_uint8(image)
    check_size(rgb)
    with _lock, _native_logs_muted():  # the lock: no other thread closes this detector meanwhile
        found = detector(max_faces, min_confidence, backend, task_file)(rgb)
    h, w = rgb.shape[:2]
    faces = [np.asarray(f, dtype=np.float32) * np.array([w, h, w], dtype=np.float32) for f in found]
    return sorted(faces, key=lambda p: -np.prod(p[:, :2].max(0) - p[:, :2].min(0)))


def face_landmarks(image, max_faces=1, min_confidence=0.5, face_index=0, backend="auto",
                   task_file=None, what="image"):
    """The chosen face of one photo as a Face; an InputError (never an empty result) when absent."""
    rgb = to_rgb_uint8(image, what)
    check_size(rgb, what)
    faces = detect_faces(rgb, max(max_faces, face_index + 1), min_confidence, backend, task_file)
    if not faces:
        raise InputError(f"no face found in {what} (min_confidence {min_confidence}): use a frontal, "
                         f"well-lit face photo or lower min_confidence")
    if face_index >= len(faces):
        raise InputError(f"{what} has {len(faces)} face(s); face_index {face_index} does not exist")
    return Face(faces[face_index], rgb.shape[:2], face_index, len(faces))
