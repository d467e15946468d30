"""Write the shipped UI workflows (example_workflows/<title>.json) from the specs below, laid out by stage.

    python scripts/build_workflows.py --embedded          # then: python scripts/workflow_to_api.py --embedded
    python scripts/build_workflows.py --server URL

Each workflow is a row of groups, one per stage (inputs, conditions, generation, privacy, save),
stacked where a stage is short, with its nodes in columns inside; the note sits at the top of the
inputs. Sizes follow the frontend's own node sizes (slots, widgets, multiline boxes) plus room for
what a node shows (a photo, a preview, a report), so the whole graph fits a 1600x1000 window at a
zoom where the frontend still draws text. Node sockets and widget order come from the server's
/object_info, so the files load as if made in the frontend. Titles are what the headless runner fills.
"""
import argparse
import json
import os
import sys

import requests

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from palsysim.base.vocabulary import ITEMS  # noqa: E402
from palsysim.base.workflows import (PROMPT, STOCK_CONTROLNET, TRAIN_COMMAND, TRAINED_CONTROLNET,  # noqa: E402
                                     TRAINED_WINDOW, template_path)
from palsysim.comfy.workflow import FRONTEND_WIDGETS, _frontend_extras, _is_widget

CHECKPOINT, ARCFACE = "v1-5-pruned-emaonly.safetensors", "buffalo_l/w600k_r50.onnx"

WIDTH, GAP, TITLE_H = 220, 20, 30          # node width, space between nodes, node title bar (above pos)
GROUP_PAD, GROUP_TITLE = 12, 40
# Room for what a node shows under its widgets: a photo, an image preview, a report.
# LoadImage: the frontend makes it 314 px tall (102 of widgets) once a photo is loaded, whatever its size.
# PreviewAny: the text box the frontend adds to show what it was given.
SHOWS = {"LoadImage": 212, "PalsyPreview": 220, "PalsySaveAnonymized": 190, "PreviewAny": 120}
NOTE_H = 200


class Graph:
    """Nodes added by key; link(dst, input, src, output) by names; laid out by stacks of groups and columns."""

    def __init__(self, info):
        self.info, self.nodes, self.order = info, {}, []
        self.note_at = None  # (group, column) for the note, at the column's end; None: top of the inputs

    def add(self, key, kind, title, group, col=0, node_w=WIDTH, shows=None, **widgets):
        """node_w: the node's width; shows: room for what it shows (default SHOWS[kind])."""
        self.nodes[key] = dict(kind=kind, title=title, group=group, col=col, widgets=widgets, inputs={}, width=node_w,
                               shows=SHOWS.get(kind, 0) if shows is None else shows)
        self.order.append(key)
        return key

    def link(self, dst, name, src, out):
        self.nodes[dst]["inputs"][name] = (src, out)


def _outputs(info):
    names = info.get("output_name") or info["output"]
    return list(zip(names, info["output"]))


def _height(info, shows):
    """The frontend's own height for a node's sockets and widgets (LGraphNode.computeSize: 20 px a
    socket row, 24 a widget, 30 more a multiline box), plus room for typing (10) and for what it shows."""
    specs = [s for sec in ("required", "optional") for s in info["input"].get(sec, {}).values()]
    widgets = [s for s in specs if _is_widget(s)]
    multiline = sum(1 for s in widgets if (s[1] if len(s) > 1 else {}).get("multiline"))
    rows = max(len(specs) - len(widgets), len(info["output"]))
    return 14 + 20 * rows + 24 * (len(widgets) + sum(_frontend_extras(s) for s in widgets)) + 40 * multiline + shows


def _socket_type(spec):
    """The frontend's type name for an /object_info input spec (a list of choices is a COMBO)."""
    return "COMBO" if isinstance(spec[0], list) else spec[0]


