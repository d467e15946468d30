"""The experiment's figures (Figs. 6-8, privacy vs fidelity, loss curves) and EXP/report.md + report.html.

Figures are PNG files under EXP/figures/; report.html embeds them (base64), so it opens offline with
no external asset. Patients appear as "patient k" only; no source path is written anywhere.
"""
import base64
import html
import io
import json
import os

import numpy as np

from ..base.files import write_bytes
from ..base.layout import source_item
from ..base.photos import read_image, write_image
from ..face.draw import sheet
from .config import twins

TILE = 192


def _first_images(exp, run):
    """{(patient, source): first generated image path} of one run (first identity, first seed)."""
    from .stages import generated_images
    out = {}
    for patient, source, _, path in generated_images(exp, run):
        out.setdefault((patient, source), path)
    return out


def comparison_sheet(exp, found, runs, path):
    """Rows = (patient, source photo), columns = patient photo | each run's image: Figs. 6, 7 and 8."""
    images = {run: _first_images(exp, run) for run in runs}
    tiles, labels = [], []
    for patient, photos in found.items():
        shown = {}  # each item's first photo: one row per item, however many photos it has
        for source in photos:
            shown.setdefault(source_item(source), source)
        for expression, source in shown.items():
            tiles.append(read_image(exp.path("prepared", "crops", patient, f"{source}.png")))
            labels.append(f"{patient.replace('_', ' ')} {expression}")
            for run in runs:
                p = images[run].get((patient, source))
                tiles.append(read_image(p) if p else np.full((TILE, TILE, 3), 24, np.uint8))
                labels.append(run if p else f"{run}: none")
    if not tiles:
        return None
    write_image(path, sheet(tiles, labels, tile_size=TILE, columns=len(runs) + 1))
    return path


def _figure_png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def scatter(rows, path):
    """Privacy (the pass rule's measure) against expression fidelity, per run: evaluate's chart."""
    from ..measure.chart import privacy_fidelity
    return write_bytes(path, privacy_fidelity([(row["run"], row["chart"]) for row in rows if row.get("chart")]))


def loss_curves(exp, nets, path):
    """Every training's loss per step, from its train.json."""
    import matplotlib

    from .stages import work_path
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in nets:
        log = os.path.join(work_path(exp, name), "train.json")
        if not os.path.isfile(log):
            continue
        with open(log, encoding="utf-8") as f:
            steps = json.load(f).get("steps", [])
        ax.plot([s["step"] for s in steps], [s["loss"] for s in steps], label=name, marker="." if len(steps) < 30 else None)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("denoising loss (MSE)")
    ax.set_title("Training loss")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    write_bytes(path, _figure_png(fig))
    plt.close(fig)
    return path


# --- tables --------------------------------------------------------------------------------------

def _fmt(mean, std):
    return "n/a" if mean is None else f"{mean:.3f} ± {std:.3f}"


def columns(rows, kind="image"):
    """[(row key, heading)] of Table II (kind "video": of the video table): the counts, each metric's table
    columns that any row measured (metrics.Metric.table), the private share."""
    from ..measure.metrics import metrics
    measured = [(k, h) for m in metrics(kind) for k, h in m.table.items() if any(f"{k}_mean" in r for r in rows)]
    return ([("run", "method"), ("generated", "generated"), ("images", "scored"), ("no_face", "no face")]
            + measured + [("passed", "private share")])


