"""Results: Table I, Krippendorff's alpha, per-rater summaries and box plots; the trainer's agreement.

Everything here names patients "patient k", raters "rater k" and images by opaque id only.
"""
import csv
import io
import math
import os
import warnings

import numpy as np

from ..base.errors import InputError
from ..base.files import write_atomically, write_bytes
from ..base.vocabulary import ITEMS, SCORES
from .folders import results_folder
from .questions import CRITERIA, SCALE, worded

BOOTSTRAP = 1000


def rating_answers(study):
    """[{rater, method, image, media, patient, expression, criterion, value}] of every saved rating answer (a video
    item counts as one answer, as an image does)."""
    return [dict(r) for r in study.conn.execute(
        """SELECT r.label AS rater, m.name AS method, i.id AS image, i.media, p.label AS patient, i.expression,
                  t.criterion, a.value
           FROM answers a JOIN tasks t ON t.rater_id = a.rater_id AND t.position = a.position
           JOIN raters r ON r.id = a.rater_id JOIN images i ON i.id = t.image_id
           JOIN methods m ON m.id = i.method_id JOIN patients p ON p.id = i.patient_id
           ORDER BY r.id, t.position""")]


def _mean_sd(values):
    v = np.asarray(values, dtype=float)
    return (float(v.mean()) if len(v) else math.nan), (float(v.std(ddof=1)) if len(v) > 1 else math.nan), len(v)


def table_one(rows, methods):
    """[{method, criterion, mean, sd, n}]: sample SD (n - 1) over every rater's answers for the method."""
    out = []
    for m in methods:
        for c in CRITERIA:
            mean, sd, n = _mean_sd([r["value"] for r in rows if r["method"] == m and r["criterion"] == c])
            out.append({"method": m, "criterion": c, "mean": mean, "sd": sd, "n": n})
    return out


def reliability_matrix(rows, criterion):
    """(raters, images) float array of one criterion's answers, NaN where a rater gave none."""
    raters = sorted({r["rater"] for r in rows}, key=_label_key)
    images = sorted({r["image"] for r in rows if r["criterion"] == criterion})
    data = np.full((len(raters), len(images)), np.nan)
    ri, ii = {r: k for k, r in enumerate(raters)}, {i: k for k, i in enumerate(images)}
    for r in rows:
        if r["criterion"] == criterion:
            data[ri[r["rater"]], ii[r["image"]]] = r["value"]
    return data


def ordinal_alpha(data):
    """Krippendorff's alpha, ordinal metric on the 1..5 scale; NaN where undefined (fewer than two
    pairable answers, or no variation at all)."""
    import krippendorff
    pairable = np.sum(np.sum(~np.isnan(data), axis=0) >= 2) if data.size else 0
    if pairable == 0 or len(np.unique(data[~np.isnan(data)])) < 2:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal",
                                        value_domain=list(SCALE)))


def alpha_table(rows, boot=BOOTSTRAP, seed=0):
    """[{criterion, alpha, low, high, raters, images}]: alpha with a 95% percentile bootstrap interval
    over images (units resampled with replacement, seeded)."""
    rng = np.random.default_rng(seed)
    out = []
    for c in CRITERIA:
        data = reliability_matrix(rows, c)
        a = ordinal_alpha(data)
        draws = []
        if data.shape[1] > 1 and not math.isnan(a):
            for _ in range(boot):
                d = ordinal_alpha(data[:, rng.integers(0, data.shape[1], data.shape[1])])
                if not math.isnan(d):
                    draws.append(d)
        low, high = (np.percentile(draws, [2.5, 97.5]).tolist() if draws else (math.nan, math.nan))
        out.append({"criterion": c, "alpha": a, "low": low, "high": high, "raters": data.shape[0],
                    "images": data.shape[1]})
    return out


def rater_summary(rows):
    """[{rater, criterion, mean, sd, n}] per rater and criterion."""
    out = []
    for rater in sorted({r["rater"] for r in rows}, key=_label_key):
        for c in CRITERIA:
            mean, sd, n = _mean_sd([r["value"] for r in rows if r["rater"] == rater and r["criterion"] == c])
            out.append({"rater": rater, "criterion": c, "mean": mean, "sd": sd, "n": n})
    return out


def _label_key(label):
    head, _, num = label.rpartition(" ")
    return (head, int(num)) if num.isdigit() else (label, 0)


