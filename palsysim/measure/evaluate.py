"""`python -m palsysim evaluate`: privacy, fidelity and quality of generated images, per method (Table II).

Layouts (image files: palsysim.layout.PHOTO_EXTS, .png .jpg .jpeg), as the headless runner reads and writes them:

    PATIENTS/<patient>/<expression>.png           the runner's input (the patients' photos), or
    PATIENTS/<patient>/<expression>/*.png         many photos of the item (sources <expression>/photo<k>)
    OUT/<patient>/<source>/<identity>_<seed>.png   the runner's output: one such tree per method

`--generated METHOD=OUT` (repeatable) names one method's tree; `--generated DIR` a folder holding
one such tree per method (DIR/<method>/<patient>/...). In a tree, `<patient>/<expression>.png`
(one image per expression) is read too, and `<patient>.png` / `<patient>_<anything>.png` with no
expression.

Each measure is one class in metrics.py (its columns, score, report headings and notes). Per generated
image, against its SOURCE photo (same patient, same source: the photo whose stem is
the expression folder's name, or the k-th photo of the expression's folder for <expression>/photo<k>/):
- LPIPS (AlexNet) of the two 512 landmark face crops (facecrop.face_crop), at 512;
- ArcFace similarity to the source photo (Table II's column) and the maximum over all the
  patient's photos (the privacy gate's rule, a second column); dlib's distance to the source and
  the minimum over all photos, by `backend` (auto: ArcFace when its ONNX is given, else dlib; both);
- SER-FIQ: the calibrated score 1/(1+exp(-130(q-0.88))) and the raw q (needs the ArcFace ONNX);
- expression fidelity of the asymmetry to the source photo, weighted for the item;
- re-identification per recogniser (palsysim.reid): rank-1 against a gallery of every patient's photos
  (plus --distractors), the share below the same-person threshold, each image's closest training photo.
An image whose source photo is missing is listed as unpaired: its paired columns stay empty, never
filled from another photo. An image without a face is listed with the reason (per image, never a
crash). pass: the image passes every backend used (ArcFace max < threshold, dlib min >= 0.6).

Videos (the runner's video jobs: OUT/<patient>/<expression>/<identity>_<seed>.mp4) are scored against
the patient's video of the same expression (PATIENTS/<patient>/<expression>.mp4|webm|mov) by the video
metrics (metrics("video"): dynamics of the asymmetry curves, flicker and jitter, identity over frames),
into videos.csv (per method), video_records.csv (per video) and report.md's video section.

Privacy: the outputs name methods, expressions and counts only; patients appear as "patient 1..K"
(their folders in sorted order), images by number, never by folder or file name; no pixels copied.
"""
import os
from dataclasses import replace

import numpy as np

from ..base.errors import InputError
from ..base.files import write_bytes
from ..base.layout import find_patients, generated_sources, is_photo, is_video, photos_in
from ..base.photos import read_image, refuse_problems
from ..base.video_files import refuse_unreadable_media
from ..base.vocabulary import ITEMS
from ..condition.facecrop import face_crop
from ..face.landmarks import face_landmarks
from ..identity import arcface, dlib_face
from ..identity.check import check_thresholds, recognizers, resolve_backend
from . import chart, fidelity, image_report, reid, serfiq, video_report
from .metrics import LPIPS_SIZE, Identity, Scoring, keys, metrics
from .video import Clip


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def method_trees(generated):
    """--generated values -> {method: tree folder}. "METHOD=DIR" is one tree; a bare DIR holds one per method."""
    trees = {}
    for g in generated:
        method, sep, folder = g.partition("=")
        if sep and method and not os.path.isdir(g):
            if not os.path.isdir(folder):
                raise InputError(f"--generated {g}: {folder} is not a folder: give METHOD=OUT, OUT the runner's --out")
            if method in trees:
                raise InputError(f"--generated names method {method!r} twice: give each method one tree")
            trees[method] = folder
            continue
        if not os.path.isdir(g):
            raise InputError(f"--generated {g} is not a folder: give the folder that holds one sub-folder per "
                             f"method (e.g. zero_shot/, partial_codc/), or METHOD=OUT for one runner output")
        for method in sorted(os.listdir(g)):
            if os.path.isdir(os.path.join(g, method)):
                if method in trees:
                    raise InputError(f"--generated names method {method!r} twice: give each method one tree")
                trees[method] = os.path.join(g, method)
    return trees


