"""The layout engine of scripts/build_workflows.py: a Graph of nodes added by key and linked by names, laid
out as the frontend would draw it (its own node sizes from the server's /object_info, plus room for what
a node shows), in a row of groups, one group per stage, columns inside; build() gives the UI-format JSON.
Widths let every widget show its label and value uncut and never go below what the frontend widens a node
to (its title), one width a column."""
import math
import uuid

from palsysim.comfy.workflow import FRONTEND_WIDGETS, _frontend_extras, _is_widget

WIDTH, GAP, TITLE_H = 220, 20, 30          # node width, space between nodes, node title bar (above pos)
GROUP_PAD, GROUP_TITLE = 12, 40
# Room for what a node shows under its widgets: a photo, an image preview, a report.
# LoadImage: the frontend makes it 314 px tall (102 of widgets) once a photo is loaded, whatever its size.
# PreviewAny: the text box the frontend adds to show what it was given.
SHOWS = {"LoadImage": 212, "PalsyPreview": 220, "PalsySaveAnonymized": 190, "PreviewAny": 120}
NOTE_H = 200
# Advance widths (1/1000 em) of ASCII 32..126 in the frontend's node font: Arial in 1.32.9
# (LiteGraph.NODE_FONT), Inter in 1.58.1 (measured in its page at 12 and 14 px: its text cut, wider).
FONTS = {
    "Arial": [278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556, 556, 556,
              556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722, 722, 667, 611, 778, 722, 278,
              500, 667, 556, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469,
              556, 333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, 556, 556, 333, 500,
              278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584],
    "Inter": [281, 288, 466, 633, 642, 982, 644, 300, 365, 365, 501, 662, 288, 460, 288, 360, 631, 407, 610, 618, 646,
              593, 620, 583, 619, 620, 288, 302, 662, 662, 662, 511, 966, 703, 654, 730, 722, 601, 590, 746, 743, 269,
              571, 672, 565, 903, 753, 765, 639, 765, 644, 642, 646, 744, 703, 1007, 682, 679, 629, 365, 316, 365, 471,
              456, 323, 562, 612, 571, 612, 583, 335, 613, 591, 242, 242, 549, 242, 876, 591, 600, 612, 612, 391, 528,
              327, 591, 562, 818, 546, 562, 552, 426, 333, 426, 662],
}
# A widget shows "label ... value" in its width less 85 px (margins, arrows) with 5 between them, at 12 px
# (frontends 1.32.9 and 1.58.1, BaseWidget.drawTruncatingText); past that it cuts the label, then the value.
WIDGET_CHROME, LABEL_GAP, FONT_PX = 85, 5, 12
# The frontend widens a node to its title (14 px) plus 40, and Load Image to its upload button and photo
# (measured with rest.png .. lower_lip_depression.png: 214..217 px in frontend 1.32.9, 223..228 in 1.58.1).
TITLE_PX, TITLE_CHROME = 14, 40
# A subgraph node's title has its icon before it and the button that opens it after (1.58.1 cuts the title
# short of them).
SUBGRAPH_TITLE_CHROME = 40
MIN_WIDTH = {"LoadImage": 230}

# The gate and the save share a group: a save group beside the gate's makes the graph too wide for Fit View to
# draw text, and one under it has the gate's links cross its title (see build()).
INPUTS, CONDITIONS, GENERATION, PRIVACY = "1 inputs", "2 conditions", "3 generation", "4 privacy gate + save"
ROW = [INPUTS, CONDITIONS, GENERATION, PRIVACY]


class Graph:
    """Nodes added by key; link(dst, input, src, output) by names; laid out by groups (a row) and columns."""

    def __init__(self, info):
        self.info, self.nodes, self.order = dict(info), {}, []
        self.note_at = None  # (group, column) for the note, at the column's end; None: top of the inputs
        self.subgraphs = {}  # the subgraph id (a node kind here): (its name, its Graph, its outputs)

    def add(self, key, kind, title, group, col=0, node_w=WIDTH, shows=None, **widgets):
        """node_w: the node's width; shows: room for what it shows (default SHOWS[kind])."""
        self.nodes[key] = dict(kind=kind, title=title, group=group, col=col, widgets=widgets, inputs={}, width=node_w,
                               shows=SHOWS.get(kind, 0) if shows is None else shows)
        self.order.append(key)
        return key

    def link(self, dst, name, src, out):
        self.nodes[dst]["inputs"][name] = (src, out)

    def add_subgraph(self, key, title, group, col, name, inner, outputs):
        """A node that is the Graph `inner` as a subgraph (frontend >= 1.24): one node on the canvas, its
        nodes inside. outputs: [(output name, inner node key, that node's output)]; its id comes from name."""
        sid = str(uuid.uuid5(uuid.NAMESPACE_URL, "palsysim/subgraph/" + name))
        kinds = [dict(_outputs(inner.info[inner.nodes[k]["kind"]]))[out] for _, k, out in outputs]
        self.info[sid] = {"input": {}, "output": kinds, "output_name": [o for o, _, _ in outputs]}
        self.subgraphs[sid] = (name, inner, outputs)
        return self.add(key, sid, title, group, col)


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


