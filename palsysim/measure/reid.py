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

Shapes: N generated images (probes), M gallery photos, D feature dimensions. Each recogniser
(identity.recognizer.Recognizer) gives scores in its own unit, which the reports keep, and their
closeness (higher = more alike), which the ranking uses.
"""
import numpy as np


def rank1_hits(close, gallery_ids, probe_ids):
    """(N, M) closeness, M gallery identity labels, N true labels -> (N,) bool: the most alike gallery
    photo shows the probe's own person."""
    best = np.argmax(close, axis=1)
    return np.asarray([gallery_ids[j] == probe_ids[i] for i, j in enumerate(best)], dtype=bool)


def closest_of_own(close, gallery_ids, probe_ids):
    """(N, M) closeness -> (N,) index of each probe's own person's most alike gallery photo."""
    ids = np.asarray(gallery_ids, dtype=object)
    own = [np.flatnonzero(ids == person) for person in probe_ids]
    return np.asarray([mine[np.argmax(close[i, mine])] for i, mine in enumerate(own)])


class Gallery:
    """The photos a recogniser searches: every patient's usable photos, then the distractors.

    patients: {patient key: {photo stem: {backend: (D,) features}}}; distractors: [{backend: (D,)}].
    ids: one identity label per photo (patient key, or ("distractor", j)); labels: how the report
    names a patient photo ("patient 2, grin"), never by file or folder name.
    """

    def __init__(self, patients, distractors, recognizers):
        self.recognizers = recognizers  # {backend: Recognizer}
        entries = [(key, f"patient {i}, {stem}", feats) for i, (key, photos) in enumerate(patients.items(), 1)
                   for stem, feats in photos.items()]
        self.training = len(entries)  # the first `training` photos are the patients'
        entries += [(("distractor", j), f"distractor {j + 1}", feats) for j, feats in enumerate(distractors)]
        self.ids = [e[0] for e in entries]
        self.labels = [e[1] for e in entries]
        self.features = {b: np.stack([e[2][b] for e in entries]) for b in recognizers}
        self.patients, self.distractors = len(patients), len(distractors)


def measure(gallery, probes, thresholds):
    """probes: [(true patient key, {backend: (D,) features}, image label)] of one method;
    thresholds: {backend: same-person threshold}. -> {backend: {"images", "rank1", "below", "nearest"}},
    rank1 and below shares in 0..1, nearest [(image label, training photo label, in recogniser unit)]."""
    if not probes:
        return {}
    truth = [p[0] for p in probes]
    out = {}
    for b, r in gallery.recognizers.items():
        scores = r.scores(np.stack([p[1][b] for p in probes]), gallery.features[b])
        close, rows = r.closeness(scores), np.arange(len(probes))
        own = scores[rows, closest_of_own(close, gallery.ids, truth)]
        nearest = np.argmax(close[:, :gallery.training], axis=1)
        out[b] = {"images": len(probes),
                  "rank1": float(rank1_hits(close, gallery.ids, truth).mean()),
                  "below": float((~r.same_person(own, thresholds[b])).mean()),
                  "nearest": [(p[2], gallery.labels[j], float(scores[i, j])) for i, (p, j) in enumerate(zip(probes, nearest))]}
    return out


def markdown(results, gallery, thresholds):
    """The report's re-identification section: results {method: measure(...)}."""
    rules = {b: f"{r.pass_rule(thresholds[b], 2)} ({r.threshold_source})" for b, r in gallery.recognizers.items()}
    lines = ["", "## Re-identification", "",
             f"Gallery: {gallery.training} photos of {gallery.patients} patients and {gallery.distractors} "
             f"distractor faces; rank-1 by chance: {100 / (gallery.patients + gallery.distractors):.1f}%. "
             "Below threshold: "
             + "; ".join(rules.values()) + ", against the image's own patient's photos.", "",
             "| method | recogniser | images | rank-1 re-identified ↓ | below same-person threshold ↑ | "
             "nearest training photo, mean |", "|---|---|---:|---:|---:|---:|"]
    for method, per in results.items():
        for b, r in per.items():
            mean = np.mean([n[2] for n in r["nearest"]])
            lines.append(f"| {method} | {b} | {r['images']} | {100 * r['rank1']:.1f}% | {100 * r['below']:.1f}% | "
                         f"{gallery.recognizers[b].label} {gallery.recognizers[b].unit} {mean:.4f} |")
    lines += ["", "### Memorisation: each image's closest training photo", "",
              "| method | recogniser | image | closest training photo | closeness |", "|---|---|---|---|---:|"]
    lines += [f"| {method} | {b} | {image} | {photo} | {gallery.recognizers[b].label} {gallery.recognizers[b].unit} {value:.4f} |"
              for method, per in results.items() for b, r in per.items() for image, photo, value in r["nearest"]]
    return "\n".join(lines) + "\n"

