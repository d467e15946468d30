"""Write the shipped UI workflows (workflows/*.json) from the specs below, laid out by stage.

    python scripts/build_workflows.py --embedded          # then: python scripts/workflow_to_api.py --embedded
    python scripts/build_workflows.py --server URL

Each workflow is a row of groups, one per stage (inputs, conditions, generation, privacy, save),
its nodes stacked in columns inside; a note sits beside the inputs, and the saved view opens on
the start of the graph. Node sockets and widget order come from the server's /object_info, so the
files load in the frontend as if made there. Node titles are what the headless runner fills in.
"""
import argparse
import json
import os
import sys

import requests

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from palsysim.fidelity import ITEMS  # noqa: E402
from palsysim.workflow import _frontend_extras, _is_widget  # noqa: E402

PROMPT = ("ID photo of <identity> wearing light-blue surgical cap and top, frontal headshot centered, even "
          "lighting, light-blue background, ultra-realistic, sharp focus")
CHECKPOINT, CONTROLNET, ARCFACE = "v1-5-pruned-emaonly.safetensors", "control_sd15_canny.pth", "buffalo_l/w600k_r50.onnx"
WIDTH, GAP, GROUP_PAD, GROUP_TITLE = 340, 40, 30, 50
PREVIEW_H = 330  # preview nodes keep room for a 256 px image, so a run does not spill over neighbours


class Graph:
    """Nodes added by key; link(dst, input, src, output) by names; laid out by group and column."""

    def __init__(self, info):
        self.info, self.nodes, self.links, self.groups, self.order = info, {}, [], [], []

    def add(self, key, kind, title, group, col=0, height=None, **widgets):
        self.nodes[key] = dict(kind=kind, title=title, group=group, col=col, widgets=widgets, inputs={},
                               height=height)
        self.order.append(key)
        return key

    def link(self, dst, name, src, out):
        self.nodes[dst]["inputs"][name] = (src, out)


def _outputs(info):
    names = info.get("output_name") or info["output"]
    return list(zip(names, info["output"]))


def _height(info, n_links, extra):
    """Room for a node's sockets and widgets at the frontend's default sizes (generous, never tight)."""
    specs = [s for sec in ("required", "optional") for s in info["input"].get(sec, {}).values()]
    widgets = [s for s in specs if _is_widget(s)]
    sockets = len(specs) - len(widgets)
    multiline = sum(1 for s in widgets if (s[1] if len(s) > 1 else {}).get("multiline"))
    rows = max(sockets, len(info["output"]))
    return 36 + 22 * rows + 24 * (len(widgets) + sum(_frontend_extras(s) for s in widgets)) + 80 * multiline + extra