def build(g, name, note, view=(0.8, (120, 180))):  # clear of the sidebar and top bar
    """The UI-format workflow of Graph g: ids in insertion order, positions by stack, group and column.
    The note goes at the top of the inputs, or at the end of the column g.note_at names."""
    g.add("note", "MarkdownNote", "About this workflow", *(g.note_at or (INPUTS, 0)))
    if g.note_at is None:
        g.order.insert(0, g.order.pop())  # first: it is what a newcomer reads
    ids = {k: i + 1 for i, k in enumerate(g.order)}
    links = []
    for k in g.order:
        for name_, (src, out) in g.nodes[k]["inputs"].items():
            outs = _outputs(g.info[g.nodes[src]["kind"]])
            slot = [o for o, _ in outs].index(out)
            kind = outs[slot][1]
            links.append([len(links) + 1, ids[src], slot, ids[k], name_, kind])
    entries = {}
    for k in g.order:
        n = g.nodes[k]
        entry = {"id": ids[k], "type": n["kind"], "pos": [0, 0], "flags": {}, "order": 0, "mode": 0, "title": n["title"]}
        if n["kind"] == "MarkdownNote":
            entry.update(inputs=[], outputs=[], properties={}, widgets_values=[note], size=[WIDTH, NOTE_H],
                         color="#432", bgcolor="#653")
        else:
            entry.update(_node_entry(g, k, ids, links), size=[n["width"], _height(g.info[n["kind"]], n["shows"])])
        entries[k] = entry
    # Links name their target input; the frontend wants its slot index.
    for l in links:
        target = entries[next(k for k in g.order if ids[k] == l[3])]
        l[4] = [i["name"] for i in target["inputs"]].index(l[4])
    groups, x = [], 0
    for stack in STACKS:
        y, stack_w = 0, 0
        for title in stack:
            members = [k for k in g.order if g.nodes[k]["group"] == title]
            cols = sorted({g.nodes[k]["col"] for k in members})
            cx, bottom = x + GROUP_PAD, y + GROUP_TITLE
            for c in cols:
                cy, col_w = y + GROUP_TITLE, 0
                for k in (m for m in members if g.nodes[m]["col"] == c):
                    entries[k]["pos"] = [cx, cy + TITLE_H]
                    cy += TITLE_H + entries[k]["size"][1] + GAP
                    col_w = max(col_w, entries[k]["size"][0])
                bottom = max(bottom, cy)
                cx += col_w + GAP
            w, h = cx - GAP + GROUP_PAD - x, bottom - GAP + GROUP_PAD - y
            groups.append({"id": len(groups) + 1, "title": title, "bounding": [x, y, w, h], "color": "#3f789e",
                           "font_size": 24, "flags": {}})
            y += h + GAP
            stack_w = max(stack_w, w)
        x += stack_w + GAP
    nodes = [entries[k] for k in g.order]
    for i, n in enumerate(nodes):
        n["order"] = i
    return {"id": "00000000-0000-4000-8000-0000000000" + f"{sum(map(ord, name)) % 100:02d}", "revision": 0,
            "last_node_id": len(nodes), "last_link_id": len(links), "nodes": nodes, "links": links,
            "groups": groups, "config": {},
            "extra": {"ds": {"scale": view[0], "offset": list(view[1])}}, "version": 0.4}


def _node_entry(g, k, ids, links):
    """inputs, outputs, properties and widgets_values of a server node, in /object_info's order."""
    n, info = g.nodes[k], g.info[g.nodes[k]["kind"]]
    inputs, values = [], []
    for sec in ("required", "optional"):
        specs = info["input"].get(sec, {})
        for iname in info.get("input_order", {}).get(sec, list(specs)):
            spec = specs[iname]
            link = next((l[0] for l in links if l[3] == ids[k] and l[4] == iname), None)
            kind = _socket_type(spec)
            if _is_widget(spec):
                opts = spec[1] if len(spec) > 1 else {}
                default = opts.get("default", spec[0][0] if isinstance(spec[0], list) and spec[0] else None)
                values.append(n["widgets"].get(iname, default))
                if opts.get("control_after_generate"):
                    values.append("fixed")
                if opts.get("image_upload"):
                    values.append("image")
                if link is not None:
                    inputs.append({"name": iname, "type": kind, "widget": {"name": iname}, "link": link})
            else:
                inputs.append({"name": iname, "type": kind, "link": link})
    unknown = set(n["widgets"]) - {i for sec in info["input"].values() for i in sec}
    if unknown:
        raise SystemExit(f"{n['kind']} has no input {sorted(unknown)}")
    outputs = [{"name": o, "type": t, "links": [l[0] for l in links if l[1] == ids[k] and l[2] == i], "slot_index": i}
               for i, (o, t) in enumerate(_outputs(info))]
    values += ["" for _ in FRONTEND_WIDGETS.get(n["kind"], ())]
    return {"inputs": inputs, "outputs": outputs, "properties": {"Node name for S&R": n["kind"]},
            "widgets_values": values}


