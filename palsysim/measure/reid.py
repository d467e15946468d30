"""Re-identification, as anonymization papers report privacy: would a face recogniser pick the real
patient out of a gallery?

A mean similarity does not say it: the paper's Method 2 mean ArcFace similarity (0.335) lies above
ArcFace's same-person cut (0.28), yet a mean says nothing about how many images a recogniser would
match. Per recogniser (ArcFace, dlib) and method this reports:
- rank-1 re-identification rate: the share of generated images whose most alike gallery photo shows
  their own patient; the gallery is every patient's photos plus optional distractor faces (each one a
  person of its own), so chance is 1 / (patients + distractors);
- the share of images below the recogniser's same-person threshold against their own patient's
  photos (ArcFace 0.28 cosine at a false-accept rate of 0.1% on LFW; dlib 0.6 distance, its documented
  decision, about 99.4% verification accuracy on LFW);
- memorisation: each image's closest training photo (the patients' photos, which trained the
  fine-tuned methods) and how alike they are; untrained methods (zero_shot) give the baseline.

Shapes: N generated images (probes), M gallery photos, D feature dimensions. Closeness is "higher =
more alike" for every recogniser: ArcFace's cosine similarity, dlib's Euclidean distance negated;
reports give each recogniser's own unit.
"""
import numpy as np

from ..identity import check as identity
from ..identity import dlib_face as identity_dlib

UNITS = {"arcface": "ArcFace similarity", "dlib": "dlib distance"}


def closeness(backend, probes, gallery):
    """(N, D) probe and (M, D) gallery features -> (N, M) closeness, higher = more alike."""
    if backend == "arcface":
        return identity.cosine(probes, gallery)
    return -identity_dlib.distances(probes, gallery)


def in_unit(backend, close):
    """Closeness back in the recogniser's own unit (similarity, or distance)."""
    return close if backend == "arcface" else -close


def same_person(backend, close, threshold):
    """(...) closeness -> (...) bool: the recogniser takes the two faces for one person (the privacy
    gate's rule: ArcFace similarity >= threshold, dlib distance < threshold)."""
    return close >= threshold if backend == "arcface" else -close < threshold


def rank1_hits(close, gallery_ids, probe_ids):
    """(N, M) closeness, M gallery identity labels, N true labels -> (N,) bool: the most alike gallery
    photo shows the probe's own person."""
    best = np.argmax(close, axis=1)
    return np.asarray([gallery_ids[j] == probe_ids[i] for i, j in enumerate(best)], dtype=bool)


def closest_of_own(close, gallery_ids, probe_ids):
    """(N, M) closeness -> (N,) closeness of each probe to its own person's most alike gallery photo."""
    ids = np.asarray(gallery_ids, dtype=object)
    return np.asarray([close[i, ids == probe_ids[i]].max() for i in range(len(probe_ids))])


class Gallery:
    """The photos a recogniser searches: every patient's usable photos, then the distractors.

    patients: {patient key: {photo stem: {backend: (D,) features}}}; distractors: [{backend: (D,)}].
    ids: one identity label per photo (patient key, or ("distractor", j)); labels: how the report
    names a patient photo ("patient 2, grin"), never by file or folder name.
    """

    def __init__(self, patients, distractors, used):
        self.used = used
        entries = [(key, f"patient {i}, {stem}", feats) for i, (key, photos) in enumerate(patients.items(), 1)
                   for stem, feats in photos.items()]
        self.training = len(entries)  # the first `training` photos are the patients'
        entries += [(("distractor", j), f"distractor {j + 1}", feats) for j, feats in enumerate(distractors)]
        self.ids = [e[0] for e in entries]
        self.labels = [e[1] for e in entries]
        self.features = {b: np.stack([e[2][b] for e in entries]) for b in used}
        self.patients, self.distractors = len(patients), len(distractors)


def measure(gallery, probes, thresholds):
    """probes: [(true patient key, {backend: (D,) features}, image label)] of one method;
    thresholds: {backend: same-person threshold}. -> {backend: {"images", "rank1", "below", "nearest"}},
    rank1 and below shares in 0..1, nearest [(image label, training photo label, in recogniser unit)]."""
    if not probes:
        return {}
    truth = [p[0] for p in probes]
    out = {}
    for b in gallery.used:
        close = closeness(b, np.stack([p[1][b] for p in probes]), gallery.features[b])
        own = closest_of_own(close, gallery.ids, truth)
        train = close[:, :gallery.training]
        nearest = np.argmax(train, axis=1)
        out[b] = {"images": len(probes),
                  "rank1": float(rank1_hits(close, gallery.ids, truth).mean()),
                  "below": float((~same_person(b, own, thresholds[b])).mean()),
                  "nearest": [(p[2], gallery.labels[j], float(in_unit(b, train[i, j])))
                              for i, (p, j) in enumerate(zip(probes, nearest))]}
    return out


def markdown(results, gallery, thresholds):
    """The report's re-identification section: results {method: measure(...)}."""
    rules = {"arcface": f"ArcFace similarity < {thresholds.get('arcface', 0):.2f} (FAR 0.1% on LFW)",
             "dlib": f"dlib distance >= {thresholds.get('dlib', 0):.2f} (dlib's documented decision)"}
    lines = ["", "## Re-identification", "",
             f"Gallery: {gallery.training} photos of {gallery.patients} patients and {gallery.distractors} "
             f"distractor faces; rank-1 by chance: {100 / (gallery.patients + gallery.distractors):.1f}%. "
             "Below threshold: "
             + "; ".join(rules[b] for b in gallery.used) + ", against the image's own patient's photos.", "",
             "| method | recogniser | images | rank-1 re-identified ↓ | below same-person threshold ↑ | "
             "nearest training photo, mean |", "|---|---|---:|---:|---:|---:|"]
    for method, per in results.items():
        for b, r in per.items():
            mean = np.mean([n[2] for n in r["nearest"]])
            lines.append(f"| {method} | {b} | {r['images']} | {100 * r['rank1']:.1f}% | {100 * r['below']:.1f}% | "
                         f"{UNITS[b]} {mean:.4f} |")
    lines += ["", "### Memorisation: each image's closest training photo", "",
              "| method | recogniser | image | closest training photo | closeness |", "|---|---|---|---|---:|"]
    lines += [f"| {method} | {b} | {image} | {photo} | {UNITS[b]} {value:.4f} |"
              for method, per in results.items() for b, r in per.items() for image, photo, value in r["nearest"]]
    return "\n".join(lines) + "\n"