def find_generated(trees, patient_keys):
    """{method: tree} -> ({method: [(patient key, expression or None, image path)]}, {method: stray count})."""
    by_length = sorted(patient_keys, key=len, reverse=True)  # "p10" before "p1"
    methods, unmatched = {}, {}
    for method, tree in trees.items():
        found, stray = [], 0
        for name in sorted(os.listdir(tree)):
            path = os.path.join(tree, name)
            if os.path.isdir(path):
                files = [(_stem(f), f) for f in photos_in(path, videos=True)] + generated_sources(path, videos=True)
                if name in patient_keys:
                    found += [(name, e, f) for e, f in files]
                else:
                    stray += len(files)
            elif is_photo(name):
                stem = _stem(name)
                key = next((k for k in by_length if stem == k or stem.startswith(k + "_")), None)
                if key is None:
                    stray += 1
                else:
                    found.append((key, None, path))
        if found or stray:
            methods[method], unmatched[method] = found, stray
    if not any(methods.values()):
        raise InputError(f"--generated {', '.join(trees.values()) or '(no method folders)'} has no images or videos "
                         f"that match a patient: lay each method out as the runner writes it, "
                         f"<patient folder name>/<expression>/<image>")
    return methods, unmatched


class Face:
    """One photo's landmarks and each backend's features, or why it could not be used; its pixels (rgb)
    while it is scored. Read from `path`, or made from pixels already decoded and landmarked (rgb, xy)."""

    def __init__(self, recognizers, path=None, rgb=None, xy=None):
        self.rgb, self.xy, self.features, self.problem, self._crop = rgb, xy, {}, None, None
        self.unreadable = None  # the reader's message, for the caller to refuse the photo by
        if self.rgb is None:
            try:
                self.rgb = read_image(path)
            except InputError as e:
                self.problem, self.unreadable = "unreadable or too small", str(e)
                return
        try:
            if self.xy is None:
                self.xy = face_landmarks(self.rgb, what="photo").xy
        except InputError as e:
            # keep the kind of problem, never the file's name
            self.problem = "no face found" if "no face" in str(e) else "unreadable or too small"
            return
        for b, r in recognizers.items():
            try:
                self.features[b] = r.features([self.rgb], "photo", landmarks=[self.xy])[0]
            except InputError as e:
                self.problem = f"no face found by {b}" if "no face" in str(e) else f"{b}: {e}"
                return

    def crop(self):
        """The 512 landmark face crop LPIPS compares."""
        if self._crop is None:
            self._crop = face_crop(self.rgb, self.xy, LPIPS_SIZE)[0]
        return self._crop

    def kept(self, crop=False):
        """This face as a reference kept for a whole evaluation: landmarks, features and, for LPIPS, the crop;
        not the photo's pixels (an experiment's patients hold 60 photos per item)."""
        if crop and self.problem is None:
            self.crop()
        self.rgb = None
        return self


def read_patients(found, recognizers, faces, crop=False):
    """found: {key: {source: path}} -> ({key: {source: Face}} of the usable photos, {key: {backend: (M, D)}}).
    faces: {(key, source): Face} already read (with these backends' features), not read again; the photos
    read here are added. An unreadable photo is refused (it would drop out of the references unsaid)."""
    for key, paths in found.items():
        for s, p in paths.items():
            face = faces.get((key, s))
            if face is None or face.problem is None and (not set(recognizers) <= set(face.features)
                                                         or crop and face._crop is None):
                faces[key, s] = Face(recognizers, p).kept(crop)
    refuse_problems([f.unreadable for k, paths in found.items() for s in paths for f in [faces[k, s]] if f.unreadable])
    usable, refs = {}, {}
    for index, (key, paths) in enumerate(found.items(), 1):
        usable[key] = {s: faces[key, s] for s in paths if faces[key, s].problem is None}
        if not usable[key]:
            raise InputError(f"patient {index} (of {len(found)}, folders in sorted order) has no photo with "
                             f"a face every backend ({', '.join(recognizers)}) finds: use frontal, well-lit photos")
        refs[key] = {b: np.stack([f.features[b] for f in usable[key].values()]) for b in recognizers}
    return usable, refs