# --- the workflows -----------------------------------------------------------------------------------

INPUTS, CONDITIONS, GENERATION, PRIVACY, SAVE = ("1 inputs", "2 conditions", "3 generation", "4 privacy gate",
                                                 "5 save (no metadata)")
STACKS = [[INPUTS], [CONDITIONS], [GENERATION], [PRIVACY, SAVE]]


def face(g, who, photo, col, out="IMAGE"):
    """Landmarks -> face crop of node `photo`'s output `out`; returns the crop node's key."""
    g.add(f"{who} landmarks", "PalsyFaceLandmarks", f"{who} landmarks", CONDITIONS, col)
    g.link(f"{who} landmarks", "image", photo, out)
    g.add(f"{who} crop", "PalsyFaceCrop", f"{who} face crop", CONDITIONS, col)
    g.link(f"{who} crop", "image", photo, out)
    g.link(f"{who} crop", "landmarks", f"{who} landmarks", "landmarks")
    return f"{who} crop"


def generation(g, condition, identity, controlnet, batch=1):
    """Prompt, ControlNet (file `controlnet`, through the window loader) and sampling; the report of the
    steps that fell in the window, from the run."""
    g.add("checkpoint", "CheckpointLoaderSimple", "checkpoint", GENERATION, 0, ckpt_name=CHECKPOINT)
    g.add("controlnet", "PalsyTimestepWindowControlNetLoader", "controlnet", GENERATION, 0, control_net_name=controlnet,
          apply="everywhere", t_lo=-1, t_hi=-1)
    g.add("negative", "CLIPTextEncode", "negative", GENERATION, 0, text="")
    g.link("negative", "clip", "checkpoint", "CLIP")
    g.add("latent", "EmptyLatentImage", "latent", GENERATION, 0, width=512, height=512, batch_size=batch)
    g.add("prompt", "StringReplace", "prompt", GENERATION, 1, string=PROMPT, find="<identity>")
    g.link("prompt", "replace", *identity)
    g.add("positive", "CLIPTextEncode", "positive", GENERATION, 1)
    g.link("positive", "clip", "checkpoint", "CLIP")
    g.link("positive", "text", "prompt", "STRING")
    g.add("apply", "ControlNetApplyAdvanced", "apply controlnet", GENERATION, 1, strength=1.0, start_percent=0.0,
          end_percent=1.0)
    for side in ("positive", "negative"):
        g.link("apply", side, side, "CONDITIONING")
    g.link("apply", "control_net", "controlnet", "control_net")
    g.link("apply", "image", *condition)
    g.link("apply", "vae", "checkpoint", "VAE")
    g.add("sampler", "KSampler", "sampler", GENERATION, 1, seed=1, cfg=7.5)
    g.link("sampler", "model", "checkpoint", "MODEL")
    g.link("sampler", "positive", "apply", "positive")
    g.link("sampler", "negative", "apply", "negative")
    g.link("sampler", "latent_image", "latent", "LATENT")
    g.add("decode", "VAEDecode", "decode", GENERATION, 2)
    g.link("decode", "samples", "sampler", "LATENT")
    g.link("decode", "vae", "checkpoint", "VAE")
    # Which steps fell in the window, read from the run (no sampler setting tied to the loader).
    g.add("window steps", "PalsyWindowSteps", "controlnet window steps", GENERATION, 2)
    g.link("window steps", "control_net", "controlnet", "control_net")
    g.link("window steps", "samples", "sampler", "LATENT")
    g.add("window report", "PreviewAny", "controlnet report", GENERATION, 2)
    g.link("window report", "source", "window steps", "report")


