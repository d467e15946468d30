"""`python -m palsysim evaluate`: privacy, fidelity and quality of generated images, per method.

Folder layout (image files: .png .jpg .jpeg .webp .bmp):

    patients/<patient>/<photo>          one folder per patient (or patients/<patient>.png)
    generated/<method>/<patient>/<img>  one folder per method, then per patient
                                        (or generated/<method>/<patient>.png / <patient>_<anything>.png)

Per generated image: ArcFace similarity to its patient (highest over the patient's photos), pass
(similarity < threshold), SER-FIQ, expression fidelity and optionally LPIPS against the patient's
expression photo: the photo with the same file stem when there is one, else the patient's first
photo. A stem that names a Yanagihara item (grin.png, raise_eyebrows.png, ...) picks that item's
fidelity weights. One row per method, mean and standard deviation (numpy's, ddof 0), like the
paper's Table II, in report.md, metrics.csv and report.png (privacy vs fidelity at a glance).

Privacy: the outputs name methods and counts only; patients appear as "patient 1..K" (their
folders in sorted order), never by folder or file name, and no pixels are copied.
"""
import csv
import io
import os

import numpy as np

from . import fidelity, identity, serfiq
from .files import write_bytes
from .images import InputError, read_image
from .landmarks import face_landmarks

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
COLUMNS = ["method", "images", "patients", "skipped", "lpips_mean", "lpips_std", "arcface_mean", "arcface_std",
           "serfiq_mean", "serfiq_std", "fidelity_mean", "fidelity_std", "pass_rate"]


def _images_in(folder):
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if f.lower().endswith(IMAGE_EXTS) and os.path.isfile(os.path.join(folder, f)))


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def find_patients(patients_dir):
    """patients_dir -> {patient key: [photo paths]} in sorted key order."""
    if not os.path.isdir(patients_dir):
        raise InputError(f"--patients {patients_dir} is not a folder: give the folder that holds one "
                         f"sub-folder (or one image) per patient")
    found = {}
    for name in sorted(os.listdir(patients_dir)):
        path = os.path.join(patients_dir, name)
        if os.path.isdir(path) and _images_in(path):
            found[name] = _images_in(path)
        elif os.path.isfile(path) and name.lower().endswith(IMAGE_EXTS):
            found[_stem(name)] = [path]
    if not found:
        raise InputError(f"--patients {patients_dir} holds no patient photos: put each patient's photos "
                         f"in a sub-folder of their own")
    return found


def find_generated(generated_dir, patient_keys):
    """generated_dir -> ({method: [(patient key, image path)]}, {method: images matching no patient})."""
    if not os.path.isdir(generated_dir):
        raise InputError(f"--generated {generated_dir} is not a folder: give the folder that holds one "
                         f"sub-folder per method (e.g. zero_shot/, partial_codc/)")
    by_length = sorted(patient_keys, key=len, reverse=True)  # "p10" before "p1"
    methods, unmatched = {}, {}
    for method in sorted(os.listdir(generated_dir)):
        mdir = os.path.join(generated_dir, method)
        if not os.path.isdir(mdir):
            continue
        pairs, stray = [], 0
        for name in sorted(os.listdir(mdir)):
            path = os.path.join(mdir, name)
            if os.path.isdir(path):
                files = _images_in(path)
                if name in patient_keys:
                    pairs += [(name, f) for f in files]
                else:
                    stray += len(files)
            elif name.lower().endswith(IMAGE_EXTS):
                stem = _stem(name)
                key = next((k for k in by_length if stem == k or stem.startswith(k + "_")), None)
                if key is None:
                    stray += 1
                else:
                    pairs.append((key, path))
        if pairs or stray:
            methods[method], unmatched[method] = pairs, stray
    if not any(methods.values()):
        raise InputError(f"--generated {generated_dir} has no images that match a patient: lay them out as "
                         f"<method>/<patient folder name>/<image>")
    return methods, unmatched


