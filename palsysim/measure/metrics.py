"""What is measured of a generated image: one class per metric, read by evaluate (its record, metrics.csv,
report.md's table and notes), the experiment's Table II and report, and the privacy-fidelity chart.

A new metric is one subclass and one entry in `metrics()`. Its `keys` name its columns (`key_mean` and
`key_std` per method), `score` fills them for one image (a video metric, kind "video": for one video,
measure.video.Clip), `table` picks the keys the experiment's Table II (or its video table) shows. Scoring
holds what an evaluation shares: the recognizers, their thresholds, the patients' features.
"""
from dataclasses import dataclass, field

import numpy as np

from ..base.layout import source_item
from ..face.asymmetry import MEASURES
from ..face.smoothing import jitter
from ..identity.check import RECOGNIZERS
from . import fidelity, serfiq
from .video import dynamics, identity_over_frames

LPIPS_SIZE = 512  # the face crop's side, and LPIPS's input size


@dataclass
class Scoring:
    """What every metric of one evaluation reads. recognizers: {name: Recognizer} used; thresholds:
    {name: same-person threshold}; refs: {patient key: {name: (M, D) features of the patient's photos}}."""
    recognizers: dict
    thresholds: dict
    refs: dict = field(default_factory=dict)
    arcface_path: str = None
    lpips: bool = False
    lpips_weights: str = None
    serfiq_passes: int = serfiq.PASSES
    seed: int = 0
    item: str = "rest"  # for images whose expression names no Yanagihara item


class Metric:
    kind = "image"  # what it scores: "image" (evaluate.Face) or "video" (video.Clip)
    keys = ()     # its columns, in metrics.csv order
    titles = ()   # report.md's heading per key
    table = {}    # {key: heading} of the keys the experiment's Table II shows
    needs = ""    # what measuring it needs beyond the photos, said where it was not measured
    def note(self, s):
        """report.md's "How to read it" line."""
        return ""

    def used(self, s):
        """Whether this evaluation computes it (a model it needs may not be given)."""
        return True

    def score(self, s, face, source, patient, expression):
        """One image's values {key: float or None}. face, source: measure.evaluate.Face of the generated
        image and of its source photo (None: unpaired); patient: its patient's key."""
        raise NotImplementedError


class Perceptual(Metric):
    keys, titles, table = ("lpips",), ("LPIPS ↓",), {"lpips": "LPIPS"}
    needs = "AlexNet's weights: evaluate --lpips, or the experiment's [models] lpips_weights"

    def note(self, s):
        return (f"LPIPS: AlexNet perceptual distance of the two 512 landmark face crops, at {LPIPS_SIZE}, against "
                f"the source photo; lower is closer." + ("" if s.lpips else " Not computed (run with --lpips)."))

    def used(self, s):
        return s.lpips

    def score(self, s, face, source, patient, expression):
        if source is None:
            return {"lpips": None}
        return {"lpips": fidelity.lpips_distance([face.crop()], [source.crop()], s.lpips_weights, size=LPIPS_SIZE)[0]}


class Identity(Metric):
    """A recognizer's score to the source photo (Table II's column) and its most patient-like score over
    all the patient's photos (`closest`: the privacy gate's rule, which decides the pass)."""

    def __init__(self, recognizer):
        r = self.recognizer = recognizer
        self.closest = f"{r.name}_{'max' if r.higher_is_alike else 'min'}"
        self.word = self.closest[-3:]  # the pass rule's name for the closest score
        self.keys = (r.name, self.closest)
        arrow = "↓" if r.higher_is_alike else "↑"
        self.titles = (f"{r.label} {r.unit} (paired) {arrow}", f"{r.label} {self.closest[-3:]} over photos {arrow}")
        self.table = {r.name: f"{r.label} {r.unit} to source"}

    def note(self, s):
        r = self.recognizer
        return (f"{r.label} {r.unit}: {'lower' if r.higher_is_alike else 'higher'} is more private; the "
                f"{self.closest[-3:]} over the patient's photos decides the pass ({self.rule(s)} passes; the "
                f"threshold is {r.threshold_source}).")

    def rule(self, s):
        """The pass rule on the closest score: "ArcFace max < 0.28", "dlib min >= 0.60"."""
        r = self.recognizer
        return f"{r.label} {self.word} {'<' if r.higher_is_alike else '>='} {s.thresholds[r.name]:.2f}"

    def used(self, s):
        return self.recognizer.name in s.recognizers

    def score(self, s, face, source, patient, expression):
        name, r = self.recognizer.name, s.recognizers[self.recognizer.name]
        scores = r.scores(face.features[name][None], s.refs[patient][name])[0]
        out = {self.closest: float(scores[np.argmax(r.closeness(scores))]), name: None}
        if source is not None:
            out[name] = float(r.scores(face.features[name][None], source.features[name][None])[0, 0])
        return out

    def passed(self, s, values):
        return not s.recognizers[self.recognizer.name].same_person(values[self.closest], s.thresholds[self.recognizer.name])


