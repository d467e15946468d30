"""`python -m palsysim COMMAND`: the core's jobs from a shell, without ComfyUI."""
import argparse
import json
import os
import sys

from .base.errors import InputError
from .base.extras import require_extras
from .base.layout import is_photo
from .base.outputs import folder_out, image_file_out, refuse_overlap, unique_names
from .base.photos import read_image, refuse_unreadable, write_image
from .condition.edges import ANNOTATOR, CONVENTIONS
from .face.landmarks import mute_native_logs


def _face(path, args):
    from .face.landmarks import face_landmarks
    return face_landmarks(read_image(path), max_faces=args.max_faces, min_confidence=args.min_confidence,
                          backend=args.backend, task_file=args.task_file, what=os.path.basename(path))


def cmd_landmarks(args):
    from .base.files import write_bytes
    from .face.asymmetry import measure
    from .face.draw import landmarks_preview
    refuse_unreadable(args.images)
    folder_out(args.out)
    # a/face.png and b/face.png: one stem, two results (face_landmarks, face_2_landmarks).
    stems = unique_names(os.path.splitext(os.path.basename(p))[0] for p in args.images)
    for path, stem in zip(args.images, stems):
        png, js = (os.path.join(args.out, f"{stem}_landmarks{ext}") for ext in (".png", ".json"))
        refuse_overlap(png, args.images)
        refuse_overlap(js, args.images)
        face = _face(path, args)
        write_image(png, landmarks_preview(read_image(path), face))
        write_bytes(js, json.dumps({**face.to_json(), "measures": measure(face.xy)}))
        print(png)


def cmd_measure(args):
    from .face.asymmetry import MEASURES, measure
    m = measure(_face(args.image, args).xy)
    if args.json:
        print(json.dumps(m, indent=2))
        return
    print(f"{'measure (IPD units, angle in deg)':34s} {'right':>8s} {'left':>8s} {'diff':>8s} {'asym %':>7s}")
    for k in MEASURES:
        a = m["asymmetry"][k]
        print(f"{k:34s} {m['right'][k]:8.3f} {m['left'][k]:8.3f} {a['difference']:8.3f} {a['percent']:7.1f}")


def cmd_synth(args):
    from .face.synth import synth_palsy
    image_file_out(args.out)
    refuse_overlap(args.out, [args.image])
    image = read_image(args.image)
    warped, _ = synth_palsy(image, _face(args.image, args), args.side, args.severity)
    write_image(args.out, warped)
    print(args.out)


def cmd_demo(args):
    from .demo import run_demo
    run_demo(args.out, args.backend)


