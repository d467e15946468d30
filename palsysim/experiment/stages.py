"""The experiment's stages, in order (after preflight.check): prepare, train, generate, evaluate, figures, report.

Each stage item records a fingerprint (sha256 of its input files' bytes and its settings) in
EXP/state.json once its outputs are whole; an item whose fingerprint is unchanged is skipped, one
whose fingerprint changed is redone. Files are written atomically, so a killed run leaves either
the old file or the new one, and a state entry is written only after its files.

EXP/
  experiment.toml
  state.json                      fingerprints of finished items, and the paths the experiment owns
  prepared/photos/patient_k/<source>.png           upright, metadata-free copies (runner layout; a source is
                                                   <expression>, or <expression>/photo<k> for many photos)
  prepared/train/patient_k/<expression>/<photo>.png  the same photos in the training layout
  prepared/crops/patient_k/<source>.png            face crops (the report's figures)
  models/checkpoints, models/controlnet            links to your files, and the trained nets
  generated/<run>/patient_k/<source>/<identity>_<seed>.png   one runner tree per method / window
  evaluation/<run>/                                per-run scores
  figures/*.png, report.md, report.html
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys

from ..base.errors import InputError
from ..base.files import sha256_of, write_bytes
from ..base.layout import find_patients, generated_sources, photos_in, source_item
from ..base.paths import REPO
from ..base.photos import read_image, write_image
from ..base.vocabulary import ITEMS
from ..base.workflows import api_path
from ..comfy import host
from ..comfy.generate import generate as generate_images
from ..comfy.plan import MANIFEST
from .config import METHODS, twins

STATE = "state.json"


# --- fingerprints ----------------------------------------------------------------------------------

def fingerprint(*parts):
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


class State:
    """EXP/state.json: {"items": {item key: fingerprint} of the items whose outputs are whole,
    "written": [paths under EXP the experiment claimed before writing them]}. Written atomically, so
    a file that does not read as one is not the experiment's (`foreign` says why)."""

    def __init__(self, root):
        self.root, self.path = root, os.path.join(root, STATE)
        self.items, self.written, self.foreign = {}, set(), None
        if not os.path.lexists(self.path):
            return
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            self.foreign = f"{type(e).__name__}: {e}"[:200]
            return
        if not (isinstance(data, dict) and isinstance(data.get("items"), dict)
                and isinstance(data.get("written"), list) and all(isinstance(p, str) for p in data["written"])):
            self.foreign = "not a record of items and written paths"
            return
        self.items, self.written = data["items"], set(data["written"])

    def done(self, key, fp, *outputs):
        return self.items.get(key) == fp and all(os.path.exists(p) for p in outputs)

    def record(self, key, fp):
        self.items[key] = fp
        self.save()

    def owns(self, path):
        return os.path.relpath(path, self.root) in self.written

    def claim(self, paths):
        """Record `paths` as the experiment's before anything is written there."""
        self.written.update(os.path.relpath(p, self.root) for p in paths)
        self.save()

    def save(self):
        write_bytes(self.path, json.dumps({"items": self.items, "written": sorted(self.written)}, indent=1,
                                          sort_keys=True) + "\n")


# --- what the stages read --------------------------------------------------------------------------

def patients(exp):
    """{"patient_k": {source: photo path}}: the patients in sorted folder order, renamed; sources in the
    Yanagihara order, each item's photos in order (layout.py)."""
    found = find_patients(exp.patients)
    return {f"patient_{i + 1}": {s: photos[s] for e in ITEMS for s in photos if source_item(s) == e}
            for i, (_, photos) in enumerate(sorted(found.items()))}


def train_photo(exp, key, source):
    """The training layout's copy of a source: <patient>/<expression>/photo.png, or .../photo<k>.png."""
    item, _, photo = source.partition("/")
    return exp.path("prepared", "train", key, item, f"{photo or 'photo'}.png")


def generated_from(exp, sources):
    """The sources generation starts from: [generate] photos = N keeps each item's first N (0: all)."""
    n, counts, out = exp.generate["photos"], {}, {}
    for source, path in sources.items():
        counts[source_item(source)] = counts.get(source_item(source), 0) + 1
        if not n or counts[source_item(source)] <= n:
            out[source] = path
    return out


def donor_paths(exp):
    if not exp.donors:
        return []
    if os.path.isdir(exp.donors):
        return photos_in(exp.donors)
    return [exp.donors]


def patient_donors(exp, found):
    """{patient key: donor photo, or None without donors}: the k-th patient gets donor k mod n of the
    sorted donors, in prepare and in generation alike."""
    donors = donor_paths(exp)
    return {key: donors[k % len(donors)] if donors else None for k, key in enumerate(found)}


def needs_codc(exp):
    return any(METHODS[m]["condition"] == "codc" for m in exp.methods)


# --- prepare ---------------------------------------------------------------------------------------