class Quality(Metric):
    keys, titles, table = ("serfiq", "serfiq_raw"), ("SER-FIQ ↑", "SER-FIQ raw q"), {"serfiq": "SER-FIQ"}
    needs = "the ArcFace ONNX: evaluate --arcface, or the experiment's [models] arcface"

    def note(self, s):
        return (f"SER-FIQ: the reference implementation's calibrated score 1/(1+exp(-130(q-0.88))), q = "
                f"2·sigmoid(−mean pairwise distance) of {s.serfiq_passes} dropout-perturbed ArcFace embeddings; "
                f"higher is better image quality. Needs the ArcFace ONNX.")

    def used(self, s):
        return "arcface" in s.recognizers

    def score(self, s, face, source, patient, expression):
        q = serfiq.quality([face.rgb], s.arcface_path, s.serfiq_passes, seed=s.seed, landmarks=[face.xy])[0]
        return {"serfiq": serfiq.calibrated(q), "serfiq_raw": q}


class Fidelity(Metric):
    keys, titles, table = ("fidelity",), ("expression fidelity ↑",), {"fidelity": "expression fidelity"}

    def note(self, s):
        return ("Expression fidelity: how closely the face's left/right asymmetry matches the source photo's, "
                "weighted per Yanagihara item; 1 is identical.")

    def score(self, s, face, source, patient, expression):
        if source is None:
            return {"fidelity": None}
        item = source_item(expression) if source_item(expression) in fidelity.ITEM_WEIGHTS else s.item
        return {"fidelity": fidelity.expression_fidelity(face.xy, source.xy, item)["score"]}


class Dynamics(Metric):
    """Each asymmetry measure as a curve over the frames, generated against the patient's video: the
    columns average the measures (record["per_measure"] keeps each)."""
    kind = "video"
    keys = ("dynamics_r", "dynamics_lag", "peak_kept")
    titles = ("asymmetry curves r ↑", "lag (frames)", "peak asymmetry kept")
    table = {"dynamics_r": "dynamics r", "dynamics_lag": "lag (frames)", "peak_kept": "peak kept"}

    def note(self, s):
        return ("Dynamics: each asymmetry measure (right minus left) as a curve over the frames against the "
                "patient video's: r, their Pearson correlation (1: the expression moves as the patient's); lag, "
                "the frames the generated curve runs behind at its best alignment; peak kept, its largest "
                "asymmetry over the patient's. Averaged over the measures the patient's expression moves (a range "
                "of at least 0.01 inter-pupil distances, 1° for the smile angle).")

    def score(self, s, clip, source, patient, expression):
        if source is None:
            return {k: None for k in self.keys} | {"per_measure": None}
        d = dynamics(clip.xy, source.xy)
        moving = [m for m in MEASURES if d[m]["moves"] and d[m]["r"] is not None]
        means = {k: [d[m][k] for m in moving if d[m][k] is not None] for k in ("r", "lag", "peak_kept")}
        means = {k: float(np.mean(v)) if v else None for k, v in means.items()}
        return {"dynamics_r": means["r"], "dynamics_lag": means["lag"], "peak_kept": means["peak_kept"],
                "per_measure": d}


class Stability(Metric):
    kind = "video"
    keys = ("flicker", "flicker_patient", "jitter", "jitter_patient")
    titles = ("flicker ↓", "patient video's flicker", "landmark jitter ↓", "patient video's jitter")
    table = {"flicker": "flicker", "flicker_patient": "patient's flicker", "jitter": "jitter"}

    def note(self, s):
        return ("Flicker: mean |frame t - frame t+1 warped back along their optical flow| (0..255) of the face "
                "crops, beside the patient video's own (real motion leaves some); jitter: the smoothed "
                "landmarks' frame-to-frame shake (second difference, inter-pupil distances). Lower is steadier.")

    def score(self, s, clip, source, patient, expression):
        return {"flicker": clip.flicker(), "jitter": jitter(clip.xy),
                "flicker_patient": source and source.flicker(), "jitter_patient": source and jitter(source.xy)}


class VideoIdentity(Identity):
    """A recognizer's most patient-like frame against all the patient's references (it decides the video's
    pass: one recognisable frame gives the patient away) and the spread of the identity across frames."""
    kind = "video"

    def __init__(self, recognizer):
        r = self.recognizer = recognizer
        self.closest, self.word = f"{r.name}_worst", "worst frame"
        self.keys = (self.closest, f"{r.name}_spread")
        self.titles = (f"{r.label} most patient-like frame {'↓' if r.higher_is_alike else '↑'}",
                       f"{r.label} identity spread over frames ↓")
        self.table = {self.closest: f"{r.label} worst frame", f"{r.name}_spread": f"{r.label} spread"}

    def note(self, s):
        r = self.recognizer
        return (f"{r.label} over frames: each frame's {r.unit} to the closest of the patient's photos and video "
                f"frames; the most patient-like frame decides the video's pass ({self.rule(s)}); spread: the mean "
                f"{'1 - cosine' if r.higher_is_alike else 'distance'} of the frames' features to their mean.")

    def score(self, s, clip, source, patient, expression):
        name = self.recognizer.name
        out = identity_over_frames(s.recognizers[name], clip.features[name], s.refs[patient][name])
        return {self.closest: out["worst"], f"{name}_spread": out["spread"]}


def metrics(kind="image"):
    """Every metric of a kind ("image" or "video"), in its CSV's column order."""
    if kind == "video":
        return [Dynamics(), Stability()] + [VideoIdentity(r) for r in RECOGNIZERS.values()]
    return [Perceptual()] + [Identity(r) for r in RECOGNIZERS.values()] + [Quality(), Fidelity()]


def keys(kind="image"):
    return [k for m in metrics(kind) for k in m.keys]