def evaluate(generated, patients_dir, arcface_path, out_dir, lpips=False, lpips_weights=None,
             threshold=arcface.THRESHOLD, item="rest", serfiq_passes=serfiq.PASSES, seed=0, backend="auto",
             dlib_threshold=dlib_face.THRESHOLD, distractors=None, faces=None):
    """Score every generated image and write report.md, metrics.csv, report.png to out_dir.

    generated: a list of --generated values (see method_trees), or one folder of method trees.
    item: the Yanagihara item for images whose expression is unknown or names no item.
    distractors: a folder of face photos, each a person of its own, added to the re-identification gallery.
    faces: {(patient key, source): Face} of the patients' photos already read (an earlier result's "faces",
    or the experiment's prepare stage), not read again.
    Returns {"rows": [per-method dict with image_report.COLUMNS, and "chart": its chart.series], "per_patient": {method:
    [(index, n, privacy mean, pass rate)]}, "listed": [(method, image label, problem)], "backends": used,
    "reid": {method: reid.measure}, "faces": the patients' faces, "files": [written paths], "video_rows": per-method
    rows of the videos' metrics (metrics("video")), "video_records": {method: per-video records}}.
    """
    if item not in fidelity.ITEM_WEIGHTS:
        raise InputError(f"unknown Yanagihara item {item!r}: use one of {', '.join(ITEMS)}")
    check_thresholds(threshold, dlib_threshold)
    used = resolve_backend(backend, arcface_path)
    recs = recognizers(used, arcface_path)
    if lpips:
        fidelity.lpips_model(lpips_weights)  # fail now, with its message, not after an hour of work
    found = find_patients(patients_dir, videos=True)
    photos = {k: {src: p for src, p in ps.items() if not is_video(p)} for k, ps in found.items()}
    trees = method_trees([generated] if isinstance(generated, str) else list(generated))
    methods, unmatched = find_generated(trees, set(found))
    clips = {m: [e for e in entries if is_video(e[2])] for m, entries in methods.items()}
    methods = {m: [e for e in entries if not is_video(e[2])] for m, entries in methods.items()}
    # the patients' videos too (score_videos reads each one a generated video's patient has), not after the photos
    wanted = {key for entries in clips.values() for key, _, _ in entries}
    refuse_unreadable_media([p for entries in (*methods.values(), *clips.values()) for _, _, p in entries]
                            + [p for k in wanted for p in found[k].values() if is_video(p)])
    faces = dict(faces or {})
    patient_faces, refs = read_patients({k: ps for k, ps in photos.items() if ps}, recs, faces, crop=lpips)
    s = Scoring(recs, {"arcface": threshold, "dlib": dlib_threshold}, refs, arcface_path, lpips,
                lpips_weights, serfiq_passes, seed, item)
    measured = [m for m in metrics() if m.used(s)]
    identities = [m for m in measured if isinstance(m, Identity)]
    gallery = reid.Gallery({k: {src: f.features for src, f in faces.items()} for k, faces in patient_faces.items()},
                           _distractors(distractors, recs), recs) if any(methods.values()) else None
    reid_results, rows, per_patient, listed = {}, [], {}, []
    def pairs(key, expression, face):
        return (patient_faces.get(key, {}).get(expression) if expression else None,
                "the patient has no usable photo of this expression")
    for method, images in methods.items():
        if not images:
            continue
        records, skipped, unpaired, probes = score_all(method, images, "image", lambda p: Face(recs, p), pairs, s,
                                                       measured, list(found), listed)
        row = summary_row(method, records, skipped + unmatched[method], unpaired, measured)
        privacy = identities[0]
        row["chart"] = chart.series(privacy.recognizer, privacy.closest, s.thresholds[privacy.recognizer.name], records)
        rows.append(row)
        reid_results[method] = reid.measure(gallery, probes, s.thresholds)
        per_patient[method] = [
            (i + 1, len(rs), float(np.mean([r[privacy.closest] for r in rs])), float(np.mean([r["passed"] for r in rs])))
            for i, key in enumerate(found) for rs in [[r for r in records if r["patient"] == key]] if rs]
    videos = score_videos(clips, found, recs, s, listed)

    os.makedirs(out_dir, exist_ok=True)
    files = []
    if rows or not videos["rows"]:
        files += [write_bytes(os.path.join(out_dir, "metrics.csv"), image_report.csv_text(rows)),
                  write_bytes(os.path.join(out_dir, "report.png"),
                              chart.privacy_fidelity([(r["method"], r["chart"]) for r in rows]))]
    md = image_report.markdown(rows, per_patient, [x[:3] for x in listed if x[3] == "image"], len(found), s, measured) \
        + reid.markdown(reid_results, gallery, s.thresholds) if rows or not videos["rows"] else ""
    files += video_report.write(out_dir, videos)
    files.insert(0, write_bytes(os.path.join(out_dir, "report.md"), md + video_report.markdown(
        videos, [x for x in listed if x[3] == "video"], len(found), heading=not md)))
    return {"rows": rows, "per_patient": per_patient, "listed": [x[:3] for x in listed], "backends": used,
            "reid": reid_results, "faces": faces, "files": files, "video_rows": videos["rows"],
            "video_records": videos["records"]}


