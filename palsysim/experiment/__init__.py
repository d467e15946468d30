"""`python -m palsysim experiment init|run EXP`: the paper's comparison on the user's own patients.

    init  writes EXP/experiment.toml (commented; the paper's methods, windows and settings)
    run   preflight -> prepare -> train -> generate -> evaluate -> figures -> report, each item skipped
          when its fingerprint (input bytes and settings) is unchanged; kill it and run it again. Patients'
          expression videos go through the [video] methods too (videos.py): the report's video section.
"""
import json
import os

from .. import runner
from ..base.files import sha256_of, write_bytes
from . import config, preflight, report, stages, videos


def evaluate(exp, state, bar, found, faces):
    """Per run: the evaluate command's scores of its runner tree against the prepared source photos.
    faces: the patients' photos as prepare read them; the first evaluation reads the others, once."""
    from ..measure import evaluate as ev
    rows, repeats = [], config.twins(exp.runs())
    for run in exp.runs():
        bar.step(f"evaluate/{run}")
        out = exp.path("evaluation", run)
        images = stages.generated_images(exp, run)
        fp = stages.fingerprint([sha256_of(p) for *_, p in images],
                                sorted(sha256_of(exp.path("prepared", "photos", k, f"{e}.png"))
                                       for k, ps in found.items() for e in ps),
                                exp.identity_backend, exp.arcface and sha256_of(exp.arcface),
                                exp.lpips_weights and sha256_of(exp.lpips_weights))
        row_file = os.path.join(out, "row.json")
        if not state.done(f"evaluate/{run}", fp, row_file) and run in repeats:  # the same images: the same scores
            with open(os.path.join(exp.path("evaluation", repeats[run]), "row.json"), encoding="utf-8") as f:
                write_bytes(row_file, f.read())
            state.record(f"evaluate/{run}", fp)
        elif not state.done(f"evaluate/{run}", fp, row_file):
            result = ev.evaluate([f"{run}={exp.path('generated', run)}"], exp.path("prepared", "photos"),
                                 exp.arcface or None, out, lpips=bool(exp.lpips_weights),
                                 lpips_weights=exp.lpips_weights or None, backend=exp.identity_backend,
                                 faces=faces)
            faces = result["faces"]
            write_bytes(row_file, json.dumps(table_row(result["rows"][0], len(images)), sort_keys=True) + "\n")
            state.record(f"evaluate/{run}", fp)
        with open(row_file, encoding="utf-8") as f:
            rows.append({"run": run, **json.load(f)})
    return rows


def table_row(row, generated):
    """evaluate's per-method row -> the report's: the counts, the pass rate, every metric's Table II columns
    that were measured (metrics.Metric.table) and the chart's series."""
    from ..measure.metrics import metrics
    shown = [k for m in metrics() for k in m.table if k in row["measured"]]
    return {"generated": generated, "images": row["images"], "no_face": row["skipped"], "unpaired": row["unpaired"],
            "passed": row["pass_rate"], "chart": row["chart"],
            **{f"{k}_{s}": row[f"{k}_{s}"] for k in shown for s in ("mean", "std")}}


def run(exp_dir, servers=None, quiet=False, embedded=1):
    exp = config.load(exp_dir)
    state = stages.State(exp.root)
    found = preflight.check(exp, state)
    state.claim(preflight.outputs(exp))
    clips = videos.patient_videos(exp, found) if exp.video else {}
    extra = sum(map(len, clips.values())) + 2 * len(exp.video_runs()) if clips else 0
    bar = stages.Progress(stages.count_items(exp, found) + extra, quiet)
    try:
        faces = stages.prepare(exp, state, found, bar)
        videos.prepare(exp, state, clips, bar)
        stages.train(exp, state, found, bar, quiet)
        stages.generate(exp, state, found, bar, servers, embedded)
        if clips:
            videos.generate(exp, state, found, clips, bar, servers, embedded)
        rows = evaluate(exp, state, bar, found, faces)
        video_rows = videos.evaluate(exp, state, clips, bar) if clips else []
        bar.step("figures")
        methods = [r for r in rows if r["run"] in exp.methods]
        windows = [r for r in rows if r["run"] not in exp.methods]
        figures = figures_of(exp, found, methods, windows)
        bar.step("report")
        files = report.write_report(exp, methods, windows, figures, found, video_rows)
    finally:
        bar.close()
    return files


def figures_of(exp, found, methods, windows):
    """[(title, path)] of the figures that have something to show."""
    out = []
    trained = [m for m in ("partial_codc", "partial") if m in exp.methods][:1]
    for title, runs, name in (("Fig. 6: patient | generated (the method)", trained, "fig6.png"),
                              ("Fig. 7: patient | each method", exp.methods, "fig7.png"),
                              ("Fig. 8: patient | each timestep window", [r["run"] for r in windows], "fig8.png")):
        if runs and report.comparison_sheet(exp, found, runs, exp.path("figures", name)):
            out.append((title, exp.path("figures", name)))
    if methods:
        out.append(("Privacy vs expression fidelity", report.scatter(methods + windows, exp.path("figures", "privacy_fidelity.png"))))
    if exp.nets():
        out.append(("Training loss", report.loss_curves(exp, exp.nets(), exp.path("figures", "loss.png"))))
    return out


def add_command(commands):
    p = commands.add_parser("experiment", help="the paper's comparison on your patients: init EXP, then run EXP")
    p.set_defaults(func=main)
    sub = p.add_subparsers(dest="experiment_command", required=True)
    i = sub.add_parser("init", help="write EXP/experiment.toml with the paper's settings, to edit")
    i.add_argument("exp", help="the experiment folder")
    for flag in ("patients", "donors", "checkpoint", "controlnet"):
        i.add_argument(f"--{flag}", default="", help=f"fill [data]/[models] {flag} in")
    r = sub.add_parser("run", help="run (or continue) the experiment in EXP")
    r.add_argument("exp")
    runner.add_server_arguments(r, default="embedded")  # a --server must see EXP/models
    r.add_argument("--quiet", action="store_true", help="no progress bars")


def main(args):
    if args.experiment_command == "init":
        given = [os.path.abspath(p) if p else "" for p in (args.patients, args.donors, args.checkpoint, args.controlnet)]
        path = config.write_template(args.exp, *given)
        names = ("patients", "donors", "checkpoint", "controlnet")
        empty = [n for n, p in zip(names, given) if not p]
        todo = f"fill in {', '.join(empty)}, check the settings" if empty else "check the settings"
        print(f"wrote {path}: {todo}, then `python -m palsysim experiment run {args.exp}`")
        return
    files = run(args.exp, args.server, args.quiet, args.embedded or 1)
    print("experiment done: " + ", ".join(files))
