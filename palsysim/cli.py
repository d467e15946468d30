"""`python -m palsysim COMMAND`: the core's jobs from a shell, without ComfyUI."""
import argparse
import json
import os
import sys

from .images import InputError, read_image, write_image


def _face(path, args):
    from .landmarks import face_landmarks
    return face_landmarks(read_image(path), max_faces=args.max_faces, min_confidence=args.min_confidence,
                          backend=args.backend, task_file=args.task_file, what=os.path.basename(path))


def cmd_landmarks(args):
    from .asymmetry import measure
    from .draw import landmarks_preview
    os.makedirs(args.out, exist_ok=True)
    for path in args.images:
        face = _face(path, args)
        stem = os.path.splitext(os.path.basename(path))[0]
        write_image(os.path.join(args.out, f"{stem}_landmarks.png"), landmarks_preview(read_image(path), face))
        with open(os.path.join(args.out, f"{stem}_landmarks.json"), "w") as f:
            json.dump({**face.to_json(), "measures": measure(face.xy)}, f)
        print(os.path.join(args.out, f"{stem}_landmarks.png"))


def cmd_measure(args):
    from .asymmetry import MEASURES, measure
    m = measure(_face(args.image, args).xy)
    if args.json:
        print(json.dumps(m, indent=2))
        return
    print(f"{'measure (IPD units, angle in deg)':34s} {'right':>8s} {'left':>8s} {'diff':>8s} {'asym %':>7s}")
    for k in MEASURES:
        a = m["asymmetry"][k]
        print(f"{k:34s} {m['right'][k]:8.3f} {m['left'][k]:8.3f} {a['difference']:8.3f} {a['percent']:7.1f}")


def cmd_synth(args):
    from .synth import synth_palsy
    image = read_image(args.image)
    warped, _ = synth_palsy(image, _face(args.image, args), args.side, args.severity)
    write_image(args.out, warped)
    print(args.out)


def cmd_demo(args):
    from .demo import run_demo
    run_demo(args.out)


def _detector_args(p):
    p.add_argument("--max-faces", type=int, default=1)
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

    p = sub.add_parser("demo", help="the main job on sample photographs, into --out")
    p.add_argument("--out", default="out/demo")
    p.set_defaults(func=cmd_demo)
    return ap


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
