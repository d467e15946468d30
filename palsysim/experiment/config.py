"""EXP/experiment.toml: what the experiment runs, and everything checked before any work starts."""
import os
import tomllib
from dataclasses import dataclass, field

from ..fidelity import ITEMS
from ..images import InputError

FILE = "experiment.toml"

# The paper's comparison. Each generated method names how its ControlNet is made (a training mode
# and window, or the stock file) and which condition it is sampled with.
METHODS = {
    "zero_shot": {"net": None, "condition": "pf"},                       # stock control_sd15_canny
    "full": {"net": ("full", 0, 999), "condition": "pf"},
    "partial": {"net": ("partial", 500, 700), "condition": "pf"},
    "partial_codc": {"net": ("partial", 500, 700), "condition": "codc"},  # the paper's Method 2
    "freeze": {"net": ("freeze", 0, 999), "condition": "pf"},
    "lora": {"net": ("lora", 0, 999), "condition": "pf"},
}
WORKFLOWS = {"zero_shot": "palsy_zero_shot", "pf": "palsy_pf", "codc": "palsy_codc"}

TEMPLATE = '''\
# PalsySim experiment: the paper's comparison (Table II, Figs. 6-8) on your own patients.
# Run it with:  python -m palsysim experiment run {exp}
# Every stage writes under this folder and is skipped when its inputs and settings are unchanged;
# kill it anywhere and run it again to continue. Patients appear only as "patient k" in outputs.

[data]
# PATIENTS/<patient>/<expression>.png|jpg, expressions named after the 10 Yanagihara items:
# {items}
patients = "{patients}"
# A healthy, consenting non-patient face photo (or a folder of them, used in turn) for CODC.
donors = "{donors}"

[models]
checkpoint = "{checkpoint}"   # SD1.5, e.g. v1-5-pruned-emaonly.safetensors
controlnet = "{controlnet}"   # the stock control_sd15_canny.pth: zero-shot, and the start of every training
# Identity (privacy) backend: auto (ArcFace when its ONNX is given, else dlib), arcface, dlib, both.
identity_backend = "auto"
arcface = ""                  # optional: buffalo_l/w600k_r50.onnx
lpips_weights = ""            # optional: alexnet-owt-7be5be79.pth (LPIPS needs it)

[methods]
# zero_shot: stock ControlNet; full: t 0..999; partial: t 500..700; partial_codc: the partial net
# sampled with CODC conditions (the paper's Method 2); freeze: inner blocks + cross-attention;
# lora: low-rank updates.
run = ["zero_shot", "full", "partial", "partial_codc", "freeze", "lora"]

[ablation]
# Fig. 8: partial fine-tuning on each window (inclusive timesteps, 0..999), sampled with PF conditions.
windows = [[0, 200], [800, 999], [0, 999], [500, 700]]

[train]
steps = 0                     # 0: train for `epochs` instead
epochs = 2
batch_size = 4
resolution = 512
seed = 0
lr = 0.0                      # 0: the training default for each mode
checkpoint_every = 100        # steps between saved training states (what a killed run resumes from)

[generate]
# "ID photo of <identity> wearing light-blue surgical cap and top, ..."
identities = ["man", "woman"]
seeds = [1]
steps = 20
sampler = "euler"
scheduler = "normal"
cfg = 7.5
resolution = 512
'''


@dataclass
class Experiment:
    root: str
    patients: str
    donors: str
    checkpoint: str
    controlnet: str
    identity_backend: str = "auto"
    arcface: str = ""
    lpips_weights: str = ""
    methods: list = field(default_factory=lambda: list(METHODS))
    windows: list = field(default_factory=list)
    train: dict = field(default_factory=dict)
    generate: dict = field(default_factory=dict)

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def nets(self):
        """{net name: (mode, t_lo, t_hi)} every trained method and ablation window needs, each once."""
        wanted = [METHODS[m]["net"] for m in self.methods if METHODS[m]["net"]]
        wanted += [("partial", lo, hi) for lo, hi in self.windows]
        return {net_name(n): n for n in dict.fromkeys(wanted)}

    def runs(self):
        """{run name: (workflow, net name or None, condition)}: the methods, then the ablation windows."""
        out = {}
        for m in self.methods:
            spec = METHODS[m]
            out[m] = (WORKFLOWS["zero_shot"] if spec["net"] is None else WORKFLOWS[spec["condition"]],
                      net_name(spec["net"]) if spec["net"] else None, spec["condition"])
        for lo, hi in self.windows:
            out[window_name(lo, hi)] = (WORKFLOWS["pf"], net_name(("partial", lo, hi)), "pf")
        return out


def net_name(net):
    mode, lo, hi = net
    return f"{mode}_{lo}_{hi}"


def window_name(lo, hi):
    return f"window_{lo}_{hi}"


