"""ArcFace, the paper's identity measure: one of the two recognizers (Recognizer) the privacy gate and the
measures use.

Faces are aligned to insightface's 112x112 five-point ArcFace template using keypoints taken from
the MediaPipe landmarks (so no extra detector model is needed), embedded by any ArcFace ONNX that
insightface's model zoo loads (buffalo_l/w600k_r50.onnx, antelopev2/glintr100.onnx, ...), and
compared by cosine similarity. Lower similarity to the patient = more private.

THRESHOLD: 0.28 is ArcFace's same-person decision score at a false-accept rate of 0.1% on LFW;
an image whose similarity to the patient reaches it would be taken for the patient by a face
recogniser, so privacy checks pass an image only strictly below it.
"""
import os
import threading

import numpy as np

from ..base.errors import InputError
from ..base.model_files import missing_hint
from ..base.photos import to_rgb_uint8
from ..face import regions as R
from ..face.landmarks import face_landmarks
from .recognizer import Recognizer

THRESHOLD = 0.28
# A cosine similarity lies in -1..1; above 1 every image passes (the test of a gate's plumbing), below -1 none.
THRESHOLD_RANGE = (-1.0, 2.0)
SIZE = 112
NOSE_TIP = 4  # of MediaPipe's nose points, the one nearest the template's nose (measured: < 1.5 px)

_models = {}
_lock = threading.Lock()


def providers():
    """onnxruntime execution providers to use: CUDA first where this onnxruntime has it, CPU always."""
    import onnxruntime
    have = onnxruntime.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in have] or have


def keypoints(xy):
    """(478, 2+) MediaPipe landmarks in pixels -> (5, 2) float32 in insightface's order.

    Order (image left to right, as insightface's detectors give them): the eye on the image's left
    (the subject's right pupil), the other pupil, the nose tip, the mouth corner on the image's
    left, the other mouth corner.
    """
    xy = np.asarray(xy, dtype=np.float32)[:, :2]
    idx = [R.PUPIL["right"], R.PUPIL["left"], NOSE_TIP, R.MOUTH_CORNER["right"], R.MOUTH_CORNER["left"]]
    return xy[idx].copy()


def alignment(xy, size=SIZE):
    """(478, 2+) landmarks -> the (2, 3) similarity transform onto the ArcFace template at size.

    A least-squares fit of five points by four parameters: a neutral frontal face lands within
    about 1.5 px of every template point, a wide smile or turned head a few pixels off.
    """
    import warnings

    from insightface.utils import face_align
    with warnings.catch_warnings():  # skimage deprecates the estimate() insightface calls
        warnings.simplefilter("ignore", FutureWarning)
        return face_align.estimate_norm(keypoints(xy), size)


def align(image, xy, size=SIZE):
    """(H, W, C) photo + its (478, 2+) landmarks -> (size, size, 3) uint8 RGB ArcFace crop."""
    import cv2
    return cv2.warpAffine(to_rgb_uint8(image), alignment(xy, size), (size, size), borderValue=0.0)


def load_model(path):
    """The process-wide insightface ArcFaceONNX for an ONNX file (loaded once per file)."""
    if not path or not os.path.isfile(path):
        raise InputError(f"ArcFace model file {path!r} not found: put an ArcFace ONNX (e.g. "
                         f"buffalo_l/w600k_r50.onnx) in ComfyUI/models/insightface/{missing_hint('w600k_r50.onnx')}")
    return per_file(_models, path, _load)


def per_file(cache, path, build):
    """build(path), once per version of the file (its mtime) for the whole process."""
    key = os.path.realpath(path)
    stamp = os.stat(key).st_mtime_ns
    with _lock:
        cached = cache.get(key)
        if cached is None or cached[0] != stamp:
            cache[key] = (stamp, build(key))
        return cache[key][1]


def _load(path):
    from insightface.model_zoo import get_model
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX
    name = os.path.basename(path)
    try:
        model = get_model(path, providers=providers())
    except Exception as e:  # onnx/onnxruntime raise many types for a corrupt or foreign file
        raise InputError(f"{name} is not a loadable ONNX model ({type(e).__name__}: {e}); "
                         f"replace it with an ArcFace recognition ONNX") from None
    if not isinstance(model, ArcFaceONNX):
        raise InputError(f"{name} is not an ArcFace recognition model (insightface read it as "
                         f"{type(model).__name__}); expected input Nx3x112x112 and one embedding output")
    return model


def blob(model, crops):
    """list of (S, S, 3) uint8 RGB crops -> (N, 3, S, S) float32 network input, exactly as
    insightface's ArcFaceONNX.get_feat builds it (mean/std from the model file)."""
    import cv2
    bgr = [np.ascontiguousarray(c[..., ::-1]) for c in crops]
    b = cv2.dnn.blobFromImages(bgr, 1.0 / model.input_std, model.input_size,
                               (model.input_mean,) * 3, swapRB=True)
    return np.ascontiguousarray(b, dtype=np.float32)


def embed_aligned(model, crops):
    """list of (S, S, 3) uint8 RGB aligned crops -> (N, D) float32 unit-length embeddings."""
    bgr = [np.ascontiguousarray(c[..., ::-1]) for c in crops]  # insightface's get_feat takes BGR
    if isinstance(model.input_shape[0], int):  # a model exported with a fixed batch takes one face at a time
        feats = np.concatenate([model.get_feat([b]) for b in bgr])
    else:
        feats = model.get_feat(bgr)
    feats = np.asarray(feats, dtype=np.float32).reshape(len(crops), -1)
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    if not np.all(np.isfinite(feats)) or np.any(norms < 1e-12):
        raise InputError(f"{os.path.basename(model.model_file)} gave an empty or non-finite embedding; "
                         f"it is not a working ArcFace model")
    return feats / norms


def aligned_crops(images, size=SIZE, landmarks=None, what="image"):
    """list of photos -> list of (size, size, 3) uint8 RGB ArcFace crops.

    landmarks: optional list of (478, 2+) arrays (already computed) to skip detection.
    """
    crops = []
    for i, im in enumerate(images):
        name = f"{what} {i + 1} of {len(images)}" if len(images) > 1 else what
        if landmarks is not None:
            xy = landmarks[i]
        else:  # two faces would leave it to chance which one is checked
            face = face_landmarks(im, max_faces=2, what=name)
            if face.faces_found > 1:
                raise InputError(f"{name} shows {face.faces_found} faces; the identity check needs one face per "
                                 f"image: crop it to one person")
            xy = face.xy
        crops.append(align(im, xy, size))
    return crops


def embeddings(images, model_path, what="image", landmarks=None):
    """list of photos -> (N, D) unit embeddings, each face found and aligned by its landmarks."""
    model = load_model(model_path)
    return embed_aligned(model, aligned_crops(images, model.input_size[0], landmarks, what))


def cosine(a, b):
    """(N, D), (M, D) embeddings -> (N, M) cosine similarities."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return a @ b.T


class ArcFace(Recognizer):
    name, label, unit, higher_is_alike = "arcface", "ArcFace", "similarity", True
    threshold, threshold_range, threshold_source = THRESHOLD, THRESHOLD_RANGE, "FAR 0.1% on LFW"

    def __init__(self, model_path):
        self.model_path = model_path

    def features(self, images, what="image", landmarks=None):
        return embeddings(images, self.model_path, what, landmarks)

    def scores(self, a, b):
        return cosine(a, b)

    report_columns = ["similarity", "dissimilarity", "closest reference"]

    def report_cells(self, m):
        return [f"{m['similarity']:.4f}", f"{1.0 - m['similarity']:.4f}", str(m["closest"] + 1)]