def gate_and_save(g, prefix, report=True):
    """report: a Preview as Text of the gate's report (the grid shows its sheet's, which names each row's)."""
    g.add("gate", "PalsyPrivacyGate", "privacy gate", PRIVACY, 0, model_name=ARCFACE)
    g.link("gate", "image", "decode", "IMAGE")
    g.link("gate", "reference", "patient crop", "crop")
    if report:
        g.add("gate report", "PreviewAny", "gate report", PRIVACY, 0)  # how many passed, and each image's score
        g.link("gate report", "source", "gate", "report")
    g.add("output", "PalsySaveAnonymized", "output", SAVE, 0, filename_prefix=prefix)
    g.link("output", "images", "gate", "images")
    g.link("output", "identity_check", "gate", "checked")
    g.link("output", "method_summary", "controlnet", "summary")


def single(info, mode):
    g = Graph(info)
    photo_w = 180 if mode == "codc" else WIDTH  # three photos in two columns: CODC still fits one screen
    g.add("patient", "LoadImage", "patient", INPUTS, node_w=photo_w, image="patient.png")
    if mode == "codc":
        g.add("rest", "LoadImage", "patient rest", INPUTS, 1, node_w=photo_w, image="rest.png")
        g.add("donor", "LoadImage", "donor", INPUTS, 1, node_w=photo_w, image="donor.png")
    g.add("identity", "PrimitiveString", "identity", INPUTS, value="a man")
    crop = face(g, "patient", "patient", 0)
    if mode == "codc":
        g.note_at = (INPUTS, 0)  # under the identity: the photos' column is full
        face(g, "donor", "donor", 0)
        g.add("organs", "PalsyOrganCropResize", "organ crop + resize", CONDITIONS, 1)
        g.link("organs", "image", crop, "crop")
        g.link("organs", "landmarks", crop, "crop_landmarks")
        g.link("organs", "donor_landmarks", "donor crop", "crop_landmarks")
        g.add("rest landmarks", "PalsyFaceLandmarks", "patient rest landmarks", CONDITIONS, 0)
        g.link("rest landmarks", "image", "rest", "IMAGE")
        g.link("organs", "rest_landmarks", "rest landmarks", "landmarks")
        g.add("condition", "PalsyContourReposition", "CODC condition", CONDITIONS, 1)
        g.link("condition", "organs", "organs", "organs")
        g.link("condition", "donor_image", "donor crop", "crop")
        g.link("condition", "donor_landmarks", "donor crop", "crop_landmarks")
    else:
        g.add("condition", "PalsyPFCondition", "PF condition", CONDITIONS, 0, size=0)
        g.link("condition", "image", crop, "crop")
        g.link("condition", "landmarks", crop, "crop_landmarks")
    g.add("show", "PalsyPreview", "condition preview", CONDITIONS, 1 if mode == "codc" else 0)
    g.link("show", "images", "condition", "preview")
    # PF and CODC (the paper's Methods 1 and 2) sample with the fine-tuned net, zero-shot with the stock one.
    generation(g, ("condition", "condition"), ("identity", "STRING"),
               STOCK_CONTROLNET if mode == "zero_shot" else TRAINED_CONTROLNET)
    gate_and_save(g, f"palsysim/{mode}")
    return g


def grid(info):
    """One chain over the ten item photos as a batch; it runs once per identity line (list mapping)."""
    g = Graph(info)
    for i, item in enumerate(ITEMS):  # two rows of five, in the grading order
        g.add(f"patient {item}", "LoadImage", f"patient {item}", INPUTS, 1 + i % 5, node_w=200, image=f"{item}.png")
    g.add("photos", "PalsyYanagiharaBatch", "photos (the ten items)", INPUTS, 0)
    for item in ITEMS:
        g.link("photos", item, f"patient {item}", "IMAGE")
    g.add("identities", "PalsyLines", "identities", INPUTS, 0, text="a man\na woman\nan elderly woman")
    crop = face(g, "patient", "photos", 0, "images")
    g.add("condition", "PalsyPFCondition", "PF condition", CONDITIONS, 0, size=0)
    g.link("condition", "image", crop, "crop")
    g.link("condition", "landmarks", crop, "crop_landmarks")
    g.add("show", "PalsyPreview", "condition preview", CONDITIONS, 0)
    g.link("show", "images", "condition", "preview")
    generation(g, ("condition", "condition"), ("identities", "lines"), STOCK_CONTROLNET, batch=len(ITEMS))
    gate_and_save(g, "palsysim/grid", report=False)
    g.add("sheet", "PalsyLabelledGrid", "grid", SAVE, 1, columns=len(ITEMS))
    g.link("sheet", "images", "gate", "slots")
    g.link("sheet", "column_labels", "photos", "items")
    g.link("sheet", "row_labels", "identities", "labels")
    g.link("sheet", "reports", "gate", "report")  # the gate runs once per identity: the sheet names each row's
    g.add("gate report", "PreviewAny", "gate report", PRIVACY, 0)  # every row's outcome, then each row's table
    g.link("gate report", "source", "sheet", "report")
    g.add("grid output", "PalsySaveAnonymized", "grid output", SAVE, 1, filename_prefix="palsysim/grid_sheet")
    g.link("grid output", "images", "sheet", "grid")
    g.link("grid output", "method_summary", "controlnet", "summary")
    g.link("grid output", "identity_check", "gate", "checked")  # every face on the sheet passed; the rest are grey
    return g