def prepare(exp, state, found, bar):
    """Upright copies of every photo, in both layouts, and the face crop the report's figures show.
    The conditions are made in generation, by the workflows, from these copies (CODC's with the rest photo).
    Returns {(patient, source): evaluate.Face} of the photos it read, so that evaluation neither decodes
    nor landmarks them again."""
    from ..condition.facecrop import face_crop
    from ..face.landmarks import face_landmarks
    from ..identity.check import recognizers, resolve_backend
    from ..measure.evaluate import Face
    size, faces, recs = exp.train["resolution"], {}, None
    for key, photos in found.items():
        for expression, path in photos.items():
            out = {d: exp.path("prepared", d, key, f"{expression}.png") for d in ("photos", "crops")}
            out["train"] = train_photo(exp, key, expression)
            item, fp = f"prepare/{key}/{expression}", fingerprint(sha256_of(path), size)
            bar.step(item)
            if state.done(item, fp, *out.values()):
                continue
            image = read_image(path)
            xy = face_landmarks(image, what=f"{key} {expression}").xy
            write_image(out["photos"], image)
            write_image(out["train"], image)
            write_image(out["crops"], face_crop(image, xy, size)[0])
            # the recognizers load only where a photo is prepared, not on a resumed run that prepares none
            recs = recs or recognizers(resolve_backend(exp.identity_backend, exp.arcface or None), exp.arcface or None)
            faces[key, expression] = Face(recs, rgb=image, xy=xy).kept(crop=bool(exp.lpips_weights))
            state.record(item, fp)
    return faces


# --- train -----------------------------------------------------------------------------------------

def dataset_digest(exp, found):
    return fingerprint(sorted((k, s, sha256_of(train_photo(exp, k, s))) for k, photos in found.items() for s in photos))


def net_path(exp, name):
    return exp.path("models", "controlnet", f"{name}.safetensors")


def work_path(exp, name):
    """The training run's folder: its saved states and train.json."""
    return exp.path("models", "controlnet", f"{name}_training")


def link_path(exp, folder, path):
    return exp.path("models", folder, os.path.basename(path))


def link_models(exp):
    """EXP/models/{checkpoints,controlnet}/ with links to the user's files: the embedded host's model folder."""
    for folder, path in (("checkpoints", exp.checkpoint), ("controlnet", exp.controlnet)):
        link = link_path(exp, folder, path)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if os.path.islink(link) and os.readlink(link) != path:
            os.unlink(link)
        if not os.path.lexists(link):
            os.symlink(path, link)


