"""How far a condition follows the donor's layout and leaves the patient's (issue 24): per organ, its
anchor's offset from the donor's own (in donor inter-pupil distances) and the share of its edge pixels
within 2 px of the patient's own edge map (the PF condition of the same photo, cropped alike).

A condition that puts an organ where the patient has it shares nearly all its edges with the
patient's map (the mouth did at 97% before the organs were anchored on the donor's); two different
faces' maps share far fewer.
"""
import cv2
import numpy as np

from ..condition.codc import ORGAN_NAMES, codc_condition, organ_anchors, organ_boxes
from ..condition.facecrop import pf_condition
from ..face import regions as R

NEAR_PX = 2


def near_share(edges, own, box, px=NEAR_PX):
    """Share of the edge pixels of edges (H, W) inside box (x0, y0, x1, y1) that lie within px of an edge
    pixel of own (H, W, same frame) -> float in 0..1, or None where the box holds no edge pixel."""
    far = cv2.distanceTransform(np.where(own > 0, 0, 255).astype(np.uint8), cv2.DIST_L2, 5)
    h, w = edges.shape[:2]
    x0, y0, x1, y1 = max(box[0], 0), max(box[1], 0), min(box[2], w), min(box[3], h)
    inside = edges[y0:y1, x0:x1] > 0
    if not inside.any():
        return None
    return float((far[y0:y1, x0:x1][inside] <= px).mean())


def organ_shares(condition, organs, own):
    """{organ: near_share of the condition inside that organ's placed box}; own: the patient's edge map in
    the condition's frame. None for all when the two differ in size (photos not cropped alike)."""
    if condition.shape[:2] != own.shape[:2]:
        return {o.name: None for o in organs.organs}
    return {o.name: near_share(condition, own, o.target_box) for o in organs.organs}


def report(organs, condition, own, rest_known, organ_size):
    """`condition --json`'s entry for one condition: Organs.to_json() plus each organ's own_edge_share and
    where its scale and anchor came from."""
    entry = organs.to_json()
    for name, share in organ_shares(condition, organs, own).items():
        entry["organs"][name]["own_edge_share"] = None if share is None else round(share, 6)
    entry["scales_from"] = "rest photo" if rest_known and organ_size == "rest" else "face scale"
    entry["anchors_from"] = "donor, moved as from the rest photo" if rest_known else "donor"
    return entry


def pf_layout(xy, donor_xy):
    """The PF condition's layout against the donor's, for comparison: {organ: ((dx, dy) anchor offset in donor
    IPD, 1.0)} (PF is the patient's own edge map, so each of its edges lies on it)."""
    xy, donor_xy = (np.asarray(a, dtype=np.float64)[:, :2] for a in (xy, donor_xy))
    ipd = float(np.hypot(*(donor_xy[R.PUPIL['left']] - donor_xy[R.PUPIL['right']])))
    mine, donor = organ_anchors(xy), organ_anchors(donor_xy)
    return {n: (tuple((mine[n] - donor[n]) / ipd), 1.0) for n in ORGAN_NAMES}


def yanagihara_rows(size=512, severity=0.6, side="left"):
    """PF and CODC (with and without the rest photo) over the ten Yanagihara items of one synthetic patient
    (bench.expression_photos: astronaut + palsy, Grace Hopper the donor). One row per item and condition:
    {"item", "condition", "organs": {organ: (anchor offset (dx, dy) in donor IPD, share near own edges)}}."""
    from .pipeline import expression_photos
    d_img, d_xy, photos = expression_photos(size, severity, side)
    rest_xy = photos["rest"][1]
    rows = []
    for item, (img, xy) in photos.items():
        own = pf_condition(img, xy, size)
        pf_boxes = organ_boxes(xy, own.shape)
        rows.append({"item": item, "condition": "PF",
                     "organs": {n: (off, near_share(own, own, pf_boxes[n])) for n, (off, _) in pf_layout(xy, d_xy).items()}})
        for label, rest in (("CODC, rest photo", rest_xy), ("CODC, no rest photo", None)):
            cond, organs = codc_condition(img, xy, d_img, d_xy, rest_xy=rest)
            shares = organ_shares(cond, organs, own)
            rows.append({"item": item, "condition": label,
                         "organs": {o.name: (o.anchor_offset, shares[o.name]) for o in organs.organs}})
    return rows


def yanagihara_table(log=print, **kw):
    """Print yanagihara_rows as the Markdown table in BENCHMARKS.md; returns the rows."""
    rows = yanagihara_rows(**kw)
    log("| item | condition | " + " | ".join(f"{n.replace('_', ' ')}: anchor offset (IPD), share near own edges"
                                            for n in ORGAN_NAMES) + " |")
    log("|---|---|" + "---|" * len(ORGAN_NAMES))
    for r in rows:
        cells = []
        for n in ORGAN_NAMES:
            (dx, dy), share = r["organs"][n]
            cells.append(f"{np.hypot(dx, dy):.3f} ({dx:+.3f}, {dy:+.3f}), "
                         + ("n/a" if share is None else f"{100 * share:.0f}%"))
        log(f"| {r['item']} | {r['condition']} | " + " | ".join(cells) + " |")
    return rows