class _Face:
    """One photo's pixels, landmarks and ArcFace crop, or why it could not be used."""

    def __init__(self, path, size):
        self.rgb = self.xy = self.crop = None
        self.problem = None
        try:
            self.rgb = read_image(path)
            self.xy = face_landmarks(self.rgb, what="photo").xy
            self.crop = identity.align(self.rgb, self.xy, size)
        except InputError as e:
            # keep the kind of problem, never the file's name
            self.problem = "no face found" if "no face" in str(e) else "unreadable or too small"


def _mean_std(values):
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    return (float(v.mean()), float(v.std())) if len(v) else (None, None)


def evaluate(generated_dir, patients_dir, arcface_path, out_dir, lpips=False, lpips_weights=None,
             threshold=identity.THRESHOLD, item="rest", serfiq_passes=serfiq.PASSES, seed=0):
    """Score every generated image and write report.md, metrics.csv, report.png to out_dir.

    Returns {"rows": [per-method dict with COLUMNS], "per_patient": {method: [(index, n, arcface mean,
    pass rate)]}, "files": [written paths]}.
    """
    if item not in fidelity.ITEM_WEIGHTS:
        raise InputError(f"unknown Yanagihara item {item!r}: use one of {', '.join(fidelity.ITEMS)}")
    model = identity.load_model(arcface_path)
    if lpips:
        fidelity.lpips_model(lpips_weights)  # fail now, with its message, not after an hour of work
    patients = find_patients(patients_dir)
    methods, unmatched = find_generated(generated_dir, set(patients))
    size = model.input_size[0]

    patient_faces, patient_emb = {}, {}
    for key, paths in patients.items():
        faces = [_Face(p, size) for p in paths]
        usable = [f for f in faces if f.problem is None]
        if not usable:
            index = list(patients).index(key) + 1
            raise InputError(f"patient {index} (of {len(patients)}, folders in sorted order) has no photo with a "
                             f"detectable face: use frontal, well-lit photos")
        patient_faces[key] = {_stem(p): f for p, f in zip(paths, faces) if f.problem is None}
        patient_emb[key] = identity.embed_aligned(model, [f.crop for f in usable])

    rows, per_patient = [], {}
    for method, pairs in methods.items():
        records, skipped = [], unmatched[method]
        for key, path in pairs:
            face = _Face(path, size)
            if face.problem is not None:
                skipped += 1
                continue
            ref_faces = patient_faces[key]
            stem = _stem(path)
            ref = ref_faces.get(stem) or next(iter(ref_faces.values()))
            this_item = stem if stem in fidelity.ITEM_WEIGHTS else item
            sim = float(identity.cosine(identity.embed_aligned(model, [face.crop]), patient_emb[key]).max())
            rec = {"patient": key, "arcface": sim, "passed": sim < threshold,
                   "serfiq": serfiq.quality_aligned([face.crop], arcface_path, serfiq_passes, seed=seed)[0],
                   "fidelity": fidelity.expression_fidelity(face.xy, ref.xy, this_item)["score"],
                   "lpips": fidelity.lpips_distance([face.rgb], [ref.rgb], lpips_weights)[0] if lpips else None}
            records.append(rec)
        row = {"method": method, "images": len(records), "patients": len({r["patient"] for r in records}),
               "skipped": skipped}
        for col in ("lpips", "arcface", "serfiq", "fidelity"):
            row[f"{col}_mean"], row[f"{col}_std"] = _mean_std([r[col] for r in records])
        row["pass_rate"] = float(np.mean([r["passed"] for r in records])) if records else None
        rows.append(row)
        per_patient[method] = [
            (i + 1, len(rs), float(np.mean([r["arcface"] for r in rs])), float(np.mean([r["passed"] for r in rs])))
            for i, key in enumerate(patients) for rs in [[r for r in records if r["patient"] == key]] if rs]
        row["_arcface"] = [r["arcface"] for r in records]
        row["_fidelity"] = [r["fidelity"] for r in records]

    os.makedirs(out_dir, exist_ok=True)
    files = [write_bytes(os.path.join(out_dir, "metrics.csv"), _csv(rows)),
             write_bytes(os.path.join(out_dir, "report.md"),
                    _markdown(rows, per_patient, len(patients), threshold, lpips, serfiq_passes)),
             write_bytes(os.path.join(out_dir, "report.png"), _chart(rows, threshold))]
    for row in rows:
        row.pop("_arcface"), row.pop("_fidelity")
    return {"rows": rows, "per_patient": per_patient, "files": files}


