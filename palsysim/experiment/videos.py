"""The experiment's video section: the patients' expression videos (PATIENTS/<patient>/<expression>.mp4|webm|mov)
through each [video] method's net, frame by frame, scored over time by evaluate's video metrics.

EXP/
  prepared/photos/patient_k/<expression>.mp4      re-encoded without the file's tags (evaluate reads them there)
  generated/video_<method>/patient_k/<expression>/<identity>_<seed>.mp4
  evaluation/video_<method>/                      evaluate's videos.csv, video_records.csv, report.md, row.json

Every item is fingerprinted as the image stages' are: unchanged inputs and settings are skipped.
"""
import json
import os

from ..base.errors import InputError
from ..base.files import sha256_of, write_bytes
from ..base.layout import find_patients, is_video
from ..base.video_files import read_video, write_video
from ..base.workflows import api_path
from ..comfy import host
from ..comfy.generate import generate as generate_videos
from ..comfy.plan import MANIFEST
from .stages import fingerprint, link_models, net_path, patient_donors, settings_edit


def patient_videos(exp, found):
    """{"patient_k": {expression: video path}} of the patients (numbered as stages.patients numbers them,
    found) who have expression videos; {} where none has. A folder of videos without photos is refused: the
    patients are their photos (training, the image methods, CODC's rest), the videos go beside them."""
    keys = dict(zip(sorted(find_patients(exp.patients)), found))
    out, alone = {}, []
    for name, sources in find_patients(exp.patients, videos=True).items():
        videos = {s: p for s, p in sources.items() if is_video(p)}
        if name not in keys:
            alone.append(os.path.join(exp.patients, name))
        elif videos:
            out[keys[name]] = videos
    if alone:
        raise InputError("; ".join(f"{folder} holds videos but no photo" for folder in alone) + ": a patient is "
                         "numbered and trained on by their photos, and their videos go beside them; add its photos "
                         f"(at least {os.path.join(alone[0], 'rest.png')}), or move the folder out of [data] patients")
    return out


def prepared(exp, key, expression):
    return exp.path("prepared", "photos", key, f"{expression}.mp4")


def prepare(exp, state, videos, bar):
    """Each patient video decoded and written again as an mp4 with no tags, beside the prepared photos."""
    for key, sources in videos.items():
        for expression, path in sources.items():
            item, fp = f"prepare/{key}/{expression}", fingerprint(sha256_of(path))
            bar.step(item)
            if not state.done(item, fp, prepared(exp, key, expression)):
                write_video(prepared(exp, key, expression), *read_video(path))
                state.record(item, fp)


def generate(exp, state, found, videos, bar, servers=None, embedded=1):
    """Every video run (config.Experiment.video_runs) through the one generate entry, with the video workflow:
    its method's net and condition mode, the experiment's sampling settings, one batch per donor."""
    todo, donor_of = {}, patient_donors(exp, found)
    inputs = {k: {e: prepared(exp, k, e) for e in vs} for k, vs in videos.items()}
    for run, (workflow, net, condition) in exp.video_runs().items():
        fp = fingerprint(sha256_of(api_path(workflow)), sha256_of(net_path(exp, net) if net else exp.controlnet),
                         sha256_of(exp.checkpoint), exp.generate, condition,
                         sorted((k, e, sha256_of(p)) for k, ps in inputs.items() for e, p in ps.items()),
                         sorted((k, d and sha256_of(d)) for k, d in donor_of.items() if k in inputs))
        bar.step(f"generate/{run}")
        if not state.done(f"generate/{run}", fp, exp.path("generated", run, MANIFEST)):
            todo[run] = fp
    if not todo:
        return
    if not any(donor_of.values()):
        raise InputError("[data] donors is empty: the video workflow places the patient's organs on a donor's face "
                         "(CODC) and reads one in PF mode too: give a donor photo, or set [video] methods = []")
    link_models(exp)
    with host.servers(servers, embedded, exp.path("models")) as urls:
        for run, fp in todo.items():
            workflow, net, condition = exp.video_runs()[run]
            failed = []
            for donor in dict.fromkeys(donor_of[k] for k in inputs):
                group = {k: inputs[k] for k in inputs if donor_of[k] == donor}
                failed += generate_videos(urls, api_path(workflow), group, exp.path("generated", run),
                                          edit=settings_edit(exp, net, condition), name=workflow,
                                          identities=exp.generate["identities"], seeds=exp.generate["seeds"],
                                          donor=donor, settings={"run": run}, progress=False,
                                          as_written={p for ps in group.values() for p in ps.values()})["failed"]
            if failed:
                raise InputError(f"generation of {run} failed:\n  " + "\n  ".join(failed))
            state.record(f"generate/{run}", fp)


def generated(exp, run):
    root = exp.path("generated", run)
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if is_video(f))


def evaluate(exp, state, videos, bar):
    """Per video run: evaluate's video scores against the prepared patient videos -> the report's rows."""
    from ..measure import evaluate as ev
    rows = []
    for run in exp.video_runs():
        bar.step(f"evaluate/{run}")
        out, made = exp.path("evaluation", run), generated(exp, run)
        fp = fingerprint([sha256_of(p) for p in made],
                         sorted(sha256_of(prepared(exp, k, e)) for k, vs in videos.items() for e in vs),
                         exp.identity_backend, exp.arcface and sha256_of(exp.arcface))
        row_file = os.path.join(out, "row.json")
        if not state.done(f"evaluate/{run}", fp, row_file):
            result = ev.evaluate([f"{run}={exp.path('generated', run)}"], exp.path("prepared", "photos"),
                                 exp.arcface or None, out, backend=exp.identity_backend)
            row = result["video_rows"][0]
            write_bytes(row_file, json.dumps(table_row(row, len(made)), sort_keys=True) + "\n")
            state.record(f"evaluate/{run}", fp)
        with open(row_file, encoding="utf-8") as f:
            rows.append({"run": run, **json.load(f)})
    return rows


def table_row(row, generated):
    """evaluate's per-method video row -> the report's: counts, pass rate, every video metric's table columns."""
    from ..measure.metrics import metrics
    shown = [k for m in metrics("video") for k in m.table if k in row["measured"]]
    return {"generated": generated, "images": row["images"], "no_face": row["skipped"], "unpaired": row["unpaired"],
            "passed": row["pass_rate"], **{f"{k}_{s}": row[f"{k}_{s}"] for k in shown for s in ("mean", "std")}}
