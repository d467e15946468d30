"""`python -m palsysim study create|invite|serve|results`."""
from ..base.errors import InputError


def cmd_create(args):
    from .inputs import experiment_inputs
    from .store import create_study
    if bool(args.from_exp) == bool(args.images):
        raise InputError("give one of --from EXP (an experiment folder) or --images DIR (DIR/<method>/<patient>/...)")
    images, patients, methods = experiment_inputs(args.from_exp) if args.from_exp else (args.images, None, None)
    admin = create_study(args.out, images, args.patients or patients, args.mode, args.feedback, args.seed,
                         args.per_method, args.methods or methods)
    print(f"study written to {args.out}")
    print(f"admin link (keep it to yourself; it shows results{' and takes the reference scores' if args.mode == 'trainer' else ''}):")
    print(f"  {args.url.rstrip('/')}/start/{admin}")
    print(f"next: python -m palsysim study invite {args.out} --raters 14")


def cmd_invite(args):
    from .store import Study
    if not (args.admin or args.raters):
        raise InputError("nothing to invite: give --raters N (new personal links) and/or --admin (a new admin link)")
    study = Study(args.study)
    try:
        base = args.url.rstrip("/")
        if args.admin:
            print(f"new admin link (the old one no longer works):\n  {base}/start/{study.new_admin_token()}")
        if args.raters:
            tokens = study.add_raters(args.raters)
            first = study.conn.execute("SELECT COUNT(*) FROM raters").fetchone()[0] - len(tokens) + 1
            who = "trainee" if study.mode == "trainer" else "rater"
            print(f"one personal link per {who} (each link is that person's key; the study keeps only a hash):")
            for k, token in enumerate(tokens, start=first):
                print(f"  {who} {k}: {base}/start/{token}")
    finally:
        study.close()


def cmd_serve(args):
    from .app import serve
    serve(args.study, args.host, args.port, args.lan)


def cmd_results(args):
    from .stats import write_results
    from .store import Study
    study = Study(args.study)
    try:
        for path in write_results(study, args.out, boot=args.bootstrap):
            print(path)
    finally:
        study.close()


def add_command(commands):
    p = commands.add_parser("study", help="the rating study (Table I) and the Yanagihara trainer: create, invite, "
                                          "serve, results")
    sub = p.add_subparsers(dest="study_command", required=True)
    url = "http://127.0.0.1:8765"

    c = sub.add_parser("create", help="a new study folder from generated images (or videos) and the source photos")
    c.add_argument("--from", dest="from_exp", metavar="EXP", help="an experiment folder (EXP/generated, EXP/prepared/photos)")
    c.add_argument("--images", help="DIR/<method>/<patient>/<expression>/*.png or *.mp4 (one runner tree per method)")
    c.add_argument("--patients", help="DIR/<patient>/<expression>.png|jpg (or <expression>/ folders of many), the "
                                      "source photos; <expression>.mp4|webm|mov, videos, where generated videos are "
                                      "rated")
    c.add_argument("--methods", nargs="+", metavar="METHOD",
                   help="the method folders to rate (default: all; with --from, the experiment's methods without "
                        "its Fig. 8 ablation windows)")
    c.add_argument("--mode", choices=["rating", "trainer"], default="rating")
    c.add_argument("--feedback", choices=["image", "end"], default="image", help="trainer: feedback per image or at the end")
    c.add_argument("--seed", type=int, default=0, help="seeds every rater's task order (recorded in the study)")
    c.add_argument("--per-method", type=int, help="at most this many generated images per method (seeded sample)")
    c.add_argument("--url", default=url, help="where the study will be served, for the printed links")
    c.add_argument("--out", required=True, help="the new study folder (must not exist)")
    c.set_defaults(func=cmd_create)

    c = sub.add_parser("invite", help="print one personal link per new rater (or trainee)")
    c.add_argument("study")
    c.add_argument("--raters", type=int, default=0)
    c.add_argument("--admin", action="store_true", help="also make a new admin link (the old one stops working)")
    c.add_argument("--url", default=url, help="the address `study serve` listens on")
    c.set_defaults(func=cmd_invite)

    c = sub.add_parser("serve", help="serve the study's pages (loopback only unless --lan)")
    c.add_argument("study")
    c.add_argument("--host", default="127.0.0.1")
    c.add_argument("--port", type=int, default=8765)
    c.add_argument("--lan", action="store_true", help="allow a non-loopback --host (prints a warning)")
    c.set_defaults(func=cmd_serve)

    c = sub.add_parser("results", help="Table I, alpha, per-rater summaries, box plots (or the trainer's kappa)")
    c.add_argument("study")
    c.add_argument("--out", required=True, help="a new or empty folder, or one an earlier `study results` wrote")
    c.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for alpha's interval")
    c.set_defaults(func=cmd_results)