def _fmt(v, digits=4):
    return "" if v is None else f"{v:.{digits}f}"


def _csv(rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([r["method"], r["images"], r["patients"], r["skipped"]]
                   + [_fmt(r[c], 6) for c in COLUMNS[4:]])
    return buf.getvalue()


def _pm(row, col):
    m, s = row[f"{col}_mean"], row[f"{col}_std"]
    return "n/a" if m is None else f"{m:.4f} ± {s:.4f}"


def _markdown(rows, per_patient, n_patients, threshold, lpips, passes):
    lines = ["# PalsySim evaluation", "",
             f"{n_patients} patients; one row per method; mean ± standard deviation over its images.", "",
             "| method | images | LPIPS ↓ | ArcFace similarity ↓ | SER-FIQ ↑ | expression fidelity ↑ | "
             f"pass rate (ArcFace < {threshold:.2f}) ↑ | skipped |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        rate = "n/a" if r["pass_rate"] is None else f"{100 * r['pass_rate']:.1f}%"
        lines.append(f"| {r['method']} | {r['images']} | {_pm(r, 'lpips')} | {_pm(r, 'arcface')} | "
                     f"{_pm(r, 'serfiq')} | {_pm(r, 'fidelity')} | {rate} | {r['skipped']} |")
    lines += ["", "## Per patient (ArcFace similarity mean, pass rate)", "",
              "| method | patient | images | ArcFace similarity | pass rate |", "|---|---:|---:|---:|---:|"]
    for method, entries in per_patient.items():
        for index, n, sim, rate in entries:
            lines.append(f"| {method} | patient {index} | {n} | {sim:.4f} | {100 * rate:.1f}% |")
    lines += ["", "## How to read it", "",
              "- ArcFace similarity: cosine of ArcFace embeddings to the patient (highest over the patient's "
              f"photos); lower is more private. An image passes below {threshold:.2f} (ArcFace's same-person "
              "score at 0.1% false accepts on LFW).",
              f"- SER-FIQ: 2·sigmoid(−mean pairwise distance) of {passes} dropout-perturbed embeddings; higher "
              "is better image quality.",
              "- Expression fidelity: how closely the face's left/right asymmetry matches the patient's, "
              "weighted per Yanagihara item; 1 is identical.",
              "- LPIPS: AlexNet perceptual distance to the patient's expression photo; lower is closer."
              + ("" if lpips else " Not computed (run with --lpips)."),
              "- skipped: images without a detectable face, or that match no patient.",
              "- Patients are numbered by their folders' sorted order; no names, paths or pixels are kept here."]
    return "\n".join(lines) + "\n"


def _chart(rows, threshold):
    """PNG bytes: per method, mean ArcFace similarity (x) vs mean fidelity (y) with std bars."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7, 5), dpi=110)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["tab10"]
    for i, r in enumerate(rows):
        if r["arcface_mean"] is None:
            continue
        c = cmap(i % 10)
        ax.scatter(r["_arcface"], r["_fidelity"], color=c, alpha=0.25, s=14)
        ax.errorbar(r["arcface_mean"], r["fidelity_mean"], xerr=r["arcface_std"], yerr=r["fidelity_std"],
                    fmt="o", color=c, markersize=9, capsize=4, label=f"{r['method']} (n={r['images']})")
    ax.axvline(threshold, color="crimson", linestyle="--", linewidth=1)
    ax.text(threshold, 1.02, f" same-person threshold {threshold:.2f}", color="crimson", fontsize=8,
            transform=ax.get_xaxis_transform())
    ax.set_xlabel("ArcFace similarity to the patient  (← more private)")
    ax.set_ylabel("expression fidelity  (↑ closer to the patient's palsy)")
    ax.set_ylim(0, 1.05)
    ax.set_title("Privacy vs expression fidelity per method", pad=18)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()
