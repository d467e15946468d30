"""What a study is made from: the generated images (one runner tree per method) and, for --from EXP, an
experiment's folders; the methods chosen, and never one image twice."""
import os

from ..base.errors import InputError
from ..base.layout import generated_sources, source_item
from ..base.vocabulary import ITEMS
from ..experiment.config import METHODS
from .media import digest, media_of


def find_generated(root):
    """[(method, patient, source, path)] of root/<method>/<patient>/<source>/*.png or *.mp4 (the runner's video
    jobs), sorted (layout.py's sources: <expression>, or <expression>/photo<k> for the k-th of many photos)."""
    if not root or not os.path.isdir(root):
        raise InputError(f"--images {root!r} is not a folder (expected DIR/<method>/<patient>/<expression>/*.png "
                         "or *.mp4)")
    found = []
    for method in sorted(os.listdir(root)):
        for patient in _dirs(os.path.join(root, method)):
            for source, path in generated_sources(os.path.join(root, method, patient), videos=True):
                if source_item(source) not in ITEMS:
                    raise InputError(f"{method}/{patient}/{source_item(source)}: name expression folders after the "
                                     f"Yanagihara items ({', '.join(ITEMS)})")
                if path.lower().endswith(".png") or media_of(path) == "video":  # what the runner writes
                    found.append((method, patient, source, path))
    if not found:
        raise InputError(f"no generated images or videos under {root} (expected "
                         f"{root}/<method>/<patient>/<expression>/*.png or *.mp4)")
    return sorted(found)


def chosen_methods(generated, methods=None):
    """find_generated's images of `methods` (None: all); refused when two methods hold the same pixels for
    one patient and source, as an experiment's window_500_700 and partial do (one net, one seed), photos or videos."""
    found = sorted({g[0] for g in generated})
    unknown = sorted(set(methods or ()) - set(found))
    if unknown:
        raise InputError(f"--methods {' '.join(unknown)}: no such method folder; the images hold {', '.join(found)}")
    generated = [g for g in generated if methods is None or g[0] in methods]
    seen = {}
    for method, patient, source, path in generated:
        key = (patient, source, digest(path))
        if key in seen and seen[key] != method:
            raise InputError(f"methods {seen[key]} and {method} hold identical images or videos ({source}): raters "
                             f"would score one twice; choose one of the two with --methods")
        seen.setdefault(key, method)
    return generated


def _dirs(folder):
    if not os.path.isdir(folder):
        return []
    return sorted(d for d in os.listdir(folder) if not d.startswith(".") and os.path.isdir(os.path.join(folder, d)))


def experiment_inputs(exp):
    """EXP (palsysim/experiment's folder) -> (images DIR, patients DIR, methods) in the runner layouts; the
    methods are Table I's, the experiment's own, without its Fig. 8 ablation runs (window_<lo>_<hi>)."""
    images, patients = os.path.join(exp, "generated"), os.path.join(exp, "prepared", "photos")
    if not os.path.isdir(images):
        raise InputError(f"--from {exp}: no generated/ folder (run `python -m palsysim experiment run {exp}` first)")
    runs = [m for m in _dirs(images) if not m.startswith("window_")]
    methods = [m for m in METHODS if m in runs] + [m for m in runs if m not in METHODS]  # the paper's order
    return images, patients if os.path.isdir(patients) else None, methods
