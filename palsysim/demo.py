"""`make demo`: the main job on face photographs that ship inside installed packages."""
import json
import os

from .asymmetry import MEASURES, measure
from .codc import face_crop, make_condition
from .draw import landmarks_preview, sheet
from .images import read_image, write_image
from .landmarks import face_landmarks
from .synth import synth_palsy


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


def run_demo(out):
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
    with open(os.path.join(out, "measures.json"), "w") as f:
        json.dump(rows, f, indent=2)
    with open(os.path.join(out, "measures.md"), "w") as f:
        f.write(measures_table(rows))
    write_image(os.path.join(out, "sheet.png"), sheet(tiles, labels, columns=len(tiles), tile_size=320))
    print(measures_table(rows))
    print(f"demo: wrote landmark overlays, PF and CODC conditions, measures.json, measures.md and sheet.png "
          f"to {os.path.abspath(out)}")
