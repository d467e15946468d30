"""What a batch runs, decided before any server is asked: the patients' photos found on disk, the
jobs (patient x expression x identity x seed, or patient x seed for a grid workflow), each job's
prompt filled in by node titles, where each returned image is written, and the manifest that
records what is done.

The runner fills in nodes by their titles (the API file's _meta.title; the UI shows the same):
`patient` / `patient <expression>` (LoadImage), `donor` (LoadImage), `identity` (PrimitiveString),
`identities` (PalsyLines, a grid's), `output` and `grid output` (the save nodes); every
`seed`/`noise_seed` input gets the job's seed. Photos are re-encoded to PNG without metadata and
named by their content hash, so nothing here hands a server a patient's file name or EXIF.

A video workflow's patient loader is a LoadVideo titled `patient` or `patient video`: each job is
one video, re-encoded to a fresh mp4 without metadata (container tags can carry names and dates)
and named by the hash of its frames; the save node titled `output` gives OUT/.../<identity>_<seed>.mp4.
"""
import hashlib
import io
import json
import os
import re

from ..base.errors import InputError
from ..base.files import write_bytes
from ..base.layout import first_photo, is_video, source_item
from ..base.outputs import unique_names
from ..base.photos import read_image
from ..base.vocabulary import ITEMS
from ..identity.check import KEPT_KEY
from . import workflow as wf

SEED_INPUTS = ("seed", "noise_seed")
VIDEO_TITLES = ("patient", "patient video")  # a LoadVideo's titles the runner fills with the job's video
VIDEO_OUTPUT = "palsysim_video"  # PalsySaveAnonymizedVideo's key in /history outputs
DISPLAY_ONLY = ("PalsyPreview", "PreviewImage", "MaskPreview")  # nodes that only show images in the UI
MANIFEST = "manifest.json"


def slug(text):
    """A readable file-name part: letters and digits of any script kept (男性 stays 男性), the rest _."""
    return re.sub(r"\W+", "_", text).strip("_").lower() or "identity"


def content_name(png):
    """The name an upload has on the server: its content hash (so the same photo is one file)."""
    return hashlib.sha256(png).hexdigest()[:24] + ".png"


def identity_names(identities, known):
    """{identity: file-name part}: `known` (from the manifest) kept, new identities given slugs that
    no known or other new name repeats, ignoring case ("A man", "a-man" -> a_man, a_man_2)."""
    names = dict(known)
    new = [i for i in dict.fromkeys(identities) if i not in names]
    unique = unique_names(list(names.values()) + [slug(i) for i in new])[len(names):]
    names.update(zip(new, unique))
    return names


def video_mp4(path):
    """A video file -> (mp4 bytes with no metadata, its upload name): the frames decoded and encoded
    afresh in memory, so no byte of the user's file (its tags) reaches a server. Named by the hash of
    the frames and rate, which does not depend on the encoder's version: a rerun finds the job done."""
    from ..base.video_files import frames_digest, read_video, video_bytes
    frames, fps = read_video(path)
    return video_bytes(frames, fps), frames_digest(frames, fps)[:24] + ".mp4"


def video_slot(graph):
    """The LoadVideo (API graph) the runner fills with each job's video, or None: a photo workflow."""
    return next((nid for nid in graph if graph[nid]["class_type"] == "LoadVideo"
                 and wf.title(graph, nid) in VIDEO_TITLES), None)


def takes_videos(path):
    """True for a workflow file (API or UI format) whose patient loader is a LoadVideo; read from the
    file alone, so that a mismatch with the patients is said before any server starts."""
    data = wf.load_json(path)
    if wf.is_ui_format(data):
        nodes = [(n.get("type"), n.get("title", "")) for n in data["nodes"] if isinstance(n, dict)]
    else:
        nodes = [(n.get("class_type"), (n.get("_meta") or {}).get("title", "")) for n in data.values()
                 if isinstance(n, dict)]
    return any(kind == "LoadVideo" and t in VIDEO_TITLES for kind, t in nodes)