def build(g, name, note, view=(0.8, (120, 150))):
    """The UI-format workflow of Graph g: ids in insertion order, positions by group and column."""
    ids = {k: i + 1 for i, k in enumerate(g.order)}
    nodes, links = [], []
    out_links = {}
    for k in g.order:
        n = g.nodes[k]
        for name_, (src, out) in n["inputs"].items():
            lid = len(links) + 1
            kind = dict(_outputs(g.info[g.nodes[src]["kind"]]))[out]
            slot = [o for o, _ in _outputs(g.info[g.nodes[src]["kind"]])].index(out)
            links.append([lid, ids[src], slot, ids[k], name_, kind])
            out_links.setdefault((src, slot), []).append(lid)
    sizes, entries = {}, {}
    for k in g.order:
        n, info = g.nodes[k], g.info[g.nodes[k]["kind"]]
        inputs, values = [], []
        for sec in ("required", "optional"):
            specs = info["input"].get(sec, {})
            for iname in info.get("input_order", {}).get(sec, list(specs)):
                spec = specs[iname]
                link = next((l[0] for l in links if l[3] == ids[k] and l[4] == iname), None)
                kind = "COMBO" if isinstance(spec[0], list) else spec[0]
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
            raise SystemExit(f"{name}: {n['kind']} has no input {sorted(unknown)}")
        outputs = [{"name": o, "type": t, "links": out_links.get((k, i), []), "slot_index": i}
                   for i, (o, t) in enumerate(_outputs(info))]
        extra = 0 if not info.get("output_node") else 90  # room for the text or image it shows
        sizes[k] = [WIDTH, n["height"] or _height(info, 0, extra)]
        entries[k] = {"id": ids[k], "type": n["kind"], "pos": [0, 0], "size": sizes[k], "flags": {}, "order": 0,
                      "mode": 0, "inputs": inputs, "outputs": outputs,
                      "properties": {"Node name for S&R": n["kind"]}, "widgets_values": values, "title": n["title"]}
    # Links name their target input; the frontend wants its slot index.
    for l in links:
        l[4] = [i["name"] for i in entries[next(k for k in g.order if ids[k] == l[3])]["inputs"]].index(l[4])
    # Layout: the note on the left; inputs and conditions in a first row of groups, the rest below it,
    # so the whole graph is nearer the screen's shape than one long row.
    note_w, note_h = 420, 520
    nodes.append({"id": len(g.order) + 1, "type": "MarkdownNote", "pos": [0, GROUP_TITLE], "size": [note_w, note_h],
                  "flags": {}, "order": 0, "mode": 0, "inputs": [], "outputs": [], "properties": {},
                  "widgets_values": [note], "title": "About this workflow", "color": "#432", "bgcolor": "#653"})
    groups, top = [], 0
    titles = list(dict.fromkeys(g.nodes[k]["group"] for k in g.order))
    for row in ([t for t in titles if t in (INPUTS, CONDITIONS)], [t for t in titles if t not in (INPUTS, CONDITIONS)]):
        x, row_bottom = note_w + GAP, top
        for title in row:
            members = [k for k in g.order if g.nodes[k]["group"] == title]
            y_bottom, gx = top, x
            for c in sorted({g.nodes[k]["col"] for k in members}):
                y = top + GROUP_TITLE
                for k in (m for m in members if g.nodes[m]["col"] == c):
                    entries[k]["pos"] = [x + GROUP_PAD, y + 30]  # 30: the title bar sits above pos
                    y += sizes[k][1] + GAP + 30
                y_bottom = max(y_bottom, y)
                x += WIDTH + GAP
            x += 2 * GROUP_PAD
            groups.append({"id": len(groups) + 1, "title": title, "bounding": [gx, top, x - gx - GAP, y_bottom - top],
                           "color": "#3f789e", "font_size": 24, "flags": {}})
            x += GAP
            row_bottom = max(row_bottom, y_bottom)
        top = row_bottom + 2 * GAP
    nodes += [entries[k] for k in g.order]
    for i, n in enumerate(nodes):
        n["order"] = i
    return {"id": "00000000-0000-4000-8000-0000000000" + f"{sum(map(ord, name)) % 100:02d}", "revision": 0,
            "last_node_id": len(nodes), "last_link_id": len(links), "nodes": nodes, "links": links,
            "groups": groups, "config": {},
            "extra": {"ds": {"scale": view[0], "offset": list(view[1])}}, "version": 0.4}


# --- the workflows -----------------------------------------------------------------------------------

INPUTS, CONDITIONS, GENERATION, PRIVACY, SAVE = ("1 inputs", "2 conditions", "3 generation",
                                                 "4 privacy (ArcFace gate)", "5 save (no metadata)")


def generation(g, condition, identity_key, suffix="", col=0, batch=1):
    """Prompt, ControlNet and sampling for one identity; returns the decode node's key."""
    s = f" {suffix}" if suffix else ""
    g.add("prompt" + s, "StringReplace", "prompt" + s, GENERATION, col, string=PROMPT, find="<identity>")
    g.link("prompt" + s, "replace", identity_key, "STRING")
    g.add("positive" + s, "CLIPTextEncode", "positive" + s, GENERATION, col)
    g.link("positive" + s, "clip", "checkpoint", "CLIP")
    g.link("positive" + s, "text", "prompt" + s, "STRING")
    g.add("apply" + s, "ControlNetApplyAdvanced", "apply controlnet" + s, GENERATION, col + 1,
          strength=1.0, start_percent=0.0, end_percent=1.0)
    for a, b in (("positive", "positive" + s), ("negative", "negative")):
        g.link("apply" + s, a, b, "CONDITIONING")
    g.link("apply" + s, "control_net", "controlnet", "control_net")
    g.link("apply" + s, "image", *condition)
    g.link("apply" + s, "vae", "checkpoint", "VAE")
    g.add("sampler" + s, "KSampler", "sampler" + s, GENERATION, col + 1, seed=1, steps=20, cfg=7.5)
    g.link("sampler" + s, "model", "checkpoint", "MODEL")
    g.link("sampler" + s, "positive", "apply" + s, "positive")
    g.link("sampler" + s, "negative", "apply" + s, "negative")
    g.link("sampler" + s, "latent_image", "latent", "LATENT")
    g.add("decode" + s, "VAEDecode", "decode" + s, GENERATION, col + 1)
    g.link("decode" + s, "samples", "sampler" + s, "LATENT")
    g.link("decode" + s, "vae", "checkpoint", "VAE")
    return "decode" + s


def common(g, batch=1):
    g.add("checkpoint", "CheckpointLoaderSimple", "checkpoint", GENERATION, 0, ckpt_name=CHECKPOINT)
    g.add("controlnet", "PalsyTimestepWindowControlNetLoader", "controlnet", GENERATION, 0, control_net_name=CONTROLNET,
          apply="everywhere", t_lo=-1, t_hi=-1)
    g.add("negative", "CLIPTextEncode", "negative", GENERATION, 0, text="")
    g.link("negative", "clip", "checkpoint", "CLIP")
    g.add("latent", "EmptyLatentImage", "latent", GENERATION, 0, width=512, height=512, batch_size=batch)


