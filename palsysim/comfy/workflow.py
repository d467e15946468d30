"""ComfyUI workflow JSON: UI format -> API format, and the edits a headless run makes to a graph.

UI format (what the browser saves): {"nodes": [{id, type, inputs: [{name, link, widget?}],
widgets_values: [...], title?, mode}], "links": [[id, from_node, from_slot, to_node, to_slot, type]],
"version": 0.4}. widgets_values lists a node's widget values in the order of its widget inputs in
/object_info's input_order, plus values of widgets the frontend adds itself (the "control after
generate" choice after a seed, the "upload" button after an image or video combo).

API format (what POST /prompt takes): {"<id>": {"class_type", "inputs": {name: value or
[from_id, from_slot]}, "_meta": {"title"}}}.

Subgraphs (frontend >= 1.24): definitions.subgraphs holds each one's nodes and links (links as objects;
node -10 is its inputs, -20 its outputs); a node whose type is a subgraph's id stands for it. The frontend
sends the inner nodes, id "<outer id>:<inner id>", and no node for the subgraph itself: so does to_api.
"""
import json
import math

from ..base.errors import InputError

UI_ONLY = {"Note", "MarkdownNote", "PrimitiveNode"}  # frontend-only nodes: dropped
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
# Widgets the frontend adds to a core node and sends with the prompt (the server ignores them), stored
# after the node's own widgets_values: Preview as Text's text box.
FRONTEND_WIDGETS = {"PreviewAny": ("preview",)}


def is_ui_format(workflow):
    return isinstance(workflow, dict) and isinstance(workflow.get("nodes"), list) and "links" in workflow


def _is_widget(spec):
    kind, opts = spec[0], (spec[1] if len(spec) > 1 else {}) or {}
    return (isinstance(kind, list) or kind in WIDGET_TYPES) and not opts.get("forceInput")


def _frontend_extras(spec):
    """How many values the frontend stores after this widget's own (widgets it adds beside it)."""
    opts = (spec[1] if len(spec) > 1 else {}) or {}
    return int(bool(opts.get("control_after_generate"))) + int(bool(opts.get("image_upload") or opts.get("video_upload")))


def _flatten(workflow):
    """(nodes by str id, links by str id as [id, from, slot]): each subgraph node replaced by its inner
    nodes, id "<outer>:<inner>", its inputs' and outputs' links joined through to the nodes inside."""
    nodes = {str(n["id"]): n for n in workflow["nodes"]}
    links = {str(l[0]): [str(l[0]), str(l[1]), l[2]] for l in workflow["links"]}
    for sub in workflow.get("definitions", {}).get("subgraphs", []):
        for outer_id in [i for i, n in nodes.items() if n["type"] == sub["id"]]:
            outer = nodes.pop(outer_id)
            feeds = {}  # the subgraph's output slot -> its inner source
            for l in sub["links"]:
                key, src = f"{outer_id}:{l['id']}", f"{outer_id}:{l['origin_id']}"
                if l["origin_id"] == -10:  # from the subgraph's input: from what feeds the outer node's input
                    fed = outer["inputs"][l["origin_slot"]].get("link")
                    if fed is not None:
                        links[key] = [key] + links[str(fed)][1:]
                elif l["target_id"] == -20:
                    feeds[l["target_slot"]] = [src, l["origin_slot"]]
                else:
                    links[key] = [key, src, l["origin_slot"]]
            for inner in sub["nodes"]:
                if inner["type"] in {s["id"] for s in workflow["definitions"]["subgraphs"]}:
                    raise InputError(f"node {outer_id}: a subgraph inside a subgraph is not supported")
                inputs = []
                for i in inner.get("inputs", []):  # a subgraph input fed by nothing leaves its inputs unlinked
                    key = f"{outer_id}:{i.get('link')}"
                    inputs.append(dict(i, link=key if key in links else None))
                nodes[f"{outer_id}:{inner['id']}"] = dict(inner, inputs=inputs)
            for link in links.values():
                if link[1] == outer_id:
                    link[1:] = feeds[link[2]]
    for n in nodes.values():
        for i in n.get("inputs", []):
            if i.get("link") is not None:
                i["link"] = str(i["link"])
    return nodes, links


def _id_order(nid):
    return [int(p) for p in nid.split(":")]