NOTE_END = ("\n\nModels: see README (*Models*). Every image passes the privacy gate before the save, which "
            "writes pixels, the method summary and that the image passed the identity check, nothing else. Headless: `python -m palsysim run "
            "workflows/api/{api}.json --patients DIR --out OUT`.")

# What PF and CODC load, and how to make it: the training line of README's "Fine-tuning the ControlNet".
TRAINED = (f"\n\n**ControlNet**: `{TRAINED_CONTROLNET}`, fine-tuned on timesteps {TRAINED_WINDOW[0]}..{TRAINED_WINDOW[1]} "
           f"(the file records the window; the loader applies the net at every step, as the paper does). Make it "
           f"first, in the pack's folder, `models/` being your ComfyUI's models folder and `DATA` your photos as "
           f"`DATA/<patient>/<expression>/*.png` (README: *Fine-tuning the ControlNet*):\n\n`{TRAIN_COMMAND}`"
           f"\n\nUntil then, `{STOCK_CONTROLNET}` in *controlnet* gives the zero-shot baseline.")

WORKFLOWS = {
    "palsy_pf": (lambda info: single(info, "pf"),
                 "**PF**: patient photo -> landmarks -> face crop (512, as in training) -> PF condition (Canny "
                 "of the crop) -> SD1.5 + the fine-tuned ControlNet -> privacy gate -> save." + TRAINED),
    "palsy_codc": (lambda info: single(info, "codc"),
                   "**CODC**: the patient's eyes, nose and mouth edges, scaled to the donor, on the donor's "
                   "face contour (both face-cropped): each organ where the donor has it, moved as far as the "
                   "patient's moved from their *rest* photo (the same photo at rest) -> SD1.5 + the fine-tuned "
                   "ControlNet (trained on PF conditions: the paper's Method 2) -> privacy gate -> save. The donor "
                   "is a healthy, consenting non-patient." + TRAINED),
    "palsy_zero_shot": (lambda info: single(info, "zero_shot"),
                        f"**Zero-shot baseline**: the PF condition with the stock `{STOCK_CONTROLNET}` (no "
                        "fine-tuning), applied at every step; the saved summary says so."),
    "palsy_yanagihara_grid": (grid,
                              "**Yanagihara grid**: one photo per item, one batch, one PF chain that runs once "
                              "per line of *identities*; the gate passes what no longer resembles the patient "
                              "and the grid shows held-back tiles in grey."),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--server")
    where.add_argument("--embedded", action="store_true")
    args = ap.parse_args(argv)
    if args.embedded:
        from palsysim.comfy.host import EmbeddedHost
        with EmbeddedHost() as host:
            info = requests.get(host.url + "/object_info", timeout=60).json()
    else:
        info = requests.get(args.server.rstrip("/") + "/object_info", timeout=60).json()
    for name, (make, note) in WORKFLOWS.items():
        wf = build(make(info), name, note + NOTE_END.replace("{api}", name))
        path = template_path(name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(json.dumps(wf, indent=1, ensure_ascii=False) + "\n")
        print("wrote", os.path.relpath(path, REPO))


if __name__ == "__main__":
    main()