def face(g, who, col, title=None):
    """LoadImage -> landmarks -> face crop for `who`; returns the crop node's key."""
    g.add(f"{who} landmarks", "PalsyFaceLandmarks", f"{who} landmarks", CONDITIONS, col)
    g.link(f"{who} landmarks", "image", title or who, "IMAGE")
    g.add(f"{who} crop", "PalsyFaceCrop", f"{who} face crop", CONDITIONS, col)
    g.link(f"{who} crop", "image", title or who, "IMAGE")
    g.link(f"{who} crop", "landmarks", f"{who} landmarks", "landmarks")
    return f"{who} crop"


def gate_and_save(g, images, prefix, s=""):
    g.add("gate" + s, "PalsyPrivacyGate", "privacy gate" + s, PRIVACY, 0, model_name=ARCFACE)
    g.link("gate" + s, "image", *images)
    g.link("gate" + s, "reference", "patient crop", "crop")
    g.add("output" + s, "PalsySaveAnonymized", "output" + s, SAVE, 0, filename_prefix=prefix)
    g.link("output" + s, "images", "gate" + s, "images")
    g.link("output" + s, "method_summary", "controlnet", "summary")


def single(info, mode):
    g = Graph(info)
    g.add("patient", "LoadImage", "patient", INPUTS, image="patient.png")
    if mode == "codc":
        g.add("donor", "LoadImage", "donor", INPUTS, image="donor.png")
    g.add("identity", "PrimitiveString", "identity", INPUTS, value="a man")
    crop = face(g, "patient", 0)
    if mode == "codc":
        face(g, "donor", 0)
        g.add("organs", "PalsyOrganCropResize", "organ crop + resize", CONDITIONS, 1)
        g.link("organs", "image", crop, "crop")
        g.link("organs", "landmarks", crop, "crop_landmarks")
        g.link("organs", "donor_landmarks", "donor crop", "crop_landmarks")
        g.add("condition", "PalsyContourReposition", "CODC condition", CONDITIONS, 1)
        g.link("condition", "organs", "organs", "organs")
        g.link("condition", "donor_image", "donor crop", "crop")
        g.link("condition", "donor_landmarks", "donor crop", "crop_landmarks")
        g.add("show", "PalsyPreview", "condition preview", CONDITIONS, 2, height=PREVIEW_H)
        g.link("show", "images", "condition", "preview")
    else:
        g.add("condition", "PalsyPFCondition", "PF condition", CONDITIONS, 1, size=0)
        g.link("condition", "image", crop, "crop")
        g.link("condition", "landmarks", crop, "crop_landmarks")
        g.add("show", "PalsyPreview", "condition preview", CONDITIONS, 1, height=PREVIEW_H)
        g.link("show", "images", "condition", "preview")
    common(g)
    decode = generation(g, ("condition", "condition"), "identity", col=1)
    gate_and_save(g, (decode, "IMAGE"), f"palsysim/{mode}")
    return g