def to_api(workflow, object_info):
    """UI-format workflow -> API-format prompt, using /object_info for the widgets' input names.

    Deterministic: nodes sorted by id ("3:12" after "3"), inputs in the node's input_order.
    """
    if not is_ui_format(workflow):
        raise InputError("not a UI-format ComfyUI workflow (no 'nodes' and 'links')")
    nodes, links = _flatten(json.loads(json.dumps(workflow)))

    def source(link_id):
        """The real node and slot behind a link (following Reroute nodes)."""
        _, src, slot = links[link_id]
        while nodes[src]["type"] == "Reroute":
            upstream = nodes[src]["inputs"][0].get("link")
            if upstream is None:
                raise InputError(f"Reroute node {src} has no input connected")
            _, src, slot = links[upstream]
        return [src, slot]

    api = {}
    for nid in sorted(nodes, key=_id_order):
        node = nodes[nid]
        kind = node["type"]
        if kind in UI_ONLY or kind == "Reroute":
            continue
        if node.get("mode", 0) in (2, 4):
            raise InputError(f"node {nid} ({kind}) is muted or bypassed; un-mute or delete it first")
        info = object_info.get(kind)
        if info is None:
            raise InputError(f"node {nid}: node type {kind!r} is not installed on the server")
        linked = {i["name"]: i["link"] for i in node.get("inputs", []) if i.get("link") is not None}
        values = node.get("widgets_values") or []
        by_name = values if isinstance(values, dict) else None
        pos, inputs = 0, {}
        for section in ("required", "optional"):
            specs = info["input"].get(section, {})
            for name in info.get("input_order", {}).get(section, list(specs)):
                spec = specs[name]
                if _is_widget(spec) and by_name is None:
                    if pos >= len(values):
                        raise InputError(f"node {nid} ({kind}): widgets_values has no value for {name!r}; "
                                         f"the workflow was saved with another version of this node")
                    value, pos = values[pos], pos + 1 + _frontend_extras(spec)
                    inputs[name] = value
                elif _is_widget(spec) and name in by_name:
                    inputs[name] = by_name[name]
                if name in linked:  # a link wins over the widget value it replaced
                    # A frontend PrimitiveNode holds one value (its first widgets_value) for every input
                    # it feeds; the frontend writes that value into each of them when it queues.
                    src = nodes[links[linked[name]][1]]
                    inputs[name] = src["widgets_values"][0] if src["type"] == "PrimitiveNode" else source(linked[name])
        for name in FRONTEND_WIDGETS.get(kind, ()):
            inputs[name], pos = (values[pos] if pos < len(values) else ""), pos + 1
        api[nid] = {"class_type": kind, "inputs": inputs,
                         "_meta": {"title": node.get("title") or info.get("display_name") or kind}}
    return api


def dumps(api):
    """The API JSON text as checked in: stable, diff-friendly."""
    return json.dumps(api, indent=2, ensure_ascii=False) + "\n"


# --- finding and editing nodes of an API-format graph ---------------------------------------------

def title(graph, nid):
    return graph[nid].get("_meta", {}).get("title", "")


def find(graph, ref):
    """Node ids that `ref` names: a node id, else every node with that title, else of that class_type."""
    if ref in graph:
        return [ref]
    for key in (lambda n: title(graph, n), lambda n: graph[n]["class_type"]):
        hits = [n for n in graph if key(n) == ref]
        if hits:
            return hits
    return []


def describe(graph, nid):
    t = title(graph, nid)
    kind = graph[nid]["class_type"]
    return f"node {nid} ({kind}{', ' + repr(t) if t and t != kind else ''})"


def declared_type(object_info, class_type, name):
    """The type /object_info declares for an input: "INT", "FLOAT", "BOOLEAN", "STRING", "COMBO", or None."""
    inputs = (object_info or {}).get(class_type, {}).get("input", {})
    for section in ("required", "optional"):
        spec = inputs.get(section, {}).get(name)
        if spec:
            return "COMBO" if isinstance(spec[0], list) else spec[0]
    return None


PYTHON_TYPES = {"INT": 0, "FLOAT": 0.0, "BOOLEAN": False, "STRING": "", "COMBO": ""}


