"""The privacy gate's rule: is a generated face still recognisably the patient? By one recognizer or both,
as `backend` says: auto (ArcFace when its ONNX is present, else dlib), arcface, dlib, both (an image passes
only what both pass). An image passes a recognizer when it is below that recognizer's same-person decision
against every photo of the patient."""
import os

import numpy as np

from ..base.errors import InputError
from . import arcface, dlib_face

# The privacy gate's /history record of which images of each batch it passed ([{"batch", "kept"}]).
KEPT_KEY = "palsysim_kept"
BACKENDS = ("auto", "arcface", "dlib", "both")
RECOGNIZERS = {"arcface": arcface.ArcFace, "dlib": dlib_face.Dlib}  # every backend's class, in report order


def check_thresholds(threshold, dlib_threshold, names=("threshold", "dlib_threshold")):
    """Refuse a threshold that is not a finite number in its range: NaN fails every comparison, so a NaN
    threshold would call one photo two people, or pass every image."""
    for name, value, (lo, hi) in zip(names, (threshold, dlib_threshold),
                                     (arcface.THRESHOLD_RANGE, dlib_face.THRESHOLD_RANGE)):
        if not (isinstance(value, (int, float)) and lo <= value <= hi):  # False for NaN too
            raise InputError(f"{name} {value} is not usable: give a number from {lo} to {hi}")


def backend_status(arcface_path=None):
    """{"arcface": None or why not, "dlib": None or why not}: which backends can run here."""
    why = None if arcface_path and os.path.isfile(arcface_path) else (
        f"no ArcFace ONNX at {arcface_path}" if arcface_path else "no ArcFace ONNX given")
    return {"arcface": why, "dlib": dlib_face.unavailable()}


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
        arcface.load_model(arcface_path)  # its own message for a missing or broken file
    if "dlib" in used and status["dlib"]:
        raise InputError(f"the dlib identity backend is missing: {status['dlib']}")
    return used


def recognizers(used, arcface_path=None):
    """Backend names (resolve_backend's) -> {name: Recognizer}."""
    return {b: RECOGNIZERS[b](arcface_path) if b == "arcface" else RECOGNIZERS[b]() for b in used}


def thresholds(threshold=None, dlib_threshold=None):
    """{backend: same-person threshold}, each recognizer's own default where None."""
    return {"arcface": arcface.THRESHOLD if threshold is None else threshold,
            "dlib": dlib_face.THRESHOLD if dlib_threshold is None else dlib_threshold}


def check(images, references, backend="auto", arcface_path=None, threshold=None, dlib_threshold=None):
    """Each image's identity against the patient, by one backend or both.

    references: photos of the patient; each backend takes the reference the image resembles most
    (the conservative choice). An image that cannot be checked (no face, several faces) is never
    passed and never raises: its row says why. A reference without a usable face raises.
    Returns (backends used, rows): one dict per image with "passed", "problem" (None or the
    reason), and per backend ("arcface", "dlib") None or {<its unit>: score, "closest": reference
    index, "passed"}. passed: every backend used passes it.
    """
    limits = thresholds(threshold, dlib_threshold)
    check_thresholds(limits["arcface"], limits["dlib"])
    if not len(images) or not len(references):
        raise InputError("identity check needs at least one image and one reference photo")
    used = resolve_backend(backend, arcface_path)
    recs = recognizers(used, arcface_path)
    refs = {b: r.features(references, "reference") for b, r in recs.items()}
    rows = []
    for i, image in enumerate(images):
        what = f"image {i + 1} of {len(images)}" if len(images) > 1 else "image"
        row = {"passed": False, "problem": None, "arcface": None, "dlib": None}
        try:
            for b, r in recs.items():
                scores = r.scores(r.features([image], what), refs[b])[0]
                j = int(np.argmax(r.closeness(scores)))
                row[b] = {r.unit: float(scores[j]), "closest": j, "passed": not bool(r.same_person(scores[j], limits[b]))}
        except InputError as e:
            row.update(arcface=None, dlib=None, problem="no face" if "no face" in str(e) else str(e))
        row["passed"] = row["problem"] is None and all(row[b]["passed"] for b in used)
        rows.append(row)
    return used, rows


def passed_stamp(used, threshold=None, dlib_threshold=None):
    """What a saved image that passed the gate may say of itself (one line, no file-like text)."""
    limits = thresholds(threshold, dlib_threshold)
    rules = [r.pass_rule(limits[b], words=True) for b, r in recognizers(used).items()]
    return f"Identity check passed: {' and '.join(rules)} against every photo of the patient."


def outcome(rows, gate=False):
    """The report's first line: how many passed, e.g. "1 of 3 passed, 2 held back (1 with no face: its
    identity cannot be checked)."; gate: when none passed, say that nothing goes on (the save after the
    gate stays empty, which it cannot say itself)."""
    held = sum(not r["passed"] for r in rows)
    faceless = sum(r["problem"] == "no face" for r in rows)
    no_face = f" ({faceless} with no face: {'its' if faceless == 1 else 'their'} identity cannot be checked)" * bool(faceless)
    line = f"{len(rows) - held} of {len(rows)} passed, {held} held back{no_face}."
    if gate and held == len(rows):
        line += " Nothing goes on: the nodes fed by the gate's images (the save) do not run."
    return line


def report(used, rows, threshold=None, dlib_threshold=None, gate=False):
    """The outcome (outcome()) on a line of its own, then the rule and the per-image table (markdown) of
    check() rows; names images by index only."""
    limits, recs = thresholds(threshold, dlib_threshold), recognizers(used)
    cols = [h for r in recs.values() for h in r.report_columns]
    # The outcome first, a paragraph of its own: a node's text box shows it before the rule and the table.
    lines = [outcome(rows, gate), "",
             f"Identity check, {' and '.join(used)} (pass: {'; '.join(r.pass_rule(limits[b]) for b, r in recs.items())})",
             "", "| image | " + " | ".join(cols) + " | result |", "|---:|" + "---:|" * len(cols) + "---|"]
    for i, row in enumerate(rows):
        cells = [c for b, r in recs.items()
                 for c in (["n/a"] * len(r.report_columns) if row[b] is None else r.report_cells(row[b]))]
        result = ("pass" if row["passed"] else f"HELD: {row['problem']}: held back" if row["problem"]
                  else "HELD: resembles the patient")
        lines.append(f"| {i + 1} | " + " | ".join(cells) + f" | {result} |")
    return "\n".join(lines)
