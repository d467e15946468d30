"""EXP/experiment.toml: what the experiment runs. Every setting is known, typed and ranged here; the
files and folders it names are checked in preflight.py, and all problems are reported together."""
import difflib
import math
import os
import tomllib
from dataclasses import dataclass, field

from ..base.errors import InputError
from ..base.vocabulary import ITEMS
from ..identity.check import BACKENDS

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
VIDEO_WORKFLOW = "palsy_video"  # every method's videos: its net, its condition mode (zero_shot: the stock net, PF)

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
# A file named like a published one (v1-5-pruned-emaonly.safetensors, ...) whose SHA-256 differs is refused;
# true runs on it anyway, and the report says so.
accept_mismatch = false

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
photos = 0                    # photos of each expression to generate from: 0 all (training uses all), N the first N
# "ID photo of <identity> wearing light-blue surgical cap and top, ..."
identities = ["man", "woman"]
seeds = [1]
steps = 20
sampler = "euler"
scheduler = "normal"
cfg = 7.5
resolution = 512

[video]
# Patients' expression videos (PATIENTS/<patient>/<expression>.mp4|webm|mov, beside their photos) are
# generated frame by frame with these methods' nets (of [methods] run) and scored over time: the
# report's video section. Without videos this section does nothing.
methods = ["partial_codc"]
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
    accept_mismatch: bool = False
    methods: list = field(default_factory=lambda: list(METHODS))
    windows: list = field(default_factory=list)
    train: dict = field(default_factory=dict)
    generate: dict = field(default_factory=dict)
    video: list = field(default_factory=list)  # the methods that make videos, where the patients have them
    problems: list = field(default_factory=list)  # what is wrong in experiment.toml, reported with the file checks

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def nets(self):
        """{net name: (mode, t_lo, t_hi)} every trained method and ablation window needs, each once."""
        wanted = [METHODS[m]["net"] for m in self.methods if METHODS[m]["net"]]
        wanted += [window_net(lo, hi) for lo, hi in self.windows]
        return {net_name(n): n for n in dict.fromkeys(wanted)}

    def runs(self):
        """{run name: (workflow, net name or None, condition)}: the methods, then the ablation windows."""
        out = {}
        for m in self.methods:
            spec = METHODS[m]
            out[m] = (WORKFLOWS["zero_shot"] if spec["net"] is None else WORKFLOWS[spec["condition"]],
                      net_name(spec["net"]) if spec["net"] else None, spec["condition"])
        for lo, hi in self.windows:
            out[window_name(lo, hi)] = (WORKFLOWS["pf"], net_name(window_net(lo, hi)), "pf")
        return out

    def video_runs(self):
        """{run name: (workflow, net name or None, condition)} of the videos: video_<method> per [video] method."""
        return {f"video_{m}": (VIDEO_WORKFLOW, net, "pf" if net is None else condition)
                for m in self.video for _, net, condition in [self.runs()[m]]}


def twins(runs):
    """{run: the earlier run it repeats} of runs() -> an ablation window with a method's net, workflow and
    condition (window_500_700 is `partial`, window_0_999 `full`) makes that method's images to the byte:
    they are generated and scored once, and copied."""
    first, out = {}, {}
    for name, spec in runs.items():
        out.update({name: first[spec]} if spec in first else {})
        first.setdefault(spec, name)
    return out


def net_name(net):
    mode, lo, hi = net
    return f"{mode}_{lo}_{hi}"


def window_net(lo, hi):
    """Fig. 8's net for a window: partial fine-tuning on it. On every timestep that is exactly `full`
    (all weights, the same window, data and seed), so the two share one training run."""
    return METHODS["full"]["net"] if (lo, hi) == METHODS["full"]["net"][1:] else ("partial", lo, hi)


def window_name(lo, hi):
    return f"window_{lo}_{hi}"


