"""evaluate's image outputs: metrics.csv (one row per method) and report.md's image part, from evaluate's rows;
the CSV helpers video_report shares. Patients appear as "patient k", images by number."""
import csv
import io

from .metrics import Identity, keys, metrics

COLUMNS = ["method", "images", "patients", "skipped", "unpaired"] + [f"{m}_{s}" for m in keys()
                                                                     for s in ("mean", "std")] + ["pass_rate"]


def fmt(v, digits=4):
    return "" if v is None else f"{v:.{digits}f}"


def table(header, rows):
    """CSV text: the header line, then one line per row."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def csv_text(rows):
    """metrics.csv: one line per method's row (COLUMNS)."""
    return table(COLUMNS, [[r["method"], r["images"], r["patients"], r["skipped"], r["unpaired"]]
                           + [fmt(r[c], 6) for c in COLUMNS[5:]] for r in rows])


def _pm(row, col):
    m, s = row[f"{col}_mean"], row[f"{col}_std"]
    return "n/a" if m is None else f"{m:.4f} ± {s:.4f}"


def markdown(rows, per_patient, listed, n_patients, s, measured):
    """report.md's image part: evaluate's per-method rows and per-patient figures, the images listed (skipped or
    unpaired: (method, label, why)) and how to read it."""
    used = list(s.recognizers)
    identities = [m for m in measured if isinstance(m, Identity)]
    cols = [(title, key) for m in measured for title, key in zip(m.titles, m.keys)]
    rule = " and ".join(m.rule(s) for m in identities)
    lines = ["# PalsySim evaluation", "",
             f"{n_patients} patients; identity by {' and '.join(used)}; one row per method; mean ± standard "
             f"deviation over its images.", "",
             "| method | images | " + " | ".join(c for c, _ in cols) + f" | pass rate ({rule}) ↑ | skipped | unpaired |",
             "|---|---:|" + "---:|" * len(cols) + "---:|---:|---:|"]
    for r in rows:
        rate = "n/a" if r["pass_rate"] is None else f"{100 * r['pass_rate']:.1f}%"
        lines.append(f"| {r['method']} | {r['images']} | " + " | ".join(_pm(r, k) for _, k in cols)
                     + f" | {rate} | {r['skipped']} | {r['unpaired']} |")
    privacy = identities[0]
    lines += ["", "## Per patient (privacy mean, pass rate)", "",
              f"| method | patient | images | {privacy.recognizer.label} {privacy.closest[-3:]} {privacy.recognizer.unit} "
              f"| pass rate |", "|---|---:|---:|---:|---:|"]
    for method, entries in per_patient.items():
        for index, n, value, rate in entries:
            lines.append(f"| {method} | patient {index} | {n} | {value:.4f} | {100 * rate:.1f}% |")
    if listed:
        lines += ["", "## Images listed (skipped or unpaired)", "", "| method | image | why |", "|---|---|---|"]
        lines += [f"| {m} | {label} | {why} |" for m, label, why in listed]
    lines += ["", "## How to read it", "",
              "- Paired columns compare each image with its source photo (same patient, same Yanagihara item); "
              "an image without one is unpaired and left out of them, never compared with another photo."]
    lines += [f"- {m.note(s)}" for m in metrics() if m.used(s) or not isinstance(m, Identity)]
    lines += ["- skipped: images without a detectable face, or that match no patient.",
              "- Patients are numbered by their folders' sorted order; no names, paths or pixels are kept here."]
    return "\n".join(lines) + "\n"