def result_cells(row, cols):
    """One Table II row's cells in cols order: key_mean/key_std pairs shown as m ± s, n/a where None."""
    cells = []
    for key, _ in cols:
        v = _fmt(row[f"{key}_mean"], row.get(f"{key}_std")) if f"{key}_mean" in row else row.get(key)
        cells.append("n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v))
    return cells


def notes(exp, rows, kind="image"):
    """What Table II's (or the video table's) columns mean: each shown metric's own note, then the private share."""
    from ..identity.check import thresholds
    from ..measure.metrics import Scoring, metrics
    shown = {k for k, _ in columns(rows, kind)}
    s = Scoring({m.recognizer.name: m.recognizer for m in metrics(kind) if hasattr(m, "recognizer")
                 and shown & set(m.keys)}, thresholds(), lpips=bool(exp.lpips_weights))
    if kind == "video":
        return [m.note(s) for m in metrics(kind) if shown & set(m.keys)] + [
            "Each generated video against the patient's video of the same expression (patient k's prepared copy); "
            "private share: videos whose every frame passes every backend's same-person threshold."]
    missing = [f"{m.table[k]} (needs {m.needs})" for m in metrics() if m.needs for k in m.table if k not in shown]
    return ([m.note(s) for m in metrics() if shown & set(m.keys)]
            + ([f"Not measured here: {'; '.join(missing)}."] if missing else [])
            + ["Identity and fidelity columns compare each image with its own source photo (same patient, same "
               "photo); private share: images that pass every backend's same-person threshold against all the "
               "patient's photos. n/a: not measurable here (no face found in the generated images)."])


PHOTO_NOTICE = ("This page embeds face crops of your patients' photos (Figs. 6-8): keep it where the photos "
                "themselves may be kept.")


def nothing_scored(rows):
    """The plain word when no generated image had a face to measure, rather than a table of n/a."""
    if rows and not any(r["images"] for r in rows):
        return (f"No image was scored: none of the {sum(r['generated'] for r in rows)} generated images had a face "
                f"every identity backend finds, so every measure below is n/a (untrained or tiny models draw no faces).")
    return None


def plain_md(headers, rows):
    return "\n".join(["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
                     + ["| " + " | ".join(map(str, r)) + " |" for r in rows]) + "\n"


def plain_html(headers, rows):
    cells = lambda tag, r: "".join(f"<{tag}>{html.escape(str(v))}</{tag}>" for v in r)  # noqa: E731
    return f"<table><tr>{cells('th', headers)}</tr>" + "".join(f"<tr>{cells('td', r)}</tr>" for r in rows) + "</table>"


def write_report(exp, methods_rows, window_rows, figures, found, video_rows=()):
    """EXP/report.md and EXP/report.html from the tables and figure files, opening with what made them;
    video_rows: the video section's (experiment/videos.py), where the patients have expression videos."""
    from . import provenance as pv
    made = f"Made {pv.made()} with {pv.software()}."
    empty = nothing_scored(methods_rows + window_rows)
    sections = [("Model files", ["setting", "file", "SHA-256", "state"], pv.model_rows(exp)),
                ("Settings", ["setting", "value"], pv.settings_rows(exp, found)),
                ("Training (each net's own train.json)", ["net", "mode", "timesteps", "steps", "batch",
                                                          "learning rate", "photos", "latents"], pv.training_rows(exp))]
    md = ["# PalsySim experiment report", "", made,
          "The paper's comparison on your patients (patients appear as \"patient k\", in sorted folder order).", ""]
    md += [f"**{empty}**", ""] if empty else []
    for title, headers, rows in sections:
        md += [f"## {title}", "", plain_md(headers, rows)] if rows else []
    cols = columns(methods_rows + window_rows)
    heads = [h for _, h in cols]
    cells = lambda rows: [result_cells(r, cols) for r in rows]  # noqa: E731
    same = "; ".join(f"{run} is {first}'s images (the same net, workflow and seeds: made and scored once)"
                     for run, first in twins(exp.runs()).items())
    md += ["## Table II: methods", "", plain_md(heads, cells(methods_rows))]
    if window_rows:
        md += ["## Timestep ablation (Fig. 8)", "", plain_md(heads, cells(window_rows))]
        md += [same + ".", ""] if same else []
    md += ["\n".join(f"- {n}" for n in notes(exp, methods_rows + window_rows)), ""]
    vcols = columns(video_rows, "video")
    video = [[h for _, h in vcols], [result_cells(r, vcols) for r in video_rows], notes(exp, video_rows, "video")]
    if video_rows:
        md += ["## Videos: expression dynamics, temporal stability, identity over frames", "", plain_md(*video[:2]),
               "\n".join(f"- {n}" for n in video[2]), ""]
    for title, path in figures:
        md += [f"## {title}", "", f"![{title}](figures/{os.path.basename(path)})", ""]
    write_bytes(exp.path("report.md"), "\n".join(md))

    body = [f"<p class=\"notice\">{html.escape(PHOTO_NOTICE)}</p>", "<h1>PalsySim experiment report</h1>",
            f"<p>{html.escape(made)} Patients appear as \"patient k\".</p>"]
    body += [f"<p class=\"notice\">{html.escape(empty)}</p>"] if empty else []
    for title, headers, rows in sections:
        body += [f"<h2>{html.escape(title)}</h2>" + plain_html(headers, rows)] if rows else []
    body.append("<h2>Table II: methods</h2>" + plain_html(heads, cells(methods_rows)))
    if window_rows:
        body.append("<h2>Timestep ablation (Fig. 8)</h2>" + plain_html(heads, cells(window_rows))
                    + (f"<p>{html.escape(same)}.</p>" if same else ""))
    if video_rows:
        body.append("<h2>Videos: expression dynamics, temporal stability, identity over frames</h2>"
                    + plain_html(*video[:2]) + "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in video[2])
                    + "</ul>")
    for title, path in figures:
        data = base64.b64encode(open(path, "rb").read()).decode()
        body.append(f"<h2>{html.escape(title)}</h2><img alt=\"{html.escape(title)}\" src=\"data:image/png;base64,{data}\">")
    page = ("<!doctype html><html><head><meta charset=\"utf-8\"><title>PalsySim experiment</title><style>"
            "body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
            "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}"
            ".notice{border:2px solid #b60;background:#fff4e0;padding:8px}"
            "img{max-width:100%}</style></head><body>" + "".join(body) + "</body></html>\n")
    write_bytes(exp.path("report.html"), page)
    return [exp.path("report.md"), exp.path("report.html")]