def cmd_condition(args):
    from .base.files import write_bytes
    from .base.layout import find_rest_photo
    from .bench import codc_layout
    from .condition.make import make_codc
    from .face.landmarks import face_landmarks

    def files(root):
        if os.path.isfile(root):
            return [(root, None)]
        if not os.path.isdir(root):
            raise InputError(f"no such image file or folder: {root}")
        found = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if is_photo(f))
        if not found:
            raise InputError(f"no PNG or JPEG images under {root}")
        return [(p, os.path.relpath(p, root)) for p in found]

    def face(path, what):
        image = read_image(path)
        return image, face_landmarks(image, backend=args.backend, task_file=args.task_file, what=what).xy

    inputs = [p for p in (args.patient, args.donor, args.rest) if p]
    refuse_overlap(args.out, inputs)
    refuse_unreadable(p for root in inputs for p, _ in files(root))
    if os.path.isfile(args.patient):
        image_file_out(args.out)
    else:
        folder_out(args.out)
    donors = []
    if args.mode == "codc":
        if not args.donor:
            raise InputError("--mode codc needs --donor IMG or DIR (healthy, consenting non-patient faces)")
        donors = [face(p, f"donor {os.path.basename(p)}") for p, _ in files(args.donor)]
    patients = files(args.patient)
    single = len(patients) == 1 and patients[0][1] is None
    rests = {}  # patient folder -> rest landmarks (or None): every expression of a patient, one organ scale

    def rest_xy(rel):
        if args.mode != "codc":
            return None
        if single:
            return face(args.rest, "rest photo")[1] if args.rest else None
        if os.sep not in rel:
            return None
        patient = rel.split(os.sep)[0]
        if patient not in rests:
            path = find_rest_photo(os.path.join(args.patient, patient))
            rests[patient] = face(path, os.path.join(patient, "rest photo"))[1] if path else None
        return rests[patient]

    failed, report = [], {}
    # face.jpg and face.png in one folder: two conditions, face.png and face_2.png.
    names = unique_names(os.path.splitext(rel)[0] + ".png" for _, rel in patients) if not single else [None]
    for i, ((path, rel), name) in enumerate(zip(patients, names)):
        out = args.out if single else os.path.join(args.out, name)
        try:
            image, xy = face(path, "patient image" if single else rel)
            d_image, d_xy = donors[i % len(donors)] if donors else (None, None)
            rest = rest_xy(rel)
            condition, organs = make_codc(image, xy, args.mode, d_image, d_xy, args.size, args.contour, args.low,
                                          args.high, args.blur, args.canny, rest, organ_size=args.organ_size)
            write_image(out, condition)
            if organs is not None:
                key = os.path.basename(out) if single else os.path.relpath(out, args.out)
                own = make_codc(image, xy, "pf", None, None, args.size, args.contour, args.low, args.high, args.blur,
                                args.canny)[0]
                report[key] = codc_layout.report(organs, condition, own, rest is not None, args.organ_size)
        except InputError as e:
            if single:
                raise
            failed.append(str(e))
    if args.json:
        write_bytes(args.json, json.dumps(report, indent=1))
    done = len(patients) - len(failed)
    print(f"{done} condition image(s) written to {args.out}")
    if failed:
        raise InputError(f"{len(failed)} image(s) gave no condition:\n  " + "\n  ".join(failed))


def cmd_bench(args):
    from .bench import pipeline as bench
    if args.which == "codc-measures":
        bench.codc_measures(size=args.size)
    elif args.which == "codc-layout":
        from .bench.codc_layout import yanagihara_table
        yanagihara_table(size=args.size)
    elif args.which == "video":
        from .bench.video import generation, video
        if not (args.checkpoint and args.controlnet):
            video()
        else:  # the shipped workflow, per generated frame
            generation(args.models_dir or os.environ.get("MODELS_DIR"), args.checkpoint, args.controlnet,
                       frames=args.jobs, size=args.size, steps=args.steps, repeats=args.repeats or 3,
                       attend_to=args.attend_to)
    elif args.which == "runner":
        if not (args.checkpoint and args.controlnet):
            raise InputError("bench runner needs --checkpoint and --controlnet (file names in the models folders)")
        from .bench.runner import prepare_per_photo, runner_overhead
        models = args.models_dir or os.environ.get("MODELS_DIR")
        if not models:
            raise InputError("bench runner needs --models-dir (or MODELS_DIR): the folder with checkpoints/ and "
                             "controlnet/")
        runner_overhead(models, args.checkpoint, args.controlnet, jobs=args.jobs, size=args.size, steps=args.steps,
                        rounds=args.repeats or 30)
        prepare_per_photo(models, args.checkpoint, args.controlnet)
    elif args.which == "generate":
        if not (args.checkpoint and args.controlnet):
            raise InputError("bench generate needs --checkpoint and --controlnet (file names in the models folders)")
        from .bench.video import generation

        def video_on(url):  # the video workflow per attention mode, on generate's host
            return generation(args.models_dir, args.checkpoint, args.controlnet, args.frames, args.size, args.steps,
                              args.repeats or 3, url, args.attend_to)
        bench.generate(args.models_dir, args.checkpoint, args.controlnet, args.servers, args.jobs,
                       args.size, args.steps, video_on if args.attend_to else None)
    else:
        bench.preprocess(repeats=args.repeats or 30, size=args.size)


