"""evaluate's video outputs: videos.csv (one row per method), video_records.csv (one row per video) and
report.md's video section, from evaluate.score_videos. Patients appear as "patient k", videos by number."""
import os

from ..base.files import write_bytes
from ..face.asymmetry import MEASURES
from .image_report import fmt, table
from .metrics import keys


def write(out_dir, videos):
    """videos.csv and video_records.csv under out_dir, or nothing where no video was generated."""
    if not videos["rows"]:
        return []
    cols = keys("video")
    summary = [[r["method"], r["images"], r["patients"], r["skipped"], r["unpaired"]]
               + [fmt(r[f"{c}_{s}"], 6) for c in cols for s in ("mean", "std")] + [fmt(r["pass_rate"], 6)]
               for r in videos["rows"]]
    per_video = [[method, rec["label"]] + [fmt(rec[c], 6) for c in cols] + [int(rec["passed"])]
                 for method, recs in videos["records"].items() for rec in recs]
    return [write_bytes(os.path.join(out_dir, "videos.csv"), table(
                ["method", "videos", "patients", "skipped", "unpaired"]
                + [f"{c}_{s}" for c in cols for s in ("mean", "std")] + ["pass_rate"], summary)),
            write_bytes(os.path.join(out_dir, "video_records.csv"),
                        table(["method", "video"] + cols + ["passed"], per_video))]


def _pm(row, key):
    m, s = row[f"{key}_mean"], row[f"{key}_std"]
    return "n/a" if m is None else f"{m:.3f} ± {s:.3f}"


def per_measure(records):
    """{measure: (mean r, mean lag, mean peak kept)} over the paired videos' curves (None where none moved)."""
    out = {}
    for m in MEASURES:
        d = [rec["per_measure"][m] for rec in records if rec.get("per_measure")]
        mean = lambda k: _mean([x[k] for x in d])  # noqa: E731
        out[m] = (mean("r"), mean("lag"), mean("peak_kept"))
    return out


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def markdown(videos, listed, n_patients, heading=False):
    """report.md's video section ("" where no video was generated); heading: the report holds no image part."""
    if not videos["rows"]:
        return ""
    s, measured = videos["scoring"], videos["measured"]
    cols = [(t, k) for m in measured for t, k in zip(m.titles, m.keys)]
    rule = " and ".join(m.rule(s) for m in measured if hasattr(m, "rule"))
    lines = (["# PalsySim evaluation", "", f"{n_patients} patients; identity by {' and '.join(s.recognizers)}."]
             if heading else [""])
    lines += ["", "## Videos", "", "One row per method; mean ± standard deviation over its videos, each against "
              "the patient's video of the same expression.", "",
              "| method | videos | " + " | ".join(t for t, _ in cols)
              + f" | pass rate ({rule}) ↑ | skipped | unpaired |",
              "|---|---:|" + "---:|" * len(cols) + "---:|---:|---:|"]
    for r in videos["rows"]:
        rate = "n/a" if r["pass_rate"] is None else f"{100 * r['pass_rate']:.1f}%"
        lines.append(f"| {r['method']} | {r['images']} | " + " | ".join(_pm(r, k) for _, k in cols)
                     + f" | {rate} | {r['skipped']} | {r['unpaired']} |")
    lines += ["", "### Expression dynamics per asymmetry measure", "",
              "| method | measure | r ↑ | lag (frames) | peak kept |", "|---|---|---:|---:|---:|"]
    for method, recs in videos["records"].items():
        for m, values in per_measure(recs).items():
            lines.append(f"| {method} | {m} | " + " | ".join("n/a" if v is None else f"{v:.3f}" for v in values) + " |")
    lines += ["", "### Per video", "", "| method | video | " + " | ".join(t for t, _ in cols) + " | passed |",
              "|---|---|" + "---:|" * len(cols) + "---|"]
    for method, recs in videos["records"].items():
        for rec in recs:
            cells = ["n/a" if rec[k] is None else f"{rec[k]:.3f}" for _, k in cols] + ["yes" if rec["passed"] else "no"]
            lines.append(f"| {method} | {rec['label']} | " + " | ".join(cells) + " |")
    if listed:
        lines += ["", "### Videos listed (skipped or unpaired)", "", "| method | video | why |", "|---|---|---|"]
        lines += [f"| {m} | {label} | {why} |" for m, label, why, _ in listed]
    lines += ["", "### How to read it", ""] + [f"- {m.note(s)}" for m in measured]
    lines += ["- A video is unpaired where the patient has no usable video of its expression, or one of another "
              "frame count: its dynamics and the patient's flicker stay empty."]
    return "\n".join(lines) + "\n"
