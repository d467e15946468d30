"""`python -m palsysim run`: a shipped workflow, headless, in batch, against a ComfyUI server.

    python -m palsysim run workflows/api/palsy_pf.json --patients PATIENTS --out OUT \
        [--server URL [--server URL ...] | --embedded [N]] [--identities "a man" "a woman"] [--seeds 1 2]
        [--expressions rest grin] [--donor PHOTO] [--set KSampler.steps=30] [--bypass NODE]
        [--reconnect-timeout 120]

PATIENTS holds one folder per patient, one photo per Yanagihara item in it, named after the item:
PATIENTS/<patient>/<expression>.png|.jpg, or a folder of many: PATIENTS/<patient>/<expression>/*.png|.jpg.
Results go to OUT/<patient>/<expression>/<identity>_<seed>.png (for the k-th photo of a folder:
OUT/<patient>/<expression>/photo<k>/...) with OUT/manifest.json; a second run with the same OUT skips
what is done.

The runner fills in nodes by their titles (the API file's _meta.title; the UI shows the same):
  patient            LoadImage: the job's photo           patient <expression>  LoadImage (grid)
  patient rest       LoadImage: the patient's rest photo, the first of a rest/ folder (CODC: each organ
                     moves as far as it moved from rest)
  donor              LoadImage: --donor                    identities   PalsyLines (grid): one per line
  identity           PrimitiveString: the job's identity   grid output  the grid sheet
  output             the save node: the job's images (grid: every identity's batch, in item order)
and every `seed`/`noise_seed` input gets the job's seed. When `output` is fed by a privacy gate,
the gate's record of what it kept names each saved image by its place in the batch.

A video workflow (its LoadVideo titled `patient video`, workflows/api/palsy_video.json) takes
PATIENTS/<patient>/<expression>.mp4|webm|mov, one job per video, and writes
OUT/<patient>/<expression>/<identity>_<seed>.mp4; a photo workflow takes only photos.

Privacy: photos are re-encoded to PNG (videos to a fresh mp4) without metadata and uploaded under their content hash, so
the server never sees a patient's file name, path or EXIF; the manifest names patients only by
the folder names the output layout already uses.

Several servers (--server given more than once, or --embedded N) share the jobs: each job goes
to the server with the shortest queue, at most two of ours pending on any one. A server that goes
away mid-batch has its jobs queued again on the others and is retried until it answers; with no
server answering for --reconnect-timeout seconds the run stops. Images already written are never
redone, and a job's images depend on its seed alone, not on which server made them.
"""
import os
import sys

from .base.errors import InputError
from .base.layout import find_patients
from .base.outputs import folder_out, refuse_overlap
from .base.photos import refuse_unreadable
from .base.vocabulary import ITEMS
from .comfy.client import UPLOAD_FOLDER
from .comfy.generate import generate
from .comfy.host import servers
from .comfy.plan import refuse_mismatch, takes_videos, upload_of


def add_server_arguments(p, default="http://127.0.0.1:8188"):
    """--server URL (repeatable) | --embedded [N]: where the jobs run (run and experiment share it).
    Neither given: `default`, a URL, or "embedded" for one embedded host."""
    where = p.add_mutually_exclusive_group()
    where.add_argument("--server", action="append", metavar="URL",
                       help=f"a ComfyUI server (default: {'one embedded host' if default == 'embedded' else default}); "
                            f"give several to share the jobs")
    where.add_argument("--embedded", type=int, nargs="?", const=1, default=int(default == "embedded"), metavar="N",
                       help="start N embedded ComfyUI hosts for this run (default 1), each on its own GPU "
                            "where there are GPUs")


def add_command(sub):
    p = sub.add_parser("run", help="a workflow headless in batch: patients x expressions x identities x seeds")
    p.set_defaults(func=lambda args: sys.exit(main(args)))  # 1: some jobs failed; the manifest and stderr say which
    p.add_argument("workflow", help="a workflow JSON (API format from workflows/api/, or a UI-format file)")
    add_server_arguments(p)
    p.add_argument("--models-dir", help="--embedded: extra models folder (default $MODELS_DIR)")
    p.add_argument("--reconnect-timeout", type=float, default=120.0, metavar="SECONDS",
                   help="how long to wait when no server answers (restarted, crashed) before giving up")
    p.add_argument("--patients", required=True,
                   help="PATIENTS/<patient>/<expression>.png|jpg (a video workflow: .mp4|webm|mov)")
    p.add_argument("--expressions", nargs="+", help=f"only these items (default: every photo found): {' '.join(ITEMS)}")
    p.add_argument("--identities", nargs="+", help='prompt identities, e.g. "a man" "a woman" (default: the workflow\'s)')
    p.add_argument("--seeds", nargs="+", type=int, help="default: the workflow's seed")
    p.add_argument("--donor", help="the donor photo for CODC workflows")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NODE.INPUT=VALUE",
                   help="change an input; NODE is a node id, title or type (all nodes of that type)")
    p.add_argument("--bypass", action="append", default=[], metavar="NODE",
                   help="bypass a node as ComfyUI's bypass mode does (e.g. 'privacy gate' without an ArcFace model)")
    p.add_argument("--out", required=True)
    p.add_argument("--keep-uploads", action="store_true",
                   help=f"--server: leave what the run put on the server, the uploaded photos in input/{UPLOAD_FOLDER}/ "
                        f"and the run's prompts in /history, which name them (both deleted by default)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args):
    # Videos are found too, so that a photo workflow given videos (or the reverse) is told so, now.
    patients = find_patients(args.patients, args.expressions, videos=True)
    refuse_mismatch(patients, takes_videos(args.workflow), args.expressions)
    if args.donor and not os.path.isfile(args.donor):
        raise InputError(f"--donor {args.donor}: no such file")
    refuse_overlap(args.out, [args.patients] + [args.donor] * bool(args.donor))
    # Every photo and video read once before any server starts or folder is made: an unreadable or oversized one
    # is named now. What reading makes is the upload the batch sends (metadata-free bytes): none is decoded twice.
    sources = sorted({p for photos in patients.values() for p in photos.values()})
    uploads = {}
    refuse_unreadable(sources + [args.donor] * bool(args.donor), read=lambda p: uploads.setdefault(p, upload_of(p)))
    folder_out(args.out)  # an existing file, an unwritable place: said now, not after generating
    # Settings as given, minus anything that would locate patient files (the --patients path).
    settings = {"overrides": args.overrides, "bypassed": args.bypass}
    with servers(args.server, args.embedded, args.models_dir) as urls:
        summary = generate(urls, args.workflow, patients, args.out, args.overrides, args.bypass,
                           identities=args.identities, seeds=args.seeds, donor=args.donor, settings=settings,
                           progress=not args.quiet, keep_uploads=args.keep_uploads,
                           reconnect_s=args.reconnect_timeout, expressions=args.expressions, uploads=uploads)
    redone = summary["redone"]
    why = f" ({sum(redone.values())} redone: " + "; ".join(f"{k}: {n}" for k, n in sorted(redone.items())) + ")"
    print(f"{summary['done']} job(s) done{why if redone else ''}, {summary['skipped']} already done, "
          f"{summary['held_back']} image(s) held back by the privacy gate, {len(summary['failed'])} failed; "
          f"results in {args.out}")
    if summary["failed"]:
        print("failed:\n  " + "\n  ".join(summary["failed"]), file=sys.stderr)
        return 1
    return 0