def cmd_evaluate(args):
    from .identity.check import check_thresholds
    from .measure.evaluate import evaluate
    check_thresholds(args.threshold, args.dlib_threshold, THRESHOLD_FLAGS)
    result = evaluate(args.generated, args.patients, args.arcface, args.out, lpips=args.lpips,
                      lpips_weights=args.lpips_weights, threshold=args.threshold, item=args.item,
                      backend=args.backend, dlib_threshold=args.dlib_threshold, distractors=args.distractors)
    for r in result["rows"]:
        measures = [f"{name} {r[key]:.4f}" for name, key in (("ArcFace (paired)", "arcface_mean"),
                                                             ("dlib (paired)", "dlib_mean")) if r[key] is not None]
        print(f"{r['method']}: {r['images']} images, {', '.join(measures) or 'no paired image'}, "
              f"pass rate {100 * (r['pass_rate'] or 0):.1f}%, skipped {r['skipped']}, unpaired {r['unpaired']}")
    for r in result["video_rows"]:
        r_mean = r["dynamics_r_mean"]
        print(f"{r['method']}: {r['images']} videos, dynamics r {'n/a' if r_mean is None else f'{r_mean:.3f}'}, "
              f"pass rate {100 * (r['pass_rate'] or 0):.1f}%, skipped {r['skipped']}, unpaired {r['unpaired']}")
    print("\n".join(result["files"]))


THRESHOLD_FLAGS = ("--threshold", "--dlib-threshold")


def _at_least(low):
    def parse(text):
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {low} or more, not {value}")
        return value
    parse.__name__ = f"whole number >= {low}"
    return parse


def cmd_identity(args):
    import itertools

    from .identity.check import check_thresholds, recognizers, resolve_backend
    if len(args.images) < 2:
        raise InputError("identity compares photos pairwise: give two or more")
    check_thresholds(args.threshold, args.dlib_threshold, THRESHOLD_FLAGS)
    used = resolve_backend(args.backend, args.arcface)
    recs = recognizers(used, args.arcface)
    stems = [os.path.splitext(os.path.basename(p))[0] for p in args.images]
    photos = [read_image(p) for p in args.images]
    feats = {b: [r.features([im], os.path.basename(p))[0] for im, p in zip(photos, args.images)] for b, r in recs.items()}
    thresholds = {"arcface": args.threshold, "dlib": args.dlib_threshold}
    pairs = []
    for i, j in itertools.combinations(range(len(args.images)), 2):
        pair = {"a": stems[i], "b": stems[j]}
        for b, r in recs.items():
            score = float(r.scores(feats[b][i][None], feats[b][j][None])[0, 0])
            m = {r.unit: score, "distance": float(r.dissimilarity(score)),
                 "same_person": bool(r.same_person(score, thresholds[b]))}
            pair.update(m) if len(used) == 1 else pair.update({b: m})
        if len(used) > 1:  # either recogniser taking them for one person is enough to call it so
            pair["same_person"] = any(pair[b]["same_person"] for b in used)
        pairs.append(pair)
    backend = used[0] if len(used) == 1 else "both"
    threshold = thresholds[used[0]] if len(used) == 1 else {b: thresholds[b] for b in used}
    if args.json:
        print(json.dumps({"backend": backend, "threshold": threshold, "pairs": pairs}, indent=2))
        return
    print(f"identity ({backend}): " + "; ".join(f"{r.label} same person at {r.unit} "
                                                  f"{'>=' if r.higher_is_alike else '<'} {thresholds[b]}"
                                                  for b, r in recs.items()))
    for p in pairs:
        cols = [f"{b} {(p[b] if len(used) > 1 else p)['distance']:.4f}" for b in used]
        print(f"{p['a']:>24s}  {p['b']:<24s} {'  '.join(cols)}  "
              f"{'same person' if p['same_person'] else 'different people'}")


def _detector_args(p):
    p.add_argument("--max-faces", type=_at_least(1), default=1)
    p.add_argument("--min-confidence", type=float, default=0.5)
    p.add_argument("--backend", choices=["auto", "legacy", "tasks"], default="auto")
    p.add_argument("--task-file", help="face_landmarker.task for the Tasks API backend")


