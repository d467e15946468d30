"""Identity: is a generated face still recognisably the patient? ArcFace here; check() also runs
dlib's recogniser (identity_dlib) or both, by `backend`: auto (ArcFace when its ONNX is present,
else dlib), arcface, dlib, both (an image passes only what both pass).

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

# The privacy gate's /history record of which images of each batch it passed ([{"batch", "kept"}]).
KEPT_KEY = "palsysim_kept"
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


# --- backends: ArcFace (this module), dlib (identity_dlib), or both -----------------------------
BACKENDS = ("auto", "arcface", "dlib", "both")


def check_thresholds(threshold, dlib_threshold, names=("threshold", "dlib_threshold")):
    """Refuse a threshold that is not a finite number in its range: NaN fails every comparison, so a NaN
    threshold would call one photo two people, or pass every image."""
    from . import dlib_face as identity_dlib
    ranges = (THRESHOLD_RANGE, identity_dlib.THRESHOLD_RANGE)
    for name, value, (lo, hi) in zip(names, (threshold, dlib_threshold), ranges):
        if not (isinstance(value, (int, float)) and lo <= value <= hi):  # False for NaN too
            raise InputError(f"{name} {value} is not usable: give a number from {lo} to {hi}")


def backend_status(arcface_path=None):
    """{"arcface": None or why not, "dlib": None or why not}: which backends can run here."""
    from . import dlib_face as identity_dlib
    arcface = None if arcface_path and os.path.isfile(arcface_path) else (
        f"no ArcFace ONNX at {arcface_path}" if arcface_path else "no ArcFace ONNX given")
    return {"arcface": arcface, "dlib": identity_dlib.unavailable()}


def resolve_backend(backend, arcface_path=None):
    """backend name -> tuple of the backends to run, ("arcface",), ("dlib",) or both.

    auto: ArcFace when its ONNX file exists, else dlib; an InputError names what is missing.
    """
    if backend not in BACKENDS:
        raise InputError(f"unknown identity backend {backend!r}: use one of {', '.join(BACKENDS)}")
    status = backend_status(arcface_path)
    if backend == "auto":
        for b in ("arcface", "dlib"):
            if status[b] is None:
                return (b,)
        raise InputError(f"no identity model can run: {status['arcface']} (put an ArcFace ONNX in "
                         f"ComfyUI/models/insightface/) and the dlib backend is missing: {status['dlib']}")
    used = ("arcface", "dlib") if backend == "both" else (backend,)
    if "arcface" in used:
        load_model(arcface_path)  # its own message for a missing or broken file
    if "dlib" in used and status["dlib"]:
        raise InputError(f"the dlib identity backend is missing: {status['dlib']}")
    return used


def features(backend, images, arcface_path, what):
    from . import dlib_face as identity_dlib
    if backend == "arcface":
        return embeddings(images, arcface_path, what)
    return identity_dlib.descriptors(images, what)


def check(images, references, backend="auto", arcface_path=None, threshold=THRESHOLD, dlib_threshold=None):
    """Each image's identity against the patient, by one backend or both.

    references: photos of the patient; each backend takes the reference the image resembles most
    (the conservative choice). An image that cannot be checked (no face, several faces) is never
    passed and never raises: its row says why. A reference without a usable face raises.
    Returns (backends used, rows): one dict per image with "passed", "problem" (None or the
    reason), "arcface" ({"similarity", "closest", "passed"} or None), "dlib" ({"distance",
    "closest", "passed"} or None). passed: every backend used passes it.
    """
    from . import dlib_face as identity_dlib
    dlib_threshold = identity_dlib.THRESHOLD if dlib_threshold is None else dlib_threshold
    check_thresholds(threshold, dlib_threshold)
    if not len(images) or not len(references):
        raise InputError("identity check needs at least one image and one reference photo")
    used = resolve_backend(backend, arcface_path)
    refs = {b: features(b, references, arcface_path, "reference") for b in used}
    rows = []
    for i, image in enumerate(images):
        what = f"image {i + 1} of {len(images)}" if len(images) > 1 else "image"
        row = {"passed": False, "problem": None, "arcface": None, "dlib": None}
        try:
            for b in used:
                feat = features(b, [image], arcface_path, what)
                if b == "arcface":
                    sims = cosine(feat, refs[b])[0]
                    j = int(np.argmax(sims))
                    row[b] = {"similarity": float(sims[j]), "closest": j, "passed": bool(sims[j] < threshold)}
                else:
                    dist = identity_dlib.distances(feat, refs[b])[0]
                    j = int(np.argmin(dist))
                    row[b] = {"distance": float(dist[j]), "closest": j, "passed": bool(dist[j] >= dlib_threshold)}
        except InputError as e:
            row.update(arcface=None, dlib=None, problem="no face" if "no face" in str(e) else str(e))
        row["passed"] = row["problem"] is None and all(row[b]["passed"] for b in used)
        rows.append(row)
    return used, rows


def report(used, rows, threshold=THRESHOLD, dlib_threshold=None):
    """Per-image table (markdown) of check() rows; names images by index only."""
    from . import dlib_face as identity_dlib
    dlib_threshold = identity_dlib.THRESHOLD if dlib_threshold is None else dlib_threshold
    rules = {"arcface": f"ArcFace similarity < {threshold:.3f}", "dlib": f"dlib distance >= {dlib_threshold:.3f}"}
    heads = {"arcface": ["similarity", "dissimilarity", "closest reference"],
             "dlib": ["dlib distance", "closest reference (dlib)"]}
    cols = [h for b in used for h in heads[b]]
    held = sum(not r["passed"] for r in rows)
    faceless = sum(r["problem"] == "no face" for r in rows)
    no_face = f" ({faceless} with no face: {'its' if faceless == 1 else 'their'} identity cannot be checked)" * bool(faceless)
    # The outcome first: a node's text box shows the top lines without scrolling.
    lines = [f"{len(rows) - held} of {len(rows)} passed, {held} held back{no_face}.",
             f"Identity check, {' and '.join(used)} (pass: {'; '.join(rules[b] for b in used)})", "",
             "| image | " + " | ".join(cols) + " | result |", "|---:|" + "---:|" * len(cols) + "---|"]
    for i, r in enumerate(rows):
        cells = []
        for b in used:
            m = r[b]
            if m is None:
                cells += ["n/a"] * len(heads[b])
            elif b == "arcface":
                cells += [f"{m['similarity']:.4f}", f"{1.0 - m['similarity']:.4f}", str(m["closest"] + 1)]
            else:
                cells += [f"{m['distance']:.4f}", str(m["closest"] + 1)]
        result = ("pass" if r["passed"] else f"HELD: {r['problem']}: held back" if r["problem"]
                  else "HELD: resembles the patient")
        lines.append(f"| {i + 1} | " + " | ".join(cells) + f" | {result} |")
    return "\n".join(lines)