def write_template(root, patients="", donors="", checkpoint="", controlnet=""):
    """EXP/experiment.toml with the paper's settings; refuses to replace an existing one."""
    from ..base.files import write_bytes
    path = os.path.join(root, FILE)
    if os.path.exists(path):
        raise InputError(f"{path} exists already: edit it, or init another folder")
    text = TEMPLATE.format(exp=root, items=" ".join(ITEMS), patients=patients, donors=donors,
                           checkpoint=checkpoint, controlnet=controlnet)
    return write_bytes(path, text)


# --- the settings: each (default, check); a check returns None or what the value must be -------------

def _is_whole(v):
    return isinstance(v, int) and not isinstance(v, bool)


def whole(lo, hi=None, step=1):
    need = f"give a whole number {f'from {lo} to {hi}' if hi is not None else f'>= {lo}'}"
    need += f", a multiple of {step}" if step > 1 else ""
    return lambda v: None if _is_whole(v) and lo <= v and (hi is None or v <= hi) and v % step == 0 else need


def number(lo, hi, note=""):
    need = f"give a finite number from {lo} to {hi}{note}"
    return lambda v: None if (_is_whole(v) or isinstance(v, float)) and math.isfinite(v) and lo <= v <= hi else need


def text(v):
    return None if isinstance(v, str) and v.strip() and v.isprintable() else "give a non-empty name in quotes"


def truth(v):
    return None if isinstance(v, bool) else "give true or false"


def path(v):
    return None if isinstance(v, str) and "\0" not in v else "give a path in quotes (\"\" for none)"


def choice(options):
    def check(v):
        if isinstance(v, str) and v in options:
            return None
        return f"give one of {', '.join(options)}{did_you_mean(v, options)}"
    return check


def list_of(check, example, empty=False):
    """A list (non-empty unless `empty`) whose every element passes `check`; the message names each bad one."""
    def check_list(v):
        if not isinstance(v, list) or not (v or empty):
            return f"give a list, e.g. {example}"
        bad = {}
        for x in v:
            if check(x):
                bad.setdefault(check(x), []).append(repr(x))
        return "; ".join(f"{', '.join(xs)}: {need}" for need, xs in bad.items()) + f" (e.g. {example})" if bad else None
    check_list.item = check
    return check_list


def window(v):
    if isinstance(v, list) and len(v) == 2 and all(_is_whole(t) for t in v) and 0 <= v[0] <= v[1] <= 999:
        return None
    return "each window is [t_lo, t_hi], whole timesteps with 0 <= t_lo <= t_hi <= 999"


def did_you_mean(value, options, form="{}"):
    match = difflib.get_close_matches(value, list(options), 1, 0.6) if isinstance(value, str) else []
    return f" (did you mean {form.format(match[0])}?)" if match else ""


SETTINGS = {
    "data": {"patients": ("", path), "donors": ("", path)},
    "models": {"checkpoint": ("", path), "controlnet": ("", path), "identity_backend": ("auto", choice(BACKENDS)),
               "arcface": ("", path), "lpips_weights": ("", path), "accept_mismatch": (False, truth)},
    "methods": {"run": ([], list_of(choice(METHODS), '["zero_shot", "partial"]', empty=True))},
    "ablation": {"windows": ([], list_of(window, "[[0, 200], [500, 700]]", empty=True))},
    "train": {"steps": (0, whole(0, 10 ** 7)), "epochs": (2, whole(1, 10 ** 5)), "batch_size": (4, whole(1, 4096)),
              "resolution": (512, whole(64, 4096, 8)), "seed": (0, whole(0)),
              "lr": (0.0, number(0, 1, " (0: the training default for each mode)")),
              "checkpoint_every": (100, whole(1, 10 ** 7))},
    "generate": {"photos": (0, whole(0, 10 ** 6)), "identities": (["man"], list_of(text, '["man", "woman"]')),
                 "seeds": ([1], list_of(whole(0), "[1, 2]")), "steps": (20, whole(1, 10000)),
                 "sampler": ("euler", text), "scheduler": ("normal", text), "cfg": (7.5, number(0, 100)),
                 "resolution": (512, whole(64, 4096, 8))},
    "video": {"methods": (["partial_codc"], list_of(choice(METHODS), '["partial_codc"]', empty=True))},
}
REQUIRED = {("data", "patients"): "the folder of patients' photos (PATIENTS/<patient>/<expression>.png, or "
                                  "<expression>/ folders of many photos)",
            ("models", "checkpoint"): "the SD1.5 checkpoint file",
            ("models", "controlnet"): "the stock Canny ControlNet file (control_sd15_canny)"}