def parser():
    ap = argparse.ArgumentParser(prog="python -m palsysim", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("landmarks", help="478 landmarks of each photo: overlay PNG + JSON")
    p.add_argument("images", nargs="+")
    p.add_argument("--out", required=True)
    _detector_args(p)
    p.set_defaults(func=cmd_landmarks)

    p = sub.add_parser("measure", help="facial-asymmetry measures of one photo")
    p.add_argument("image")
    p.add_argument("--json", action="store_true")
    _detector_args(p)
    p.set_defaults(func=cmd_measure)

    p = sub.add_parser("synth", help="synthetic one-sided palsy of a healthy face")
    p.add_argument("image")
    p.add_argument("--side", choices=["left", "right"], default="left", help="the subject's side")
    p.add_argument("--severity", type=float, default=0.6, help="0 (none) .. 1 (marked)")
    p.add_argument("--out", required=True)
    _detector_args(p)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("condition", help="ControlNet condition image(s): PF or CODC, from a photo or a dataset folder")
    p.add_argument("--patient", required=True, help="a photo, or a folder (searched recursively)")
    p.add_argument("--donor", help="codc: a donor photo, or a folder of them (used in turn)")
    p.add_argument("--mode", choices=["pf", "codc"], default="codc")
    p.add_argument("--out", required=True, help="a PNG file for one photo, a folder (same tree) for a folder")
    p.add_argument("--size", type=_at_least(0), default=512, help="square face crop side; 0 keeps the photos' own size")
    p.add_argument("--contour", choices=["canny", "oval"], default="canny")
    p.add_argument("--low", type=float, default=100.0, help="Canny low threshold")
    p.add_argument("--high", type=float, default=200.0, help="Canny high threshold")
    p.add_argument("--blur", type=float, default=0.0, help="Gaussian blur sigma before Canny (0 = none)")
    p.add_argument("--canny", choices=list(CONVENTIONS), default=ANNOTATOR,
                   help="rgb_l1: cv2.Canny on the RGB image, L1, as control_sd15_canny was trained (default); "
                        "grey_l2: grey luma, L2")
    p.add_argument("--json", metavar="FILE",
                   help="codc: also write what was done, per organ: patient box, donor box, scale, placed box, "
                        "anchor offset from the donor's, share of edges within 2 px of the patient's own edge map. "
                        "Folder forms read each patient's rest photo from DIR/<patient>/rest.png (or rest/)")
    p.add_argument("--rest", metavar="IMG", help="codc, one photo: the same patient's rest photo (each organ moves "
                                                 "on the donor's layout as much as it moved from rest)")
    p.add_argument("--organ-size", choices=["face", "rest"], default="face",
                   help="codc organ scale: face (the facial-scale ratio donor/patient, the paper's rule) or rest "
                        "(also the donor's organ size over the patient's at rest)")
    p.add_argument("--backend", choices=["auto", "legacy", "tasks"], default="auto")
    p.add_argument("--task-file", help="face_landmarker.task for the Tasks API backend")
    p.set_defaults(func=cmd_condition)

    p = sub.add_parser("bench", help="benchmarks: preprocess (CODC vs landmark detection alone), "
                                      "codc-measures (expression kept over the 10 Yanagihara items), "
                                      "codc-layout (per organ: anchor offset from the donor's, share near own edges), "
                                      "generate (s/image per ControlNet mode, images/s with 1..N hosts), "
                                      "video (per-frame seconds of the video pipeline, smoothing jitter and lag), "
                                      "runner (s/image of the runner vs a bare /prompt loop; prepare s/photo)")
    p.add_argument("which", choices=["preprocess", "codc-measures", "codc-layout", "generate", "video", "runner"])
    p.add_argument("--repeats", type=int, help="timed repeats (default 30; video: 3)")
    p.add_argument("--size", type=int, default=512, help="face size (preprocess, codc-measures, codc-layout) or image size (generate)")
    p.add_argument("--models-dir", help="generate, runner, video: the folder with checkpoints/ and controlnet/ "
                                        "(default $MODELS_DIR)")
    p.add_argument("--checkpoint", help="generate: SD1.5 checkpoint file name (video: with --controlnet, time the "
                                        "shipped video workflow per frame instead: --jobs frames, --size, --steps)")
    p.add_argument("--controlnet", help="generate: ControlNet file name")
    p.add_argument("--servers", type=int, nargs="+", default=[1, 2, 3], help="generate: host counts to compare")
    p.add_argument("--jobs", type=int, default=12, help="generate: images per figure")
    p.add_argument("--steps", type=int, default=20, help="generate: sampling steps")
    p.add_argument("--attend-to", nargs="+", metavar="MODE",
                   help="video: cross-frame attention modes to compare on one video and seed (first_frame, "
                        "first_and_previous, flow_guided): flicker, dynamics and s/frame per mode; generate: "
                        "the same on its first host, --frames frames, median of --repeats (default 3)")
    p.add_argument("--frames", type=int, default=16, help="generate --attend-to: frames of the video")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("evaluate", help="ArcFace privacy, expression fidelity, SER-FIQ (and LPIPS) per method "
                       "folder; on videos, dynamics, flicker and identity over frames")
    p.add_argument("--generated", required=True, action="append",
                   help="METHOD=OUT: one method's runner output (OUT/<patient>/<expression>/<image or mp4>); "
                        "repeat per method. Or DIR holding one such tree per method (DIR/<method>/...)")
    p.add_argument("--patients", required=True, help="the runner's --patients folder: <patient>/<expression>.png or <expression>/*.png")
    p.add_argument("--arcface", help="an ArcFace ONNX, e.g. models/insightface/buffalo_l/w600k_r50.onnx")
    p.add_argument("--backend", choices=["auto", "arcface", "dlib", "both"], default="auto",
                   help="identity backend (auto: ArcFace when --arcface names a file, else dlib)")
    p.add_argument("--dlib-threshold", type=float, default=0.6, help="dlib same-person distance (default 0.6)")
    p.add_argument("--lpips", action="store_true", help="also LPIPS (needs AlexNet's weights on disk)")
    p.add_argument("--lpips-weights", help="alexnet-owt-7be5be79.pth (default: torch's hub cache)")
    p.add_argument("--threshold", type=float, default=0.28, help="ArcFace pass threshold (default 0.28)")
    p.add_argument("--item", default="rest", help="Yanagihara item for fidelity weights (file stems naming one win)")
    p.add_argument("--out", default="evaluation", help="folder for report.md, metrics.csv, report.png")
    p.add_argument("--distractors", help="a folder of face photos of other people (one each), added to the "
                                         "re-identification gallery beside every patient's photos")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("identity", help="pairwise identity distances of photos (dlib and/or ArcFace)")
    p.add_argument("images", nargs="+", help="two or more photos, one face each")
    p.add_argument("--backend", choices=["auto", "arcface", "dlib", "both"], default="auto",
                   help="auto: ArcFace when --arcface names a file, else dlib")
    p.add_argument("--arcface", help="an ArcFace ONNX, e.g. models/insightface/buffalo_l/w600k_r50.onnx")
    p.add_argument("--threshold", type=float, default=0.28, help="ArcFace same-person similarity (default 0.28)")
    p.add_argument("--dlib-threshold", type=float, default=0.6, help="dlib same-person distance (default 0.6)")
    p.add_argument("--json", action="store_true", help='print {"backend", "threshold", "pairs": [...]}')
    p.set_defaults(func=cmd_identity)

    p = sub.add_parser("demo", help="the main job on sample photographs, into --out")
    p.add_argument("--out", default="out/demo")
    p.add_argument("--backend", choices=["auto", "arcface", "dlib", "both"], default="auto",
                   help="identity backend (auto: ArcFace when its file is present, else dlib)")
    p.set_defaults(func=cmd_demo)

    # The apps, each with its own module: each adds its command (parser, options, what it runs) the same way.
    from . import experiment, runner
    from .models import command as models
    from .study import cli as study
    for app in (runner, experiment, study, models):
        app.add_command(sub)
    return ap


def main(argv=None):
    args = parser().parse_args(argv)
    mute_native_logs()
    try:
        require_extras(args.command)
        args.func(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a folder that cannot be written, a disk that is full: a message, not a traceback
        print(f"error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 2
    return 0