def text_width(text, px=FONT_PX):
    """Width of text at px pixels in the wider of the two fonts (a character beyond ASCII a full em)."""
    return max(sum(em[ord(c) - 32] if 32 <= ord(c) < 127 else 1000 for c in str(text)) * px / 1000
               for em in FONTS.values())


def _shown(value, opts):
    """The text a widget shows for value: a FLOAT to its step's decimals, as the frontend rounds it."""
    if isinstance(value, float):
        step = opts.get("round") or opts.get("step") or 0.01
        return f"{value:.{max(0, -math.floor(math.log10(step)))}f}"
    return str(value)


def _text_fits_width(info, values):
    """The least node width that shows every widget's label and value uncut: values {input: value shown}."""
    need = 0
    for sec in ("required", "optional"):
        for name, spec in info["input"].get(sec, {}).items():
            opts = (spec[1] if len(spec) > 1 else {}) or {}
            if _is_widget(spec) and not opts.get("multiline") and name in values:
                need = max(need, WIDGET_CHROME + text_width(name) + LABEL_GAP + text_width(_shown(values[name], opts)))
            if opts.get("control_after_generate"):  # the combo the frontend adds after a seed
                need = max(need, WIDGET_CHROME + text_width("control after generate") + LABEL_GAP + text_width("fixed"))
    return math.ceil(need / 10) * 10


def _socket_type(spec):
    """The frontend's type name for an /object_info input spec (a list of choices is a COMBO)."""
    return "COMBO" if isinstance(spec[0], list) else spec[0]


def build(g, name, note, view=(0.8, (120, 180)), first=(1, 1)):  # clear of the sidebar and top bar
    """The UI-format workflow of Graph g: ids in insertion order, positions by group and column.
    The note (None: none) goes at the top of the inputs, or at the end of the column g.note_at names.
    first: the first node and link id (a subgraph's follow its parent's: the frontend keeps one count)."""
    if note is not None:
        g.add("note", "MarkdownNote", "About this workflow", *(g.note_at or (INPUTS, 0)))
        if g.note_at is None:
            g.order.insert(0, g.order.pop())  # first: it is what a newcomer reads
    ids = {k: i + first[0] for i, k in enumerate(g.order)}
    links = []
    for k in g.order:
        for name_, (src, out) in g.nodes[k]["inputs"].items():
            outs = _outputs(g.info[g.nodes[src]["kind"]])
            slot = [o for o, _ in outs].index(out)
            kind = outs[slot][1]
            links.append([len(links) + first[1], ids[src], slot, ids[k], name_, kind])
    entries = {}
    for k in g.order:
        n = g.nodes[k]
        entry = {"id": ids[k], "type": n["kind"], "pos": [0, 0], "flags": {}, "order": 0, "mode": 0,
                 "title": n["title"]}
        if n["kind"] in g.subgraphs:  # no widget of its nodes shown on it: open it to see them
            entry.update(_node_entry(g, k, ids, links), properties={"proxyWidgets": []})
            title_w = text_width(n["title"], TITLE_PX) + TITLE_CHROME + SUBGRAPH_TITLE_CHROME
            entry["size"] = [max(n["width"], math.ceil(title_w / 10) * 10),
                             _height(g.info[n["kind"]], n["shows"])]
        elif n["kind"] == "MarkdownNote":
            entry.update(inputs=[], outputs=[], properties={}, widgets_values=[note], size=[WIDTH, NOTE_H],
                         color="#432", bgcolor="#653")
        else:
            entry.update(_node_entry(g, k, ids, links))
            values = {}
            shown = iter(entry["widgets_values"])
            for sec in ("required", "optional"):
                specs = g.info[n["kind"]]["input"].get(sec, {})
                for iname in g.info[n["kind"]].get("input_order", {}).get(sec, list(specs)):
                    if _is_widget(specs[iname]):
                        values[iname] = next(shown)
                        for _ in range(_frontend_extras(specs[iname])):
                            next(shown)
            width = max(n["width"], _text_fits_width(g.info[n["kind"]], values), MIN_WIDTH.get(n["kind"], 0),
                        math.ceil((text_width(n["title"], TITLE_PX) + TITLE_CHROME) / 10) * 10)
            entry["size"] = [width, _height(g.info[n["kind"]], n["shows"])]
        entries[k] = entry
    # Links name their target input; the frontend wants its slot index.
    for l in links:
        target = entries[next(k for k in g.order if ids[k] == l[3])]
        l[4] = [i["name"] for i in target["inputs"]].index(l[4])
    # One row of groups, their tops level: every link then runs below every group's title bar (the frontend draws
    # a link between its ends' heights), where a group stacked under another has links cross its title.
    groups, x = [], 0
    for title in ROW:
        members = [k for k in g.order if g.nodes[k]["group"] == title]
        if not members:
            continue
        cx, bottom = x + GROUP_PAD, GROUP_TITLE
        for c in sorted({g.nodes[k]["col"] for k in members}):
            column = [m for m in members if g.nodes[m]["col"] == c]
            # One width a column: the widest node's, so every text box in it gets the room.
            cy, col_w = GROUP_TITLE, max(entries[k]["size"][0] for k in column)
            for k in column:
                entries[k]["pos"] = [cx, cy + TITLE_H]
                entries[k]["size"][0] = col_w
                cy += TITLE_H + entries[k]["size"][1] + GAP
            bottom = max(bottom, cy)
            cx += col_w + GAP
        w, h = cx - GAP + GROUP_PAD - x, bottom - GAP + GROUP_PAD
        groups.append({"id": len(groups) + 1, "title": title, "bounding": [x, 0, w, h], "color": "#3f789e",
                       "font_size": 24, "flags": {}})
        x += w + GAP
    nodes = [entries[k] for k in g.order]
    for i, n in enumerate(nodes):
        n["order"] = i
    wf = {"id": "00000000-0000-4000-8000-0000000000" + f"{sum(map(ord, name)) % 100:02d}", "revision": 0,
          "last_node_id": first[0] + len(nodes) - 1, "last_link_id": first[1] + len(links) - 1, "nodes": nodes,
          "links": links, "groups": groups, "config": {},
          "extra": {"ds": {"scale": view[0], "offset": list(view[1])}}, "version": 0.4}
    if g.subgraphs:
        wf["definitions"] = {"subgraphs": []}
        for sid, (sub_name, inner, outputs) in g.subgraphs.items():
            inner_wf = build(inner, sub_name, None, first=(wf["last_node_id"] + 1, wf["last_link_id"] + 1))
            wf["definitions"]["subgraphs"].append(_definition(sid, sub_name, inner_wf, outputs, inner))
            wf["last_node_id"], wf["last_link_id"] = inner_wf["last_node_id"], inner_wf["last_link_id"]
    return wf