def write_template(root, patients="", donors="", checkpoint="", controlnet=""):
    """EXP/experiment.toml with the paper's settings; refuses to replace an existing one."""
    from ..files import write_bytes
    path = os.path.join(root, FILE)
    if os.path.exists(path):
        raise InputError(f"{path} exists already: edit it, or init another folder")
    text = TEMPLATE.format(exp=root, items=" ".join(ITEMS), patients=patients, donors=donors,
                           checkpoint=checkpoint, controlnet=controlnet)
    return write_bytes(path, text)


def load(root):
    """EXP -> Experiment, or InputError listing every problem in the file (syntax, unknown names, windows)."""
    path = os.path.join(root, FILE)
    if not os.path.isfile(path):
        raise InputError(f"{path} not found: run `python -m palsysim experiment init {root}` first")
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: {e}") from None
    problems = []
    here = os.path.dirname(os.path.abspath(path))

    def get(section, key, kind, default=None):
        value = doc.get(section, {}).get(key, default)
        if value is None or not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            problems.append(f"[{section}] {key} must be {kind_name(kind)} (got {value!r})")
            return default
        return value

    def file_path(section, key, optional=False):
        value = get(section, key, str, "")
        if not value:
            if not optional:
                problems.append(f"[{section}] {key} is empty: give the path")
            return ""
        return os.path.normpath(os.path.join(here, os.path.expanduser(value)))

    exp = Experiment(root=os.path.abspath(root), patients=file_path("data", "patients"),
                     donors=file_path("data", "donors", optional=True), checkpoint=file_path("models", "checkpoint"),
                     controlnet=file_path("models", "controlnet"),
                     identity_backend=get("models", "identity_backend", str, "auto"),
                     arcface=file_path("models", "arcface", optional=True),
                     lpips_weights=file_path("models", "lpips_weights", optional=True),
                     methods=get("methods", "run", list, []), windows=get("ablation", "windows", list, []))
    for m in exp.methods:
        if m not in METHODS:
            problems.append(f"[methods] run: unknown method {m!r} (known: {', '.join(METHODS)})")
    exp.methods = [m for m in dict.fromkeys(exp.methods) if m in METHODS]
    windows = []
    for w in exp.windows:
        if (not isinstance(w, list) or len(w) != 2 or not all(isinstance(t, int) and not isinstance(t, bool) for t in w)
                or not 0 <= w[0] <= w[1] <= 999):
            problems.append(f"[ablation] windows: {w!r} is not a window [t_lo, t_hi] with 0 <= t_lo <= t_hi <= 999")
        else:
            windows.append(tuple(w))
    exp.windows = list(dict.fromkeys(windows))
    if exp.identity_backend not in ("auto", "arcface", "dlib", "both"):
        problems.append(f"[models] identity_backend {exp.identity_backend!r}: use auto, arcface, dlib or both")
    exp.train = {k: get("train", k, int, d) for k, d in
                 (("steps", 0), ("epochs", 2), ("batch_size", 4), ("resolution", 512), ("seed", 0),
                                        ("checkpoint_every", 100))}
    exp.train["lr"] = float(get("train", "lr", (int, float), 0.0))
    g = exp.generate
    g["identities"] = get("generate", "identities", list, ["man"])
    g["seeds"] = get("generate", "seeds", list, [1])
    for k, d in (("steps", 20), ("resolution", 512)):
        g[k] = get("generate", k, int, d)
    g["cfg"] = float(get("generate", "cfg", (int, float), 7.5))
    for k, d in (("sampler", "euler"), ("scheduler", "normal")):
        g[k] = get("generate", k, str, d)
    if not g["identities"] or not all(isinstance(i, str) and i.strip() for i in g["identities"]):
        problems.append("[generate] identities must be a list of non-empty strings, e.g. [\"man\", \"woman\"]")
    if not g["seeds"] or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in g["seeds"]):
        problems.append("[generate] seeds must be a list of whole numbers >= 0")
    for k in ("resolution",):
        if g[k] % 8 or g[k] < 64:
            problems.append(f"[generate] {k} must be a multiple of 8, at least 64")
    if exp.train["resolution"] % 8 or exp.train["resolution"] < 64:
        problems.append("[train] resolution must be a multiple of 8, at least 64")
    if min(exp.train["epochs"], exp.train["batch_size"], exp.train["checkpoint_every"], g["steps"]) < 1 or exp.train["steps"] < 0:
        problems.append("[train] epochs/batch_size and [generate] steps must be at least 1, [train] steps at least 0")
    if not exp.methods and not exp.windows:
        problems.append("[methods] run and [ablation] windows are both empty: nothing to do")
    if problems:
        raise InputError(f"{path} has problems:\n  " + "\n  ".join(problems))
    return exp


def kind_name(kind):
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({str: "a string", int: "a whole number", float: "a number", list: "a list"}[k] for k in kinds)
