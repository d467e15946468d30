"""Measures of an expression video against the patient's: dynamics, temporal stability, identity over time.

- Dynamics: each asymmetry measure (asymmetry.MEASURES, right minus left) as a curve over the frames;
  generated vs patient by Pearson correlation, the lag that best aligns them and how much of the
  patient's peak asymmetry the generated video keeps.
- Stability: flicker as the warping error between consecutive frames along their optical flow
  (Farneback), for the generated video beside the patient's own (motion alone gives some); landmark
  jitter in smoothing.jitter.
- Identity: the recognizers' similarity to the patient frame by frame (the worst frame is what a
  re-identification attempt would use) and the spread of the generated identity across frames.

Clip holds what evaluate reads of one video; metrics.py's video metrics score it.
"""
import cv2
import numpy as np

from ..base.errors import InputError
from ..base.video_files import read_video
from ..condition.facecrop import face_crop
from ..condition.sequence import sequence_landmarks
from ..face.asymmetry import MEASURES, measure
from ..face.flow import dense_flow, grey

FLICKER_SIZE = 256  # flicker is measured on face crops of this side: generated and patient videos alike
# A patient curve moves when its range passes these (IPD units; smile_angle degrees): below, a detector's
# residual jitter is all there is to correlate.
MOVES_AT = {m: 1.0 if m == "smile_angle" else 0.01 for m in MEASURES}
REFERENCE_FRAMES = 5  # frames of each patient video that join the patient's photos as identity references


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
    largest |asymmetry| over the patient's; None where the patient's is 0), "moves" (the patient's curve
    spans at least MOVES_AT: the expression moves this measure).
    """
    if len(generated_xys) != len(patient_xys):
        raise InputError(f"the generated video has {len(generated_xys)} frames and the patient's {len(patient_xys)}: "
                         f"compare videos of the same frames")
    gen, pat = asymmetry_curves(generated_xys), asymmetry_curves(patient_xys)
    out = {}
    for m in MEASURES:
        peak = np.abs(pat[m]).max()
        out[m] = {"r": _pearson(gen[m], pat[m]), "lag": _best_lag(gen[m], pat[m], min(max_lag, len(gen[m]) // 3)),
                  "peak_kept": float(np.abs(gen[m]).max() / peak) if peak > 1e-12 else None,
                  "moves": bool(np.ptp(pat[m]) >= MOVES_AT[m])}
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


def identity_over_frames(recognizer, features, references):
    """A video's identity against the patient: (T, D) frame features, (M, D) the patient's -> {"per_frame",
    "worst", "spread"}.

    per_frame: each frame's score to its closest reference (ArcFace similarity, dlib distance); worst: the
    most patient-like frame's (what a re-identification attempt would use); spread: how much the
    generated identity varies across frames (mean dissimilarity of each frame's features to their mean:
    1 - cosine for ArcFace, Euclidean for dlib).
    """
    r = recognizer
    scores = r.scores(features, references)
    per_frame = scores[np.arange(len(scores)), np.argmax(r.closeness(scores), axis=1)]
    spread = r.dissimilarity(r.scores(features, features.mean(0, keepdims=True))[:, 0]).mean()
    return {"per_frame": per_frame.astype(float).tolist(), "worst": float(per_frame[np.argmax(r.closeness(per_frame))]),
            "spread": float(spread) if len(features) > 1 else None}


class Clip:
    """What evaluate measures of one video: its smoothed landmarks per frame (xy) and raw (raw), its fps, the
    face crops flicker is measured on (the first frame's crop box, so the face moves inside it) and each
    backend's features per frame; or why it could not be used (problem; unreadable: the reader's message)."""

    def __init__(self, recognizers, path):
        self.problem = self.unreadable = None
        self.features, self._flicker = {}, None
        try:
            frames, self.fps = read_video(path)
        except InputError as e:
            self.problem, self.unreadable = "not a readable video", str(e)
            return
        try:
            self.raw, self.xy = sequence_landmarks(frames, self.fps)
        except InputError as e:
            # the message names the frame ("frame 3 of 30"), never the file
            self.problem = str(e) if "no face" in str(e) else "a frame is unreadable or too small"
            return
        self.crops = [face_crop(f, self.xy[0], FLICKER_SIZE)[0] for f in frames]
        for b, r in recognizers.items():
            try:
                self.features[b] = np.asarray(r.features(frames, "frame", landmarks=list(self.raw)), dtype=np.float64)
            except InputError as e:
                self.problem = f"a frame without a face {b} finds" if "no face" in str(e) else f"{b}: {e}"
                return

    def __len__(self):
        return len(self.xy)

    def flicker(self):
        if self._flicker is None:
            self._flicker = flicker(self.crops)
        return self._flicker

    def reference(self, backend, frames=REFERENCE_FRAMES):
        """(k, D) features of `frames` evenly spaced frames: the patient's video as identity references."""
        feats = self.features[backend]
        return feats[np.unique(np.linspace(0, len(feats) - 1, min(frames, len(feats))).round().astype(int))]
