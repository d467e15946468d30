"""Measures of an expression video against the patient's: dynamics, temporal stability, identity over time.

- Dynamics: each asymmetry measure (asymmetry.MEASURES, right minus left) as a curve over the frames;
  generated vs patient by Pearson correlation, the lag that best aligns them and how much of the
  patient's peak asymmetry the generated video keeps.
- Stability: flicker as the warping error between consecutive frames along their optical flow
  (Farneback), for the generated video beside the patient's own (motion alone gives some); landmark
  jitter in smoothing.jitter.
- Identity: the recognizers' similarity to the patient frame by frame (the worst frame is what a
  re-identification attempt would use) and the spread of the generated identity across frames.
"""
import cv2
import numpy as np

from ..base.errors import InputError
from ..face.asymmetry import MEASURES, measure
from ..face.flow import dense_flow, grey


def asymmetry_curves(xys):
    """(T, 478, 2) landmarks -> {measure: (T,) float64 of right minus left, in IPD units or degrees}."""
    rows = [measure(xy)["asymmetry"] for xy in xys]
    return {m: np.array([r[m]["difference"] for r in rows]) for m in MEASURES}


def _pearson(a, b):
    """Correlation of two curves, None where either is flat (no motion: nothing to correlate)."""
    a, b = a - a.mean(), b - b.mean()
    scale = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / scale) if scale > 1e-12 else None


def _best_lag(generated, patient, max_lag):
    """The shift k (frames, |k| <= max_lag) maximising the correlation of generated[t + k] with patient[t]."""
    best, best_r = 0, -np.inf
    for k in range(-max_lag, max_lag + 1):
        g = generated[max(k, 0):len(generated) + min(k, 0)]
        p = patient[max(-k, 0):len(patient) + min(-k, 0)]
        r = _pearson(g, p) if len(g) > 2 else None
        if r is not None and r > best_r:
            best, best_r = k, r
    return best


def dynamics(generated_xys, patient_xys, max_lag=5):
    """Expression dynamics kept: generated and patient (T, 478, 2) sequences of one length -> {measure: {...}}.

    Each measure: "r" (Pearson of the two curves, None where either is flat), "lag" (frames the
    generated curve runs behind the patient's, positive = later), "peak_kept" (the generated curve's
    largest |asymmetry| over the patient's; None where the patient's is 0).
    """
    if len(generated_xys) != len(patient_xys):
        raise InputError(f"the generated video has {len(generated_xys)} frames and the patient's {len(patient_xys)}: "
                         f"compare videos of the same frames")
    gen, pat = asymmetry_curves(generated_xys), asymmetry_curves(patient_xys)
    out = {}
    for m in MEASURES:
        peak = np.abs(pat[m]).max()
        out[m] = {"r": _pearson(gen[m], pat[m]), "lag": _best_lag(gen[m], pat[m], min(max_lag, len(gen[m]) // 3)),
                  "peak_kept": float(np.abs(gen[m]).max() / peak) if peak > 1e-12 else None}
    return out


def flicker(frames):
    """Warping error of a video: list of (H, W, 3) -> float, mean |frame t - frame t+1 warped onto t| in 0..255.

    The flow from each frame to the next is estimated on the video itself (Farneback), so real
    motion is compensated and what remains is change that follows no motion: flicker. 0 for one frame.
    """
    greys = [grey(f) for f in frames]
    if len(greys) < 2:
        return 0.0
    h, w = greys[0].shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    errors = []
    for prev, nxt in zip(greys[:-1], greys[1:]):
        flow = dense_flow(prev, nxt)
        warped = cv2.remap(nxt, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        errors.append(np.abs(prev.astype(np.float32) - warped.astype(np.float32)).mean())
    return float(np.mean(errors))


def identity_over_time(frames, references, backend="auto", arcface_path=None):
    """Identity of each frame against the patient's photos -> {backend: {"per_frame", "worst", "spread"}}.

    per_frame: ArcFace similarity or dlib distance of each frame to its closest reference (None
    where a frame has no usable face); worst: the most patient-like frame (highest similarity,
    lowest distance); spread: how much the generated identity varies across frames (mean distance
    of each frame's features from their mean: 1 - cosine for ArcFace, Euclidean for dlib).
    """
    from ..identity.check import check, recognizers
    used, rows = check(frames, references, backend, arcface_path)
    out = {}
    for b, r in recognizers(used, arcface_path).items():
        per_frame = [row[b][r.unit] if row[b] else None for row in rows]
        found = [v for v in per_frame if v is not None]
        usable = [f for f, v in zip(frames, per_frame) if v is not None]
        spread = None
        if len(usable) > 1:
            feats = np.asarray(r.features(usable, "frame"), dtype=np.float64)
            spread = float(r.dissimilarity(r.scores(feats, feats.mean(0, keepdims=True))[:, 0]).mean())
        out[b] = {"per_frame": per_frame, "spread": spread,
                  "worst": found[int(np.argmax(r.closeness(found)))] if found else None}
    return out