def box_plots(rows, methods, path):
    """One panel per criterion, one box per method (every rater's answers), written to path (PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    width = max(4.0, 0.8 * len(methods) + 1.2)  # room for each method's label under its box
    fig, axes = plt.subplots(1, len(CRITERIA), figsize=(width * len(CRITERIA), 4.2), squeeze=False)
    for ax, (c, q) in zip(axes[0], CRITERIA.items()):
        data = [[r["value"] for r in rows if r["method"] == m and r["criterion"] == c] for m in methods]
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(methods) + 1), methods, rotation=35, ha="right", rotation_mode="anchor")
        ax.set_title(q["title"])
        ax.set_ylim(0.5, 5.5)
        ax.set_yticks(SCALE)
    axes[0][0].set_ylabel("rating (1..5)")
    fig.tight_layout()
    write_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def _f(x, digits=2):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _csv(rows, fields):
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if isinstance(r[k], float) and math.isnan(r[k]) else r[k]) for k in fields})
    return buf.getvalue()


def rating_markdown(table, alphas, raters, progress, media):
    """media: what was rated ("image", "video"), for the scales' words."""
    titles = [q["title"] for q in CRITERIA.values()]
    methods = list(dict.fromkeys(r["method"] for r in table))
    lines = ["# Table I: ratings per method (mean ± SD, n answers)", "",
             "| method | " + " | ".join(titles) + " |", "|---" * (len(titles) + 1) + "|"]
    for m in methods:
        cells = [f"{_f(r['mean'])} ± {_f(r['sd'])} (n={r['n']})" for r in table if r["method"] == m]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    scales = [worded(c, media, media) for c in CRITERIA]
    lines += ["", "Scales: " + "; ".join(f"{q['title']} 1 = {q['low']}, 5 = {q['high']}" for q in scales),
              "", "## Inter-rater reliability (Krippendorff's alpha, ordinal, 95% bootstrap interval over images)", "",
              "| criterion | alpha | 95% interval | raters | images |", "|---|---|---|---|---|"]
    for a in alphas:
        lines.append(f"| {CRITERIA[a['criterion']]['title']} | {_f(a['alpha'], 3)} | "
                     f"{_f(a['low'], 3)} .. {_f(a['high'], 3)} | {a['raters']} | {a['images']} |")
    lines += ["", "## Per rater (mean ± SD, n)", "", "| rater | " + " | ".join(titles) + " |",
              "|---" * (len(titles) + 1) + "|"]
    for rater in dict.fromkeys(r["rater"] for r in raters):
        cells = [f"{_f(r['mean'])} ± {_f(r['sd'])} (n={r['n']})" for r in raters if r["rater"] == rater]
        lines.append(f"| {rater} | " + " | ".join(cells) + " |")
    lines += ["", "## Progress", "", "| rater | answered | of |", "|---|---|---|"]
    lines += [f"| {p['label']} | {p['answered']} | {p['total']} |" for p in progress]
    return "\n".join(lines) + "\n"


# --- trainer -----------------------------------------------------------------------------------------

def trainer_answers(study):
    """[{trainee, method, patient, case, item, score, reference, image, media}] of every saved trainee score
    (reference None where the supervisor has not entered it)."""
    return [dict(r) for r in study.conn.execute(
        """SELECT r.label AS trainee, m.name AS method, p.label AS patient, i.variant AS "case",
                  i.expression AS item, a.value AS score, ref.score AS reference, i.id AS image,
                  i.media
           FROM answers a JOIN tasks t ON t.rater_id = a.rater_id AND t.position = a.position
           JOIN raters r ON r.id = a.rater_id JOIN images i ON i.id = t.image_id
           JOIN methods m ON m.id = i.method_id JOIN patients p ON p.id = i.patient_id
           LEFT JOIN reference ref ON ref.patient_id = i.patient_id AND ref.item = i.expression
           ORDER BY r.id, t.position""")]


def weighted_kappa(reference, scores):
    """Quadratic-weighted Cohen's kappa on the 0/2/4 scale; NaN where undefined (no pairs, or both sides
    give one and the same score throughout, so chance agreement is already complete)."""
    from sklearn.metrics import cohen_kappa_score
    if not reference:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined kappa: sklearn warns and returns NaN, which we report as n/a
        k = cohen_kappa_score(reference, scores, weights="quadratic", labels=list(SCORES))
    return float(k)


def trainee_items(rows):
    """[{trainee, item, n, kappa, exact}] per trainee and item, plus item "all" (every item pooled)."""
    out = []
    for t in dict.fromkeys(r["trainee"] for r in rows):
        mine = [r for r in rows if r["trainee"] == t and r["reference"] is not None]
        for item in [*ITEMS, "all"]:
            pairs = [(r["reference"], r["score"]) for r in mine if item in ("all", r["item"])]
            if not pairs:
                continue
            ref, got = [p[0] for p in pairs], [p[1] for p in pairs]
            out.append({"trainee": t, "item": item, "n": len(pairs), "kappa": weighted_kappa(ref, got),
                        "exact": sum(a == b for a, b in pairs) / len(pairs)})
    return out


def trainee_totals(rows):
    """[{trainee, method, patient, case, items, score, reference, difference}]: the Yanagihara total of each
    synthetic person (case) over the items the trainee scored (40 points when all ten are)."""
    groups = {}
    for r in rows:
        if r["reference"] is not None:
            groups.setdefault((r["trainee"], r["method"], r["patient"], r["case"]), []).append(r)
    return [{"trainee": k[0], "method": k[1], "patient": k[2], "case": k[3], "items": len(g),
             "score": sum(r["score"] for r in g), "reference": sum(r["reference"] for r in g),
             "difference": sum(r["score"] - r["reference"] for r in g)} for k, g in groups.items()]


