"""`make demo`: the main job on face photographs that ship inside installed packages."""
import json
import os

from .base.files import write_bytes
from .base.model_files import fetch_hint, find_model, model_dirs
from .base.photos import read_image, write_image
from .base.workflows import api_path
from .condition.facecrop import face_crop
from .condition.make import make_condition
from .face.asymmetry import MEASURES, measure
from .face.draw import landmarks_preview, sheet
from .face.landmarks import face_landmarks
from .face.synth import synth_palsy


def sample_photos():
    """Real, freely licensed face photographs that installed packages carry: name -> path."""
    import matplotlib
    import skimage
    return {
        "astronaut": os.path.join(os.path.dirname(skimage.__file__), "data", "astronaut.png"),
        "grace_hopper": os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg"),
    }


def measures_table(rows):
    """{name: measure() result} -> a Markdown table of right/left/difference per measure."""
    lines = ["| photo | measure | right | left | right - left | asymmetry % |", "|---|---|---|---|---|---|"]
    for name, m in rows.items():
        for k in MEASURES:
            a = m["asymmetry"][k]
            lines.append(f"| {name} | {k} | {m['right'][k]:.3f} | {m['left'][k]:.3f} | "
                         f"{a['difference']:+.3f} | {a['percent']:.1f} |")
    return "\n".join(lines) + "\n"


def identity_numbers(photos, backend, arcface):
    """The identity check on the sample photos: the healthy sample patient against her synthetic palsy
    (one person: must be recognisable) and against the donor (another person).
    Returns (backends used, {pair label: check() row}) or (None, reason) when no backend can run."""
    from .base.errors import InputError
    from .identity import check as identity
    pairs = {"grace_hopper vs patient_left_palsy (same person)": "patient_left_palsy",
             "grace_hopper vs astronaut donor (different person)": "astronaut"}
    try:
        used, rows = identity.check([photos[v] for v in pairs.values()], [photos["grace_hopper"]], backend, arcface)
    except InputError as e:
        return None, str(e)
    return used, dict(zip(pairs, rows))


def identity_lines(rows):
    """{label: check() row} -> Markdown table lines of each backend's number and the decision."""
    lines = ["| pair | ArcFace similarity | dlib distance | recognisable as the patient |", "|---|---|---|---|"]
    for label, r in rows.items():
        a = f"{r['arcface']['similarity']:.3f}" if r["arcface"] else "n/a"
        d = f"{r['dlib']['distance']:.3f}" if r["dlib"] else "n/a"
        verdict = f"n/a: {r['problem']}" if r["problem"] else ("no" if r["passed"] else "yes")
        lines.append(f"| {label} | {a} | {d} | {verdict} |")
    return lines


def run_demo(out, backend="auto"):
    os.makedirs(out, exist_ok=True)
    photos = {name: read_image(path) for name, path in sample_photos().items()}
    faces = {name: face_landmarks(img, what=name) for name, img in photos.items()}
    # The sample patient: Grace Hopper with a synthetic left-sided palsy (the subject's left).
    patient, _ = synth_palsy(photos["grace_hopper"], faces["grace_hopper"], side="left", severity=0.8)
    photos["patient_left_palsy"] = patient
    faces["patient_left_palsy"] = face_landmarks(patient, what="synthetic patient")
    write_image(os.path.join(out, "patient_left_palsy.png"), patient)

    tiles, labels, rows = [], [], {}
    for name, img in photos.items():
        preview = landmarks_preview(img, faces[name])
        write_image(os.path.join(out, f"{name}_landmarks.png"), preview)
        rows[name] = measure(faces[name].xy)
        tiles.append(face_crop(preview, faces[name].xy, 384)[0])
        labels.append(f"{name} smile {rows[name]['asymmetry']['smile_angle']['difference']:+.1f}")
    # The ControlNet conditions: the patient's own Canny map (PF), and the patient's organs on the
    # astronaut's face contour (CODC), which keeps the palsy and drops the patient's outline.
    patient_xy, donor_xy = faces["patient_left_palsy"].xy, faces["astronaut"].xy
    for mode in ("pf", "codc"):
        condition = make_condition(patient, patient_xy, mode, photos["astronaut"], donor_xy, size=512)
        write_image(os.path.join(out, f"condition_{mode}.png"), condition)
        tiles.append(condition)
        labels.append(f"condition {mode.upper()}")
    # Identity with no download: dlib's recogniser ships with the pack; ArcFace when its file is there.
    arcface = find_model(*DEMO_ARCFACE)
    used, id_rows = identity_numbers(photos, backend, arcface)
    if used is None:
        print(f"demo: no identity numbers: {id_rows}")
    else:
        text = "\n".join([f"Identity ({' and '.join(used)}; ArcFace same person at similarity >= 0.28, dlib at "
                           f"distance < 0.6):", ""] + identity_lines(id_rows)) + "\n"
        write_bytes(os.path.join(out, "identity.md"), text)
        print(text)
    # The full job: the CODC workflow headless on the sample patient, when the model files exist.
    for name, image, label in run_generation(out, patient, photos["astronaut"], patient_xy,
                                             backend if used else None):
        tiles.append(image)
        labels.append(label)
    with open(os.path.join(out, "measures.json"), "w") as f:
        json.dump(rows, f, indent=2)
    with open(os.path.join(out, "measures.md"), "w") as f:
        f.write(measures_table(rows))
    write_image(os.path.join(out, "sheet.png"), sheet(tiles, labels, columns=len(tiles), tile_size=320))
    print(measures_table(rows))
    print(f"demo: wrote landmark overlays, PF and CODC conditions, measures.json, measures.md and sheet.png "
          f"to {os.path.abspath(out)}")