def score_all(method, entries, kind, read, pairs, s, measured, keys_order, listed):
    """Score one method's images (kind "image") or videos ("video"): read(path) gives a Face or a Clip,
    pairs(key, expression, item) its source (None where unpaired) and why not. Records what could not be
    used in listed as (method, label, why, kind). Returns (records, skipped, unpaired, probes)."""
    records, skipped, unpaired, probes, counters = [], 0, 0, [], {}
    deciding = [m for m in measured if hasattr(m, "passed")]
    for key, expression, path in entries:
        counters[key] = counters.get(key, 0) + 1
        label = f"patient {keys_order.index(key) + 1}, {expression or 'no expression'}, {kind} {counters[key]}"
        item = read(path)
        if item.problem is None and key not in s.refs:
            item.problem = "the patient has no usable photo or video to compare with"
        if item.problem is not None:
            skipped += 1
            listed.append((method, label, item.problem, kind))
            continue
        source, why = pairs(key, expression, item)
        if source is None:
            unpaired += 1
            listed.append((method, label, f"unpaired: {why}", kind))
        rec = {"patient": key, "label": label, **{k: None for k in keys(kind)}}
        for m in measured:
            rec.update(m.score(s, item, source, key, expression))
        rec["passed"] = all(m.passed(s, rec) for m in deciding)
        records.append(rec)
        probes.append((key, item.features, label))
    return records, skipped, unpaired, probes


def summary_row(method, records, skipped, unpaired, measured, kind="image"):
    """One method's row: counts, each key's mean and standard deviation over its records, the pass rate."""
    row = {"method": method, "images": len(records), "patients": len({r["patient"] for r in records}),
           "skipped": skipped, "unpaired": unpaired}
    for col in keys(kind):
        row[f"{col}_mean"], row[f"{col}_std"] = chart.mean_std([r[col] for r in records])
    row["pass_rate"] = float(np.mean([r["passed"] for r in records])) if records else None
    row["measured"] = [k for m in measured for k in m.keys]
    return row


def score_videos(clips, found, recs, s, listed):
    """Every generated video against the patient's video of its expression (video.Clip, read once per
    patient video) -> {"rows": per-method summary rows, "records": {method: per-video records}}. The
    identity references are the patient's photos and REFERENCE_FRAMES frames of each of their videos."""
    wanted = {key for entries in clips.values() for key, _, _ in entries}
    patient_clips = {k: {src: Clip(recs, p) for src, p in ps.items() if is_video(p)} for k, ps in found.items()
                     if k in wanted}
    refuse_problems([c.unreadable for cs in patient_clips.values() for c in cs.values() if c.unreadable], "video")
    refs = dict(s.refs)
    for key, cs in patient_clips.items():
        usable = [c for c in cs.values() if c.problem is None]
        if usable:
            photos = [s.refs[key][b] for b in recs] if key in s.refs else [None] * len(recs)
            refs[key] = {b: np.concatenate(([p] if p is not None else []) + [c.reference(b) for c in usable])
                         for b, p in zip(recs, photos)}
    sv = replace(s, refs=refs)
    measured = [m for m in metrics("video") if m.used(sv)]

    def pairs(key, expression, clip):
        source = patient_clips.get(key, {}).get(expression)
        if source is None:
            return None, (f"the patient has no video of {expression or 'this expression'}: put it beside their photos "
                          f"as PATIENTS/<patient>/{expression or '<expression>'}.mp4")
        if source.problem is not None:
            return None, f"the patient's video of this expression cannot be measured ({source.problem})"
        if len(source) != len(clip):
            return None, f"{len(clip)} frames against the patient video's {len(source)}: generate from the whole video"
        return source, None
    rows, records = [], {}
    for method, entries in clips.items():
        if entries:
            recs_m, skipped, unpaired, _ = score_all(method, entries, "video", lambda p: Clip(recs, p), pairs, sv,
                                                     measured, list(found), listed)
            rows.append(summary_row(method, recs_m, skipped, unpaired, measured, "video"))
            records[method] = recs_m
    return {"rows": rows, "records": records, "measured": measured, "scoring": sv}


def _distractors(folder, recs):
    """[{backend: features}] of the distractor faces in folder (each image a person of its own), or []."""
    if folder is None:
        return []
    if not os.path.isdir(folder) or not photos_in(folder):
        raise InputError(f"--distractors {folder} is not a folder of face photos: give a folder of images, "
                         f"one person each")
    faces = {p: Face(recs, p) for p in photos_in(folder)}
    for path, face in faces.items():  # public faces, not patients': the name helps find the one to remove
        if face.problem:
            raise InputError(f"--distractors: {os.path.basename(path)}: {face.problem}; remove it or replace it "
                             f"with a frontal face photo")
    return [f.features for f in faces.values()]
