"""Expression fidelity: does the generated face show the patient's palsy?

Without a reference photo of the target expression, fidelity compares the facial ASYMMETRY of the
generated face with the patient's (asymmetry.measure: right - left per measure, in inter-pupil
units or degrees). The generated face is a different person, so absolute sizes differ; the
one-sided difference is what carries the palsy. Which measures matter depends on the Yanagihara
item the photo shows (ITEM_WEIGHTS). Per measure m:

    error_m = |asym_generated[m] - asym_patient[m]|
    score_m = exp(-error_m / TOLERANCE[m])           (1 = same asymmetry, 0.37 at one tolerance)
    score   = sum_m w_m score_m / sum_m w_m          (in (0, 1]; 1 = perfect)

A palsy on the wrong side has the opposite sign and scores as badly as it should.

With a reference photo: LPIPS (AlexNet, v0.1 linear layers, the usual [-1, 1] input), run only when
AlexNet's ImageNet backbone file is already on disk (never downloaded here).
"""
import os
import threading

import numpy as np

from ..base.errors import InputError
from ..base.model_files import missing_hint
from ..base.photos import to_rgb_uint8
from ..base.vocabulary import ITEMS
from ..face.asymmetry import MEASURES, measure

# How far apart two faces' asymmetries may be before a measure's score falls to 1/e: about half
# of a moderate palsy's displacement (lengths in inter-pupil distances, smile_angle in degrees).
TOLERANCE = {"brow_height": 0.03, "palpebral_fissure_height": 0.02, "commissure_height": 0.03,
             "commissure_excursion": 0.03, "smile_angle": 3.0}

# The measures each Yanagihara item exercises.
_ALL = {m: 1.0 for m in MEASURES}
_EYE = {"palpebral_fissure_height": 1.0}
ITEM_WEIGHTS = {
    "rest": _ALL,
    "raise_eyebrows": {"brow_height": 1.0},  # wrinkle forehead: frontalis lifts the brow
    "blink": _EYE,
    "gentle_eye_closure": _EYE,
    "tight_eye_closure": {"palpebral_fissure_height": 1.0, "brow_height": 0.25},  # brow is drawn down too
    "wink": _EYE,  # close the eye on the involved side only
    # nose wrinkling lifts the upper lip (and corner) and narrows the eye; no nose measure exists
    "nose_wrinkle": {"commissure_height": 0.5, "palpebral_fissure_height": 0.5},
    "whistle": {"commissure_excursion": 1.0, "smile_angle": 0.5},  # corners purse inwards
    "grin": {"commissure_excursion": 1.0, "commissure_height": 1.0, "smile_angle": 1.0},
    "lower_lip_depression": {"commissure_height": 1.0, "smile_angle": 1.0},
}
assert tuple(ITEM_WEIGHTS) == ITEMS


def asymmetry_vector(xy):
    """(478, 2+) landmarks -> {measure: right - left}."""
    a = measure(xy)["asymmetry"]
    return {m: a[m]["difference"] for m in MEASURES}


def expression_fidelity(generated_xy, patient_xy, item="rest"):
    """Fidelity of a generated face's asymmetry to the patient's for one Yanagihara item.

    generated_xy, patient_xy: (478, 2+) landmarks in pixels. Returns {"score": float in (0, 1],
    "item": item, "rows": [{measure, weight, patient, generated, error, score}, ...]}.
    """
    if item not in ITEM_WEIGHTS:
        raise InputError(f"unknown Yanagihara item {item!r}: use one of {', '.join(ITEMS)}")
    weights = ITEM_WEIGHTS[item]
    gen, pat = asymmetry_vector(generated_xy), asymmetry_vector(patient_xy)
    rows = []
    for m in MEASURES:
        err = abs(gen[m] - pat[m])
        rows.append({"measure": m, "weight": weights.get(m, 0.0), "patient": pat[m], "generated": gen[m],
                     "error": err, "score": float(np.exp(-err / TOLERANCE[m]))})
    total = sum(r["weight"] for r in rows)
    score = sum(r["weight"] * r["score"] for r in rows) / total
    return {"score": float(score), "item": item, "rows": rows}


