"""The privacy-vs-fidelity chart, one for evaluate's report.png and the experiment's figure.

A method's `series` (evaluate's result rows carry one each) holds its images' privacy values (the
recognizer's most patient-like score over the patient's photos, the pass rule's measure) and their
fidelity (None where unpaired), the axis label and the same-person threshold drawn across it.
"""
import io

import numpy as np


def series(recognizer, closest, threshold, records):
    """One method's chart data from its per-image records ({closest: x, "fidelity": y or None})."""
    towards = "←" if recognizer.higher_is_alike else "→"
    return {"axis": f"{recognizer.label} {closest[-3:]} {recognizer.unit} to the patient  ({towards} more private)",
            "threshold": threshold, "x": [r[closest] for r in records], "y": [r["fidelity"] for r in records]}


def mean_std(values):
    """(mean, std) of the values that are not None, or (None, None): a column of evaluate's rows, a chart's point."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    return (float(v.mean()), float(v.std())) if len(v) else (None, None)


def privacy_fidelity(methods):
    """[(method label, series)] -> PNG bytes: per method its images and its mean ± std (x: privacy, y: fidelity)."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7, 5), dpi=110)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["tab10"]
    for i, (label, s) in enumerate(methods):
        points = [(x, y) for x, y in zip(s["x"], s["y"]) if x is not None and y is not None]
        if not points:
            continue
        (mx, sx), (my, sy) = mean_std(s["x"]), mean_std(s["y"])
        c = cmap(i % 10)
        ax.scatter(*zip(*points), color=c, alpha=0.25, s=14)
        ax.errorbar(mx, my, xerr=sx, yerr=sy, fmt="o", color=c, markersize=9, capsize=4,
                    label=f"{label} (n={len(s['x'])})")
    if methods:
        limit = methods[0][1]["threshold"]
        ax.axvline(limit, color="crimson", linestyle="--", linewidth=1)
        ax.text(limit, 1.02, f" same-person threshold {limit:.2f}", color="crimson", fontsize=8,
                transform=ax.get_xaxis_transform())
        ax.set_xlabel(methods[0][1]["axis"])
    ax.set_ylabel("expression fidelity  (↑ closer to the patient's palsy)")
    ax.set_ylim(0, 1.05)
    ax.set_title("Privacy vs expression fidelity per method", pad=18)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower right")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()