def refuse_mismatch(patients, videos, expressions=None):
    """A video workflow takes only videos and a photo workflow only photos: name the sources of the
    other kind (among `expressions`) and what to do."""
    wrong = [f"{p}/{os.path.basename(path) if '/' not in s else source_item(s) + '/'}"
             for p, every in patients.items() for s, path in every.items()
             if (expressions is None or source_item(s) in expressions) and is_video(path) != videos]
    if not wrong:
        return
    more = f" and {len(wrong) - 3} more" if len(wrong) > 3 else ""
    if videos:
        raise InputError(f"this is a video workflow (a LoadVideo titled 'patient video'): it takes one video per "
                         f"job, <patient>/<expression>.mp4|webm|mov, but these are photos: {', '.join(wrong[:3])}"
                         f"{more}: run a photo workflow (palsy_pf.json, palsy_codc.json) on photos, pick the items "
                         f"that are videos with --expressions, or give videos")
    raise InputError(f"this is a photo workflow (a LoadImage titled 'patient'): it takes photos, but these are "
                     f"videos: {', '.join(wrong[:3])}{more}: run the video workflow (workflows/api/palsy_video.json) "
                     f"on videos, pick the items that are photos with --expressions, or give photos")


def photo_png(path):
    """A photo file -> PNG bytes with no metadata (EXIF, text, ICC): pixels only, upright.

    Decoded by the one photo reader, so an upload holds the pixels the CLI and training see (its
    size limit and messages included)."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(read_image(path)).save(buf, format="PNG")
    return buf.getvalue()


def upload_of(path):
    """A photo or video file -> (its upload's bytes, its name on the server): photo_png's PNG under its
    content_name, or video_mp4's."""
    if is_video(path):
        return video_mp4(path)
    png = photo_png(path)
    return png, content_name(png)


def titled(graph, prefix, kind=None):
    """{suffix: node id} of nodes (of class_type kind) titled `prefix` (suffix "") or `prefix <suffix>`."""
    out = {}
    for nid in graph:
        t = wf.title(graph, nid)
        if kind and graph[nid]["class_type"] != kind:
            continue
        if t == prefix:
            out[""] = nid
        elif t.startswith(prefix + " "):
            out[t[len(prefix) + 1:]] = nid
    return out


class Plan:
    """The prompts a batch needs: one per job (patient x expression x identity x seed), or for a
    grid workflow (LoadImage nodes titled `patient <expression>`) one per patient x seed. A single
    workflow may also have a LoadImage titled `patient <item>` (CODC's `patient rest`): each job
    fills it with that item's photo of the same patient."""

    def __init__(self, graph, patients, identities=None, seeds=None, known_names=None, expressions=None):
        # Image previews write what they show (the patient's face crop) into the server's temp/, which
        # /view serves to anyone; a headless run shows nothing, so it runs none.
        self.graph = {nid: n for nid, n in graph.items() if n["class_type"] not in DISPLAY_ONLY}
        self.video = video_slot(self.graph)
        self.slots = titled(graph, "patient", "LoadImage")
        if self.video:
            self.slots[""] = self.video
        self.grid = "" not in self.slots
        if not self.slots or (self.grid and set(self.slots) - set(ITEMS)):
            raise InputError("the workflow has no LoadImage titled 'patient' (or 'patient <expression>' with "
                             f"expressions from {', '.join(ITEMS)}): title the node the runner should fill")
        self.grid_items = [e for e in ITEMS if e in self.slots] if self.grid else []
        self.ident = titled(graph, "identity", "PrimitiveString").get("")
        self.lines = titled(graph, "identities", "PalsyLines").get("")
        if self.grid:
            if self.lines is None:
                raise InputError("this grid workflow has no Lines node titled 'identities' (one identity per line): "
                                 "title the node the runner should fill")
            own = [t.strip() for t in graph[self.lines]["inputs"]["text"].splitlines() if t.strip()]
        else:
            own = [graph[self.ident]["inputs"]["value"]] if self.ident else []
        self.identities = list(identities or own or ["person"])
        seed_values = [v for n in graph.values() for k, v in n["inputs"].items() if k in SEED_INPUTS and not isinstance(v, list)]
        self.seeds = list(seeds) if seeds else seed_values[:1] or [0]
        self.names = identity_names(self.identities, known_names or {})
        self.output = titled(self.graph, "output").get("")
        self.grid_output = titled(self.graph, "grid output").get("")
        if self.output is None:
            raise InputError("the workflow has no save node titled 'output'")
        self.jobs = []
        refuse_mismatch(patients, bool(self.video), expressions)
        if self.grid and expressions:
            raise InputError("a grid workflow takes a photo of every item in one job: leave out --expressions")
        # One photo fills each other slot: a grid's items, a single workflow's `patient rest`.
        slots = self.grid_items if self.grid else sorted(set(self.slots) - {""})
        firsts = {p: {e: first_photo(every, e) for e in slots} for p, every in patients.items()}
        lacking = [(p, e) for p, f in firsts.items() for e, path in f.items() if path is None]
        if lacking:
            raise InputError(f"the workflow's LoadImage {', '.join(repr('patient ' + e) for e in slots)} takes each "
                             f"patient's photo of that item: {'; '.join(f'{p} has no {e} photo' for p, e in lacking)}: "
                             f"add <patient>/{lacking[0][1]}.png (or a {lacking[0][1]}/ folder of photos)")
        for patient, every in patients.items():
            for seed in self.seeds:
                if self.grid:
                    self.jobs.append({"key": f"{patient}/grid/{seed}", "patient": patient, "seed": seed,
                                      "photos": firsts[patient]})
                    continue
                for source, path in every.items():
                    expression = source_item(source)
                    if expressions is not None and expression not in expressions:
                        continue
                    for identity in self.identities:
                        self.jobs.append({"key": f"{patient}/{source}/{self.names[identity]}_{seed}",
                                          "patient": patient, "expression": expression, "source": source,
                                          "identity": identity, "seed": seed,
                                          "photos": {source: path, **firsts[patient]}})

    def prompt(self, job, upload):
        """The graph for one job; upload(path) -> the name the server knows the photo by."""
        g = json.loads(json.dumps(self.graph))
        for suffix, nid in self.slots.items():
            g[nid]["inputs"]["file" if nid == self.video else "image"] = upload(job["photos"][suffix or job["source"]])
        if self.grid:
            g[self.lines]["inputs"]["text"] = "\n".join(self.identities)
        elif self.ident:
            g[self.ident]["inputs"]["value"] = job["identity"]
        for n in g.values():
            for k in SEED_INPUTS:
                if k in n["inputs"] and not isinstance(n["inputs"][k], list):
                    n["inputs"][k] = job["seed"]
        return g

    def targets(self, job, outputs):
        """[(relative path, image ref, record)] for a finished job's /history outputs."""
        out, p, seed = [], job["patient"], job["seed"]
        if self.video:
            videos = outputs.get(self.output, {}).get(VIDEO_OUTPUT, [])
            for k, ref in enumerate(videos):
                extra = f"_{k + 1}" if len(videos) > 1 else ""
                out.append((f"{p}/{job['source']}/{self.names[job['identity']]}_{seed}{extra}"
                            f"{os.path.splitext(ref['filename'])[1]}", ref,
                            {"patient": p, "expression": job["expression"], "identity": job["identity"], "seed": seed}))
            return out
        images = outputs.get(self.output, {}).get("images", [])
        for (row, i, batch), ref in zip(self.places(self.output, outputs, len(images)), images):
            if self.grid:
                e, identity, extra = self.grid_items[i], self.identities[row], ""
            else:
                e, identity = job["source"], job["identity"]
                extra = f"_{row * batch + i + 1}" if batch > 1 or row else ""
            out.append((f"{p}/{e}/{self.names[identity]}_{seed}{extra}.png", ref,
                        {"patient": p, "expression": source_item(e), "identity": identity, "seed": seed}))
        if self.grid and self.grid_output:
            for ref in outputs.get(self.grid_output, {}).get("images", [])[:1]:
                out.append((f"{p}/grid_{seed}.png", ref, {"patient": p, "seed": seed, "grid": self.identities}))
        return out

    def places(self, nid, outputs, n):
        """[(run, index in its batch, batch size)] of each of the n images save node nid wrote: from the
        privacy gate's record where the gate feeds it (held-back images leave gaps), else in order, a
        grid's run being one identity's batch of every item."""
        records = self.gate_records(nid, outputs)
        if records is not None:
            places = [(r, i, rec["batch"]) for r, rec in enumerate(records) for i in rec["kept"]]
        elif self.grid:
            places = [(*divmod(k, len(self.grid_items)), len(self.grid_items)) for k in range(n)]
        else:
            places = [(0, k, n) for k in range(n)]
        rows = 1 + max((r for r, _, _ in places), default=0)
        if len(places) != n or (self.grid and (rows > len(self.identities) or
                                               any(b != len(self.grid_items) for _, _, b in places))):
            raise InputError(f"{wf.describe(self.graph, nid)} gave {n} images, which do not match "
                             f"{len(self.identities)} identities x {len(self.grid_items) or 1} photos"
                             f"{' (the gate kept ' + str(len(places)) + ')' if records is not None else ''}")
        return places

    def gate_records(self, nid, outputs):
        """The privacy gate's records [{"batch", "kept"}] where a gate feeds node nid, else None."""
        src = self.graph[nid]["inputs"].get("images")
        if isinstance(src, list) and self.graph[src[0]]["class_type"] == "PalsyPrivacyGate":
            return outputs.get(src[0], {}).get(KEPT_KEY)
        return None

    def held_back(self, outputs):
        """How many images the privacy gate held back from the output node in a job's /history outputs
        (a video workflow: 1 when the save node held the video back, as it does for one held-back frame)."""
        if self.video:
            return int(not outputs.get(self.output, {}).get(VIDEO_OUTPUT))
        return sum(r["batch"] - len(r["kept"]) for r in self.gate_records(self.output, outputs) or [])


class Manifest:
    """OUT/manifest.json: what was asked and, per job, its status, images and reports. Rewritten
    whole after every job, so a killed run leaves the last complete state."""

    def __init__(self, out, settings):
        self.path = os.path.join(out, MANIFEST)
        self.data = {"settings": settings, "names": {}, "jobs": {}}
        if os.path.exists(self.path):
            try:
                with open(self.path, encoding="utf-8") as f:
                    old = json.load(f)
            except (OSError, ValueError) as e:
                old = e
            if not (isinstance(old, dict) and isinstance(old.get("jobs"), dict)
                    and all(isinstance(j, dict) for j in old["jobs"].values())):
                why = f"{old.__class__.__name__}: {old}"[:200] if isinstance(old, Exception) else "not a runner manifest"
                raise InputError(f"{self.path} cannot be read ({why}): move it away to start afresh, or give "
                                 f"another --out") from None
            self.data["jobs"] = old["jobs"]
            self.data["names"] = old.get("names") if isinstance(old.get("names"), dict) else {}

    def stale(self, key, made_from, out):
        """None if the job is done from exactly these inputs and its images are on disk; else why not
        ("" for a job never done)."""
        job = self.data["jobs"].get(key)
        if not job or job.get("status") not in ("done", "held_back"):
            return ""
        if not all(os.path.isfile(os.path.join(out, p)) for p in job.get("images", [])):
            return "image missing"
        old = job.get("made_from") or {}
        changed = [REASONS[k] for k in REASONS if old.get(k) != made_from.get(k)]
        return ", ".join(changed) or None

    def record(self, key, **entry):
        self.data["jobs"][key] = entry
        write_bytes(self.path, (json.dumps(self.data, indent=2) + "\n").encode())


# What a job is made from, and how a change in each is reported when the job is redone.
REASONS = {"workflow": "workflow or --set/--bypass changed", "photos": "photo changed",
           "donor": "donor changed", "identity": "identity changed", "seed": "seed changed"}


def graph_hash(graph):
    return hashlib.sha256(json.dumps(graph, sort_keys=True).encode()).hexdigest()[:24]


def check_donor_face(donor):
    """A donor photo without a face would fail every job, one by one: refuse it once, up front."""
    from ..face.landmarks import face_landmarks
    face_landmarks(read_image(donor), what=f"--donor {os.path.basename(donor)}")


def prepare_graph(path, client, overrides=(), bypasses=()):
    """Load a workflow file (API or UI format) and apply --bypass and --set."""
    data = wf.load_json(path)
    graph = wf.to_api(data, client.object_info) if wf.is_ui_format(data) else data
    if not isinstance(graph, dict) or not all(isinstance(n, dict) and "class_type" in n for n in graph.values()):
        raise InputError(f"{path} is neither an API-format nor a UI-format ComfyUI workflow")
    for ref in bypasses:
        wf.bypass(graph, ref, client.object_info)
    for text in overrides:
        wf.set_input(graph, *wf.parse_override(text), client.object_info)
    return graph