def held_back(gen_dir):
    """{identity: why} of the demo's jobs whose images the privacy gate held back (the manifest's record)."""
    try:
        with open(os.path.join(gen_dir, "manifest.json"), encoding="utf-8") as f:
            jobs = json.load(f).get("jobs", {}).values()
    except OSError:
        return {}
    return {j["identity"]: "held back by the privacy gate: " + j.get("reports", {}).get("gate report", "").split("\n")[0]
            for j in jobs if j.get("status") == "held_back"}


# --- generation: the CODC workflow through the headless runner and the embedded ComfyUI ---------
DEMO_MODELS = {"checkpoints": "v1-5-pruned-emaonly.safetensors", "controlnet": "control_sd15_canny.pth"}
DEMO_ARCFACE = ("insightface", "buffalo_l/w600k_r50.onnx")
DEMO_IDENTITIES = ["a man", "a woman"]


def run_generation(out, patient, donor, patient_xy, backend="auto"):
    """Generate with palsy_codc.json; yields (name, image, label) for the sheet. Writes generated/
    (images + manifest) and generated.json / generated.md (privacy and fidelity per image).
    backend: the identity backend for the privacy measure; None when none can run."""
    from .base.errors import InputError
    from .measure.fidelity import expression_fidelity
    dirs = model_dirs()
    where = " or ".join(dirs) if dirs else "ComfyUI/models (set MODELS_DIR)"
    lacking = [(folder, name) for folder, name in DEMO_MODELS.items() if not find_model(folder, name)]
    missing = [f"{folder}/{name}" for folder, name in lacking]
    if missing:
        print(f"demo: generation skipped: missing {', '.join(missing)} under {where}. Put the SD1.5 checkpoint "
              f"in <models>/checkpoints/ and the canny ControlNet in <models>/controlnet/ (MODELS_DIR=<models>), "
              f"or download them: {fetch_hint(*[name for _, name in lacking])}")
        return
    arcface = find_model(*DEMO_ARCFACE)
    if backend is None:
        print(f"demo: no {DEMO_ARCFACE[0]}/{DEMO_ARCFACE[1]} under {where} and no dlib: the privacy gate is "
              f"bypassed and no privacy measure is written ({fetch_hint(DEMO_ARCFACE[1])} gets it)")
    import tempfile

    from .base.layout import find_patients
    from .comfy.generate import generate
    from .comfy.host import servers
    from .comfy.plan import slug
    gen_dir = os.path.join(out, "generated")
    with tempfile.TemporaryDirectory() as tmp:
        patients = os.path.join(tmp, "patients", "sample_patient")
        os.makedirs(patients)
        write_image(os.path.join(patients, "rest.png"), patient)
        write_image(os.path.join(tmp, "donor.png"), donor)
        workflow = api_path("palsy_codc")
        bypass = [] if backend else ["privacy gate"]
        try:
            with servers(embedded=1, models_dir=os.environ.get("MODELS_DIR")) as urls:
                # The template loads the fine-tuned net; the demo has only the stock one (zero-shot CODC).
                summary = generate(urls, workflow, find_patients(os.path.join(tmp, "patients")), gen_dir,
                                   overrides=[f"controlnet.control_net_name={DEMO_MODELS['controlnet']}"],
                                   bypasses=bypass, identities=DEMO_IDENTITIES, seeds=[1],
                                   donor=os.path.join(tmp, "donor.png"), settings={"bypassed": bypass})
        except (InputError, RuntimeError) as e:
            print(f"demo: generation failed: {e}")
            return
    if summary["failed"]:
        print("demo: some generations failed:\n  " + "\n  ".join(summary["failed"]))
    results, held = {}, held_back(gen_dir)
    for identity in DEMO_IDENTITIES:
        rel = f"sample_patient/rest/{slug(identity)}_1.png"
        path = os.path.join(gen_dir, rel)
        if not os.path.isfile(path):
            results[rel] = {"held_back": held.get(identity, "not made: see generated/manifest.json")}
            continue
        image = read_image(path)
        row = {}
        try:
            row["fidelity_at_rest"] = expression_fidelity(face_landmarks(image, what=rel).xy, patient_xy)["score"]
        except InputError as e:
            row["fidelity_at_rest"] = f"n/a: {e}"
        if backend:
            from .identity.check import check
            row["privacy"] = check([image], [patient], backend, arcface)[1][0]
        results[rel] = row
        score = row["fidelity_at_rest"]
        yield rel, image, f"{identity} fid {score:.2f}" if isinstance(score, float) else identity
    with open(os.path.join(out, "generated.json"), "w") as f:
        json.dump(results, f, indent=2)
    lines = ["| image | fidelity (at rest) | ArcFace similarity to patient | dlib distance to patient | passed |",
             "|---|---|---|---|---|"]
    for rel, row in results.items():
        if "held_back" in row:
            lines.append(f"| {rel} | n/a | n/a | n/a | no: {row['held_back']} |")
            continue
        p = row.get("privacy") or {}
        fid = row["fidelity_at_rest"]
        a = f"{p['arcface']['similarity']:.3f}" if p.get("arcface") else "n/a"
        d = f"{p['dlib']['distance']:.3f}" if p.get("dlib") else "n/a"
        lines.append(f"| {rel} | {fid if isinstance(fid, str) else f'{fid:.3f}'} | {a} | {d} | "
                     f"{p.get('problem') or p.get('passed', 'n/a')} |")
    shown = sum("held_back" not in r for r in results.values())
    if shown < len(results):
        lines += ["", f"{len(results) - shown} of {len(results)} images were not written: the privacy gate holds back "
                      f"an image that resembles the patient or shows no face (its report is in generated/manifest.json)."]
    with open(os.path.join(out, "generated.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