def train(exp, state, found, bar, quiet=False):
    """Each net once (python -m training in a child process that dies with this one); a killed
    training resumes from its own state when its fingerprint is unchanged, else starts over."""
    base = fingerprint(dataset_digest(exp, found), sha256_of(exp.checkpoint), sha256_of(exp.controlnet),
                       exp.train)
    for name, (mode, lo, hi) in exp.nets().items():
        out, work = net_path(exp, name), work_path(exp, name)
        fp = fingerprint(base, mode, lo, hi)
        item, started = f"train/{name}", f"train-started/{name}"
        bar.step(item)
        if state.done(item, fp, out):
            continue
        saved = [os.path.join(work, f) for f in ("training_state.torch", "training_state.torch.prev")]
        resume = state.items.get(started) == fp and any(os.path.isfile(p) for p in saved)
        if not resume:  # both are the experiment's own: preflight refused a user's file there
            for p in (out, work):
                shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else (os.path.exists(p) and os.unlink(p))
            state.record(started, fp)
        t = exp.train
        cmd = [sys.executable, "-m", "training", "--checkpoint", exp.checkpoint, "--controlnet", exp.controlnet,
               "--data", exp.path("prepared", "train"), "--out", out, "--mode", mode, "--t-min", str(lo),
               "--t-max", str(hi), "--batch-size", str(t["batch_size"]), "--resolution", str(t["resolution"]),
               "--seed", str(t["seed"]), "--checkpoint-every", str(t.get("checkpoint_every", 100))]
        cmd += ["--steps", str(t["steps"])] if t["steps"] else ["--epochs", str(t["epochs"])]
        cmd += ["--lr", repr(t["lr"])] if t["lr"] else []
        cmd += ["--resume", "--overwrite"] if resume else []  # the net may be written already, its record not
        cmd += ["--no-progress"] if quiet else ["--progress-line", "1"]  # under the experiment's own bar
        proc = subprocess.run(cmd, cwd=REPO, preexec_fn=host.die_with_parent, stdout=subprocess.PIPE,
                              stderr=None if not quiet else subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise InputError(f"training {name} stopped (exit {proc.returncode}): "
                             f"{(proc.stderr or '').strip()[-2000:] or 'see the messages above'}")
        state.record(item, fp)



# --- generate --------------------------------------------------------------------------------------

def settings_edit(exp, net, condition="pf"):
    """generate()'s edit for a shipped API workflow: the experiment's models and sampling settings (the video
    workflow's condition mode too), and the privacy gate bypassed (every image is scored: the gate's
    threshold would bias the privacy numbers)."""
    from ..comfy import workflow as wf
    g = exp.generate
    values = {
        "CheckpointLoaderSimple": {"ckpt_name": os.path.basename(exp.checkpoint)},
        "PalsyTimestepWindowControlNetLoader": {
            "control_net_name": f"{net}.safetensors" if net else os.path.basename(exp.controlnet),
            "t_lo": -1, "t_hi": -1},
        "ControlNetLoader": {"control_net_name": f"{net}.safetensors" if net else os.path.basename(exp.controlnet)},
        "KSampler": {"steps": g["steps"], "sampler_name": g["sampler"], "scheduler": g["scheduler"], "cfg": g["cfg"]},
        "EmptyLatentImage": {"width": g["resolution"], "height": g["resolution"]},
        "PalsyFaceCrop": {"size": g["resolution"]},
        "PalsyVideoConditions": {"size": g["resolution"], "mode": condition},
    }

    def edit(graph, object_info):
        for node in graph.values():
            for name, value in values.get(node["class_type"], {}).items():
                if name in node["inputs"] and not isinstance(node["inputs"][name], list):
                    node["inputs"][name] = value
        for nid in [n for n, node in graph.items() if node["class_type"] == "PalsyPrivacyGate"]:
            wf.bypass(graph, nid, object_info)
    return edit


def generate(exp, state, found, bar, servers=None, embedded=1):
    """Every run (method and ablation window) through the headless runner, on the given servers (URLs)
    or on `embedded` hosts started for it."""
    runs = exp.runs()
    photos = {k: {s: exp.path("prepared", "photos", k, f"{s}.png") for s in generated_from(exp, p)}
              for k, p in found.items()}
    donor_of = patient_donors(exp, found)
    todo = {}
    for name, (workflow, net, condition) in runs.items():
        fp = fingerprint(sha256_of(api_path(workflow)),
                         sha256_of(net_path(exp, net) if net else exp.controlnet),
                         sha256_of(exp.checkpoint), exp.generate,
                         sorted((k, e, sha256_of(p)) for k, ps in photos.items() for e, p in ps.items()),
                         condition == "codc" and sorted((k, sha256_of(d)) for k, d in donor_of.items()))
        if not state.done(f"generate/{name}", fp, exp.path("generated", name, MANIFEST)):
            todo[name] = fp
    repeats = twins(runs)
    made = [n for n in runs if n in todo and n not in repeats]
    if made:
        link_models(exp)
        with host.servers(servers, embedded, exp.path("models")) as urls:
            for name in made:
                bar.step(f"generate/{name}")
                generate_run(exp, name, runs[name], urls, photos, donor_of)
                state.record(f"generate/{name}", todo[name])
    for name in runs:
        if name not in made:
            bar.step(f"generate/{name}")
        if name in todo and name in repeats:
            copy_run(exp.path("generated", repeats[name]), exp.path("generated", name))
            state.record(f"generate/{name}", todo[name])


def copy_run(source, target):
    """A run's folder as a copy of another's, whole or not at all (both are the experiment's own)."""
    partial = target + ".partial"
    for old in (partial, target):
        shutil.rmtree(old, ignore_errors=True)
    shutil.copytree(source, partial)
    os.replace(partial, target)


def generate_run(exp, name, spec, urls, photos, donor_of):
    """One run's images through the one generate entry, one batch per donor (CODC: each patient's images
    on the donor prepare gave them)."""
    workflow, net, condition = spec
    groups = {}
    for key, donor in donor_of.items():
        groups.setdefault(donor if condition == "codc" else None, {})[key] = photos[key]
    failed = []
    for donor, group in groups.items():
        failed += generate_images(urls, api_path(workflow), group, exp.path("generated", name),
                                  edit=settings_edit(exp, net), name=workflow, identities=exp.generate["identities"],
                                  seeds=exp.generate["seeds"], donor=donor, settings={"run": name},
                                  progress=False, as_written={p for ps in group.values() for p in ps.values()})["failed"]
    if failed:
        raise InputError(f"generation of {name} failed:\n  " + "\n  ".join(failed))


def generated_images(exp, run):
    """[(patient key, source, identity_seed stem, path)] of one run's images, in sorted order."""
    root = exp.path("generated", run)
    out = []
    for patient in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        if os.path.isdir(os.path.join(root, patient)) and not patient.startswith("."):
            out += [(patient, source, os.path.splitext(os.path.basename(p))[0], p)
                    for source, p in generated_sources(os.path.join(root, patient)) if p.endswith(".png")]
    return sorted(out)


class Progress:
    """The whole experiment's bar (stage, item, ETA); each stage item calls step() once."""

    def __init__(self, total, quiet=False):
        from tqdm import tqdm
        self.bar = tqdm(total=total, unit="item", disable=quiet, dynamic_ncols=True, file=sys.stderr,
                        desc="experiment")
        self.started = False

    def step(self, item):
        if self.started:
            self.bar.update(1)
        self.started = True
        self.bar.set_postfix_str(item)

    def close(self):
        if self.started:
            self.bar.update(1)
        self.bar.close()


def count_items(exp, found):
    photos = sum(len(p) for p in found.values())
    return photos + len(exp.nets()) + 2 * len(exp.runs()) + 2