def fidelity_table(result):
    """expression_fidelity's result -> markdown table (measures only; no image data)."""
    lines = [f"Expression fidelity ({result['item']}): {result['score']:.3f}", "",
             "| measure | weight | patient R-L | generated R-L | error | score |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['measure']} | {r['weight']:.2f} | {r['patient']:+.4f} | {r['generated']:+.4f} | "
                     f"{r['error']:.4f} | {r['score']:.3f} |")
    return "\n".join(lines)


# --- LPIPS -----------------------------------------------------------------------------------

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's ImageNet AlexNet, as torch.hub caches it
LPIPS_SIZE = 256
_lpips = {}
_lpips_lock = threading.Lock()


def alexnet_weights(path=None):
    """The AlexNet backbone file LPIPS needs: path if given, else torch's hub cache; or a message."""
    import torch
    candidate = path or os.path.join(torch.hub.get_dir(), "checkpoints", ALEXNET_FILE)
    if not os.path.isfile(candidate):
        raise InputError(
            f"LPIPS needs AlexNet's ImageNet weights ({ALEXNET_FILE}, torchvision's file) and found none at "
            f"{candidate}: copy the file there (or give its path), or run without LPIPS. PalsySim never "
            f"downloads weights unasked{missing_hint(ALEXNET_FILE)}.")
    return candidate


def lpips_model(weights=None):
    """The process-wide LPIPS-AlexNet (v0.1) with its backbone loaded from alexnet_weights(weights)."""
    path = alexnet_weights(weights)
    key = os.path.realpath(path)
    with _lpips_lock:
        if key not in _lpips:
            _lpips[key] = _build_lpips(key)
        return _lpips[key]


def _build_lpips(path):
    import warnings

    import torch
    try:
        import lpips
    except ImportError:
        raise InputError("LPIPS needs the lpips package: pip install lpips==0.1.4") from None
    with warnings.catch_warnings():  # lpips asks torchvision for an untrained AlexNet the old way
        warnings.simplefilter("ignore", UserWarning)
        # pnet_rand: an untrained trunk (no download); its ImageNet weights come from the file below.
        # The linear layers (v0.1, calibrated on human judgements) ship inside the lpips wheel.
        net = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise InputError(f"{os.path.basename(path)} is not a readable torch weights file ({e}); "
                         f"replace it with torchvision's {ALEXNET_FILE}") from None
    # torchvision numbers AlexNet's layers features.0..12; lpips slices them at its ReLUs.
    bounds = [(1, 0, 2), (2, 2, 5), (3, 5, 8), (4, 8, 10), (5, 10, 12)]
    mapped = {}
    for k, v in state.items():
        parts = k.split(".")
        if parts[0] != "features":
            continue
        i = int(parts[1])
        s = next(n for n, lo, hi in bounds if lo <= i < hi)
        mapped[f"slice{s}.{i}.{parts[2]}"] = v
    try:
        net.net.load_state_dict(mapped, strict=True)
    except RuntimeError as e:
        raise InputError(f"{os.path.basename(path)} is not torchvision's AlexNet ({str(e).splitlines()[0]}); "
                         f"use {ALEXNET_FILE}") from None
    return net.eval()


def lpips_resize(image, size=LPIPS_SIZE):
    """Photo -> (size, size, 3) uint8 RGB, the size LPIPS compares at."""
    import cv2
    return cv2.resize(to_rgb_uint8(image), (size, size), interpolation=cv2.INTER_AREA)


def lpips_distance(images, references, weights=None, size=LPIPS_SIZE):
    """LPIPS-AlexNet distance of each image to its reference (0 = same; larger = less alike).

    images, references: equal-length lists of photos, each resized to size x size and scaled to
    [-1, 1]. Returns a list of floats.
    """
    import torch
    if len(images) != len(references):
        raise InputError(f"LPIPS pairs images with references: got {len(images)} images and "
                         f"{len(references)} references")
    net = lpips_model(weights)

    def tensor(ims):
        arr = np.stack([lpips_resize(im, size) for im in ims])
        return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1.0

    with torch.no_grad():
        d = net(tensor(images), tensor(references))
    return [float(v) for v in d.flatten()]