def _coerce(current, text, where):
    """A --set value as the type of `current` (a value of the input's type)."""
    if isinstance(current, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise InputError(f"{where} takes true or false, not {text!r}")
    for kind in (int, float):
        if isinstance(current, kind):
            try:
                value = kind(text)
            except ValueError:
                raise InputError(f"{where} takes a number ({kind.__name__}), not {text!r}") from None
            if not math.isfinite(value):  # float("nan") parses, and would reach the sampler as NaN
                raise InputError(f"{where} takes a finite number, not {text!r}")
            return value
    return text


def parse_override(text):
    """'node.input=value' -> (node, input, value); node is an id, a title or a class_type."""
    target, sep, value = text.partition("=")
    node, dot, name = target.rpartition(".")
    if not sep or not dot or not node or not name:
        raise InputError(f"--set {text!r}: expected NODE.INPUT=VALUE, e.g. KSampler.steps=30 "
                         f"(NODE: a node id, title or type)")
    return node, name, value


def set_input(graph, node, name, value, object_info=None):
    """Set input `name` on every node `node` names; value (a string) takes the type /object_info
    declares for the input (the frontend writes a whole-number FLOAT as an int: denoise 1), else
    the type of the value it holds."""
    ids = find(graph, node)
    if not ids:
        raise InputError(f"--set {node}.{name}: no node has id, title or type {node!r}")
    for nid in ids:
        inputs = graph[nid]["inputs"]
        where = f"{describe(graph, nid)} input {name!r}"
        if name not in inputs:
            raise InputError(f"{describe(graph, nid)} has no input {name!r}; it has: {', '.join(inputs)}")
        if isinstance(inputs[name], list):
            raise InputError(f"{where} is connected to node {inputs[name][0]}; it has no value to set")
        kind = declared_type(object_info, graph[nid]["class_type"], name)
        current = PYTHON_TYPES.get(kind, inputs[name])
        inputs[name] = _coerce(current, value, where) if isinstance(value, str) else value
    return ids


def load_json(path):
    """A workflow file -> dict, with a message naming the file when it is not JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise InputError(f"no such workflow file: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path} is not a JSON workflow: {e}") from None


def bypass(graph, ref, object_info):
    """ComfyUI's "bypass" on an API graph: drop the nodes `ref` names; each consumer of one of their
    outputs gets the dropped node's input of the same type instead (as the UI's bypass mode does).
    An output node nothing consumes (e.g. a report) is simply dropped, and so is a display node (one
    with no outputs, e.g. Preview as Text) fed by an output that has no input to take its place; an optional
    input fed by such an output is left unconnected. Returns the dropped ids."""
    ids = find(graph, ref)
    if not ids:
        raise InputError(f"--bypass {ref}: no node has id, title or type {ref!r}")
    dropped = list(ids)
    for nid in ids:
        node = graph.pop(nid)
        info = object_info.get(node["class_type"], {})
        specs = {k: v for sec in ("required", "optional") for k, v in info.get("input", {}).get(sec, {}).items()}
        shown_only = []
        for oid, other in graph.items():
            for name, value in list(other["inputs"].items()):
                if not (isinstance(value, list) and value[0] == nid):
                    continue
                kind = info["output"][value[1]]
                same = [k for k, v in node["inputs"].items() if isinstance(v, list) and specs.get(k, [None])[0] == kind]
                optional = name in object_info.get(other["class_type"], {}).get("input", {}).get("optional", {})
                if not same and optional:  # as the UI leaves it: unconnected
                    del other["inputs"][name]
                elif not same and not object_info.get(other["class_type"], {}).get("output", [None]):
                    shown_only.append(oid)
                elif not same:
                    raise InputError(f"cannot bypass node {nid} ({node['class_type']}): its {kind} output feeds "
                                     f"{other['class_type']}.{name} and it has no {kind} input to pass on")
                else:
                    # As the UI does: output k takes input k where that has the type (ControlNetApplyAdvanced's
                    # negative stays negative), else the first input of the type.
                    at_slot = list(specs)[value[1]] if value[1] < len(specs) else None
                    other["inputs"][name] = list(node["inputs"][at_slot if at_slot in same else same[0]])
        for oid in dict.fromkeys(shown_only):
            graph.pop(oid)
            dropped.append(oid)
    return dropped