def grid(info):
    g = Graph(info)
    previous = None
    for i, item in enumerate(ITEMS):
        key = f"patient {item}"
        g.add(key, "LoadImage", key, INPUTS, col=i // 5, height=110, image=f"{item}.png")
        if previous:
            b = f"batch {i}"
            g.add(b, "ImageBatch", f"batch {i}", INPUTS, col=2, height=70)
            g.link(b, "image1", previous, "IMAGE")
            g.link(b, "image2", key, "IMAGE")
            previous = b
        else:
            previous = key
    g.nodes[previous]["title"] = "patient photos (batch of 10)"
    for k in range(1, 4):
        g.add(f"identity {k}", "PrimitiveString", f"identity {k}", INPUTS, 3,
              value=["a man", "a woman", "an elderly woman"][k - 1])
    g.add("patient landmarks", "PalsyFaceLandmarks", "patient landmarks", CONDITIONS, 0)
    g.link("patient landmarks", "image", previous, "IMAGE")
    g.add("patient crop", "PalsyFaceCrop", "patient face crop", CONDITIONS, 0)
    g.link("patient crop", "image", previous, "IMAGE")
    g.link("patient crop", "landmarks", "patient landmarks", "landmarks")
    g.add("condition", "PalsyPFCondition", "PF condition", CONDITIONS, 0, size=0)
    g.link("condition", "image", "patient crop", "crop")
    g.link("condition", "landmarks", "patient crop", "crop_landmarks")
    g.add("show", "PalsyPreview", "condition preview", CONDITIONS, 1, height=PREVIEW_H)
    g.link("show", "images", "condition", "preview")
    common(g, batch=len(ITEMS))
    decodes = [generation(g, ("condition", "condition"), f"identity {k}", str(k), col=2 * k - 1) for k in range(1, 4)]
    for k, d in enumerate(decodes, 1):
        gate_and_save(g, (d, "IMAGE"), "palsysim/grid", f" {k}")
    g.add("rows", "ImageBatch", "rows 1+2", SAVE, 1)
    g.link("rows", "image1", "gate 1", "images")
    g.link("rows", "image2", "gate 2", "images")
    g.add("all rows", "ImageBatch", "rows 1+2+3", SAVE, 1)
    g.link("all rows", "image1", "rows", "IMAGE")
    g.link("all rows", "image2", "gate 3", "images")
    g.add("labels", "StringConcatenate", "row labels", SAVE, 1, delimiter="\n")
    g.link("labels", "string_a", "identity 1", "STRING")
    g.link("labels", "string_b", "identity 2", "STRING")
    g.add("labels 3", "StringConcatenate", "row labels 1-3", SAVE, 1, delimiter="\n")
    g.link("labels 3", "string_a", "labels", "STRING")
    g.link("labels 3", "string_b", "identity 3", "STRING")
    g.add("sheet", "PalsyLabelledGrid", "grid", SAVE, 2, columns=len(ITEMS), column_labels="\n".join(ITEMS))
    g.link("sheet", "images", "all rows", "IMAGE")
    g.link("sheet", "row_labels", "labels 3", "STRING")
    g.add("grid output", "PalsySaveAnonymized", "grid output", SAVE, 2, filename_prefix="palsysim/grid_sheet")
    g.link("grid output", "images", "sheet", "grid")
    g.link("grid output", "method_summary", "controlnet", "summary")
    return g


NOTE_END = ("\n\n**Models** (ComfyUI/models/...): `checkpoints/" + CHECKPOINT + "`, `controlnet/" + CONTROLNET +
            "` or a fine-tuned ControlNet from `python -m training` (the loader reads its window: t_lo/t_hi -1), "
            "`insightface/" + ARCFACE + "` (ArcFace, for the privacy gate).\n\n"
            "**Privacy**: every image passes the privacy gate (ArcFace similarity to the patient below the "
            "threshold) before *Save Image (anonymized)*, which writes pixels and the method summary only. "
            "Previews write no metadata either.\n\n"
            "**Headless**: `python -m palsysim run workflows/api/{api}.json --patients DIR --out OUT`; the runner "
            "fills the nodes titled `patient`, `donor`, `identity` and reads `output`.")

WORKFLOWS = {
    "palsy_pf": (lambda info: single(info, "pf"),
                 "## PalsySim: PF\n\nPatient photo -> face landmarks -> face crop (512, as in training) -> PF "
                 "condition (Canny of the crop) -> SD1.5 + ControlNet -> privacy gate -> anonymized save."),
    "palsy_codc": (lambda info: single(info, "codc"),
                   "## PalsySim: CODC\n\nPatient + donor photo, both face-cropped as in training -> the patient's "
                   "eyes, nose and mouth edges, scaled to the donor, on the donor's face contour (CODC condition) -> "
                   "SD1.5 + ControlNet -> privacy gate -> anonymized save. The donor is a healthy, consenting "
                   "non-patient."),
    "palsy_zero_shot": (lambda info: single(info, "zero_shot"),
                        "## PalsySim: zero-shot baseline\n\nThe paper's baseline: the PF condition with the stock "
                        "`control_sd15_canny` (no fine-tuning); the saved summary says so."),
    "palsy_yanagihara_grid": (grid,
                              "## PalsySim: Yanagihara grid\n\nOne patient photo per Yanagihara item (" +
                              ", ".join(ITEMS) + "), batched, face-cropped, PF condition; each identity row "
                              "generates all 10 in one batch, passes its own privacy gate and is saved; the grid "
                              "sheet is made from the gated rows."),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--server")
    where.add_argument("--embedded", action="store_true")
    args = ap.parse_args(argv)
    if args.embedded:
        from palsysim.runner import EmbeddedHost
        with EmbeddedHost() as host:
            info = requests.get(host.url + "/object_info", timeout=60).json()
    else:
        info = requests.get(args.server.rstrip("/") + "/object_info", timeout=60).json()
    for name, (make, note) in WORKFLOWS.items():
        wf = build(make(info), name, note + NOTE_END.replace("{api}", name))
        path = os.path.join(REPO, "workflows", name + ".json")
        with open(path, "w", encoding="utf-8") as f:
            f.write(json.dumps(wf, indent=1, ensure_ascii=False) + "\n")
        print("wrote", os.path.relpath(path, REPO))


if __name__ == "__main__":
    main()