def _definition(sid, name, wf, outputs, inner):
    """A subgraph definition as the frontend saves one (definitions.subgraphs): the inner workflow wf, its
    links as objects, each output fed by a link to the output node (id -20) beside the inner nodes."""
    links = [dict(zip(("id", "origin_id", "origin_slot", "target_id", "target_slot", "type"), l)) for l in wf["links"]]
    by_key = dict(zip(inner.order, wf["nodes"]))
    slots = []
    for j, (out_name, key, out) in enumerate(outputs):
        node = by_key[key]
        slot = [o["name"] for o in node["outputs"]].index(out)
        link_id = wf["last_link_id"] = wf["last_link_id"] + 1
        kind = node["outputs"][slot]["type"]
        links.append({"id": link_id, "origin_id": node["id"], "origin_slot": slot, "target_id": -20, "target_slot": j,
                      "type": kind})
        node["outputs"][slot]["links"].append(link_id)
        slots.append({"id": str(uuid.uuid5(uuid.UUID(sid), out_name)), "name": out_name, "type": kind,
                      "linkIds": [link_id], "localized_name": out_name})
    for group in wf["groups"]:
        group["title"] = name
    x0, y0 = min(g["bounding"][0] for g in wf["groups"]), min(g["bounding"][1] for g in wf["groups"])
    x1 = max(g["bounding"][0] + g["bounding"][2] for g in wf["groups"])
    return {"id": sid, "version": 1, "revision": 0, "config": {}, "name": name,
            "state": {"lastGroupId": len(wf["groups"]), "lastNodeId": wf["last_node_id"],
                      "lastLinkId": wf["last_link_id"], "lastRerouteId": 0},
            "inputNode": {"id": -10, "bounding": [x0 - 160, y0, 120, 40]},
            "outputNode": {"id": -20, "bounding": [x1 + 40, y0, 120, 20 + 20 * len(slots)]},
            "inputs": [], "outputs": slots, "widgets": [], "nodes": wf["nodes"], "groups": wf["groups"],
            "links": links, "extra": {}}


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
                if opts.get("image_upload") or opts.get("video_upload"):  # the upload button: "image" for both
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
