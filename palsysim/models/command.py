"""`python -m palsysim models [--fetch NAME...|all]`: the table of model files, and explicit downloads."""
import os
import sys

from ..base.model_files import MODELS, by_key, extra_folders, model_dirs, status
from .fetch import FetchError, Unreachable, fetch, manual_download_message


def _size(n):
    return "-" if n is None else f"{n / 1e6:,.1f} MB"


def run(args):
    dirs = [args.models_dir] if args.models_dir else model_dirs()
    if not dirs:
        print("models: no models folder: set MODELS_DIR or --models-dir, or run make setup", file=sys.stderr)
        return 2
    if not args.fetch:
        extra = {} if args.models_dir else extra_folders()
        print(f"models folder: {' then '.join(dirs)}" + "".join(f"\n  and for {kind}: {', '.join(folders)} "
                                                               f"(extra_model_paths.yaml)" for kind, folders in extra.items()))
        for m in MODELS:
            row = status(m, [args.models_dir] if args.models_dir else None, check=not args.quick)
            print(f"\n{m.name}  [{m.folder}]  {'found ' + row['found'] if row['found'] else 'MISSING'}")
            print(f"  size {_size(row['size'])}; sha256 {row['digest']}")
            print(f"  licence: {m.licence}; used by: {m.used_by}")
            print(f"  source: {m.url}")
            if not row["found"]:
                print(f"  get it: python -m palsysim models --fetch {m.key}")
        return 0
    try:
        wanted = MODELS if args.fetch == ["all"] else [by_key(k) for k in args.fetch]
    except KeyError as e:
        print(f"models: {e.args[0]}", file=sys.stderr)
        return 2
    mirror = os.environ.get("PALSYSIM_MODEL_MIRROR")
    unreachable, failed = [], []
    for m in wanted:
        try:
            path = fetch(m, dirs[0], url=f"{mirror.rstrip('/')}/{m.key}" if mirror else None,
                         progress=not args.quiet)
            print(f"{m.key}: {path}" + ("" if m.sha256 else " (unverified: no public digest to check against)"))
        except Unreachable as e:
            unreachable.append(m)
            failed.append(str(e))  # names the URL tried: the mirror's, where one is set
        except FetchError as e:
            failed.append(str(e))
    for message in failed:
        print(f"models: {message}", file=sys.stderr)
    if unreachable:
        print(manual_download_message(unreachable, dirs[0]), file=sys.stderr)
    return 1 if failed or unreachable else 0


def add_command(sub):
    p = sub.add_parser("models", help="model files: found or missing, size, digest, licence, source; "
                                      "--fetch downloads on request")
    p.add_argument("--fetch", nargs="+", metavar="NAME", help="download these (file names, or all)")
    p.add_argument("--models-dir", help="ComfyUI models folder (default $MODELS_DIR, else the set-up's ComfyUI)")
    p.add_argument("--quick", action="store_true", help="skip the SHA-256 check of files found")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=lambda a: sys.exit(run(a)))