PATHS = ("patients", "donors", "checkpoint", "controlnet", "arcface", "lpips_weights")


def unknown_names(doc):
    """Problems for what the file holds that is no section or no setting, with the nearest known name."""
    problems = []
    for section, table in doc.items():
        if section not in SETTINGS:
            problems.append(f"[{section}] is not a section of {FILE}{did_you_mean(section, SETTINGS, '[{}]')}: "
                            f"the sections are {', '.join(f'[{s}]' for s in SETTINGS)}")
        elif not isinstance(table, dict):
            problems.append(f"{section} = {table!r}: [{section}] is a section: write [{section}] on a line of its "
                            f"own, its settings ({', '.join(SETTINGS[section])}) under it")
        else:
            problems += [f"[{section}] {key} is not a setting{did_you_mean(key, SETTINGS[section])}: "
                         f"[{section}] has {', '.join(SETTINGS[section])}" for key in table if key not in SETTINGS[section]]
    return problems


def load(root):
    """EXP -> Experiment, its `problems` listing everything wrong in the file (unknown, mistyped, out of
    range); InputError only when there is no file to read."""
    path = os.path.join(root, FILE)
    if not os.path.isfile(path):
        raise InputError(f"{path} not found: run `python -m palsysim experiment init {root}` first")
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: {e}") from None
    problems = unknown_names(doc)
    values = {}
    for section, settings in SETTINGS.items():
        table = doc.get(section) if isinstance(doc.get(section), dict) else {}
        for key, (default, check) in settings.items():
            value = table.get(key, default)
            need = check(value)
            if need:
                problems.append(f"[{section}] {key} = {value!r}: {need}")
                # the checks after this one (outputs, files) go on with the valid part of a list
                item = getattr(check, "item", None)
                value = [x for x in value if not item(x)] if item and isinstance(value, list) else default
            if (section, key) in REQUIRED and not value and not need:
                problems.append(f"[{section}] {key} is empty: give {REQUIRED[section, key]}")
            values[key if section in ("data", "models") else (section, key)] = value
    here = os.path.dirname(os.path.abspath(path))
    for key in PATHS:  # relative to the file, as its reader sees them
        values[key] = values[key] and os.path.normpath(os.path.join(here, os.path.expanduser(values[key])))
    exp = Experiment(root=os.path.abspath(root), **{k: values[k] for k in PATHS + ("identity_backend", "accept_mismatch")},
                     methods=list(dict.fromkeys(values["methods", "run"])),
                     windows=list(dict.fromkeys(tuple(w) for w in values["ablation", "windows"])),
                     train={k: values["train", k] for k in SETTINGS["train"]},
                     generate={k: values["generate", k] for k in SETTINGS["generate"]}, problems=problems)
    exp.video = [m for m in dict.fromkeys(values["video", "methods"]) if m in exp.methods]
    given = doc.get("video", {}).get("methods", []) if isinstance(doc.get("video"), dict) else []
    stray = [m for m in given if isinstance(m, str) and m in METHODS and m not in exp.methods]
    if stray:  # the default names partial_codc: only what the file itself asks for must be run
        problems.append(f"[video] methods names {', '.join(stray)}, not in [methods] run: a video is made with its "
                        f"method's net; add {stray[0]} to [methods] run or drop it from [video] methods")
    exp.train["lr"] = float(exp.train["lr"])
    exp.generate["cfg"] = float(exp.generate["cfg"])
    if not exp.methods and not exp.windows and not any(p.startswith(("[methods]", "[ablation]")) for p in problems):
        problems.append("[methods] run and [ablation] windows are both empty: nothing to do")
    return exp