def class_summary(rows, items, totals):
    """[{item, trainees, mean_kappa, pooled_kappa, n}] per item and "all", and the mean |total difference|."""
    out = []
    for item in [*ITEMS, "all"]:
        ks = [r["kappa"] for r in items if r["item"] == item and not math.isnan(r["kappa"])]
        pairs = [(r["reference"], r["score"]) for r in rows if r["reference"] is not None and item in ("all", r["item"])]
        if not pairs:
            continue
        out.append({"item": item, "trainees": len({r["trainee"] for r in items if r["item"] == item}),
                    "mean_kappa": float(np.mean(ks)) if ks else math.nan,
                    "pooled_kappa": weighted_kappa([p[0] for p in pairs], [p[1] for p in pairs]), "n": len(pairs)})
    mad = float(np.mean([abs(t["difference"]) for t in totals])) if totals else math.nan
    return out, mad


def trainer_markdown(items, totals, summary, mad, progress):
    lines = ["# Yanagihara trainer: agreement with the reference", "",
             "Quadratic-weighted kappa (Cohen) of each trainee's scores against the supervisor's reference "
             "(1 = perfect, 0 = chance; n/a where undefined, e.g. one score throughout).", "",
             "## Per trainee", "", "| trainee | item | n | kappa | exact agreement |", "|---|---|---|---|---|"]
    lines += [f"| {r['trainee']} | {r['item']} | {r['n']} | {_f(r['kappa'], 3)} | {100 * r['exact']:.0f}% |"
              for r in items]
    lines += ["", "## Totals per synthetic person (over the items scored)", "",
              "| trainee | method | patient | case | items | trainee total | reference total | difference |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {t['trainee']} | {t['method']} | {t['patient']} | {t['case']} | {t['items']} | {t['score']} | "
              f"{t['reference']} | {t['difference']:+d} |" for t in totals]
    lines += ["", "## Class summary", "", f"Mean absolute total-score difference: {_f(mad)} points", "",
              "| item | trainees | mean kappa | pooled kappa | n |", "|---|---|---|---|---|"]
    lines += [f"| {s['item']} | {s['trainees']} | {_f(s['mean_kappa'], 3)} | {_f(s['pooled_kappa'], 3)} | {s['n']} |"
              for s in summary]
    lines += ["", "## Progress", "", "| trainee | answered | of |", "|---|---|---|"]
    lines += [f"| {p['label']} | {p['answered']} | {p['total']} |" for p in progress]
    return "\n".join(lines) + "\n"


def results(study, boot=BOOTSTRAP):
    """{"markdown": str, "tables": {name: (rows, fields)}, "rows": answers, "methods": [...]} of a study."""
    methods = [r[0] for r in study.conn.execute("SELECT name FROM methods ORDER BY id")]
    progress = study.progress()
    if study.mode == "rating":
        rows = rating_answers(study)
        table, alphas, raters = table_one(rows, methods), alpha_table(rows, boot), rater_summary(rows)
        tables = {"table1": (table, ["method", "criterion", "mean", "sd", "n"]),
                  "alpha": (alphas, ["criterion", "alpha", "low", "high", "raters", "images"]),
                  "raters": (raters, ["rater", "criterion", "mean", "sd", "n"]),
                  "answers": (rows, ["rater", "method", "image", "media", "patient", "expression", "criterion",
                                     "value"])}
        media = [r[0] for r in study.conn.execute("SELECT DISTINCT media FROM images WHERE kind = 'generated'")]
        markdown = rating_markdown(table, alphas, raters, progress, media)
    else:
        rows = trainer_answers(study)
        items, totals = trainee_items(rows), trainee_totals(rows)
        summary, mad = class_summary(rows, items, totals)
        tables = {"trainees": (items, ["trainee", "item", "n", "kappa", "exact"]),
                  "totals": (totals, ["trainee", "method", "patient", "case", "items", "score", "reference",
                                      "difference"]),
                  "class": (summary, ["item", "trainees", "mean_kappa", "pooled_kappa", "n"]),
                  "answers": (rows, ["trainee", "method", "patient", "case", "item", "score", "reference", "image",
                                     "media"])}
        markdown = trainer_markdown(items, totals, summary, mad, progress)
    return {"markdown": markdown, "tables": tables, "rows": rows, "methods": methods}


def write_results(study, out, boot=BOOTSTRAP):
    """results() -> out/results.md, out/<table>.csv (and out/boxplots.png for a rating study); returns paths."""
    if boot < 1:
        raise InputError(f"--bootstrap {boot}: give at least 1 resample (1000 is the usual)")
    results_folder(out, study.folder)
    r = results(study, boot)
    files = [write_bytes(os.path.join(out, "results.md"), r["markdown"])]
    for name, (rows, fields) in r["tables"].items():
        files.append(write_bytes(os.path.join(out, f"{name}.csv"), _csv(rows, fields)))
    if study.mode == "rating":
        path = os.path.join(out, "boxplots.png")
        box_plots(r["rows"], r["methods"], path)
        files.append(path)
    return files
