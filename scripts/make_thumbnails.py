"""Thumbnails for the template browser: example_workflows/<title>.jpg beside its <title>.json; and the
registry's icon, docs/icon.png.

ComfyUI's frontend shows a custom node's template with /api/workflow_templates/<pack>/<NAME>.jpg.
Each thumbnail shows the workflow's inputs and its condition image, made by the core from the
sample photos (no generated faces: the repo ships no model weights).

    python scripts/make_thumbnails.py

tests/test_workflows.py renders them again and compares: a thumbnail the code would now draw otherwise fails.
"""
import os
import sys

import cv2

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


from palsysim.base.photos import read_image  # noqa: E402
from palsysim.base.workflows import template_path  # noqa: E402
from palsysim.condition.facecrop import face_crop  # noqa: E402
from palsysim.condition.make import make_condition  # noqa: E402
from palsysim.condition.sequence import sequence_conditions  # noqa: E402
from palsysim.demo import sample_photos  # noqa: E402
from palsysim.face.draw import sheet  # noqa: E402
from palsysim.face.landmarks import face_landmarks  # noqa: E402
from palsysim.face.synth import synth_expression_video, synth_palsy  # noqa: E402


def render():
    """{path: RGB image} of every thumbnail and the icon, made from the sample photos as they are now."""
    photos = {k: read_image(p) for k, p in sample_photos().items()}
    donor = photos["astronaut"]
    d_xy = face_landmarks(donor).xy
    patient, _ = synth_palsy(photos["grace_hopper"], face_landmarks(photos["grace_hopper"]), "left", 0.8)
    xy = face_landmarks(patient).xy
    crop = face_crop(patient, xy, 256)[0]
    pf = make_condition(patient, xy, "pf", size=256)
    codc = make_condition(patient, xy, "codc", donor, d_xy, size=256, rest_xy=xy)  # the patient's rest photo
    # The video's rest and apex frames (same crop box: frame 0's) over their CODC conditions.
    video = synth_expression_video(photos["grace_hopper"], face_landmarks(photos["grace_hopper"]), "grin", frames=3)
    frames, xys = [f for f, _ in video[:2]], [v for _, v in video[:2]]
    conditions = sequence_conditions(frames, xys, "codc", donor, d_xy, size=256)[0]
    sheets = {
        "palsy_pf": ([crop, pf], ["patient", "PF condition"]),
        "palsy_zero_shot": ([crop, pf], ["patient", "stock canny"]),
        "palsy_codc": ([crop, face_crop(donor, d_xy, 256)[0], codc], ["patient", "donor", "CODC condition"]),
        "palsy_yanagihara_grid": ([crop, pf] * 2, ["a man | rest", "condition", "a woman | rest", "condition"]),
        "palsy_video": ([face_crop(f, xys[0], 256)[0] for f in frames] + conditions,
                        ["frame 0 | rest", "apex | grin", "CODC rest", "CODC grin"]),
    }
    out = {template_path(name, ".jpg"): sheet(tiles, labels, tile_size=256,
                                              columns=2 if len(tiles) == 4 else len(tiles))
           for name, (tiles, labels) in sheets.items()}
    # The registry's icon (pyproject's Icon URL points at this file): the CODC condition, square.
    out[os.path.join(REPO, "docs", "icon.png")] = codc
    return out


def encode(path, image):
    """The file's bytes for an RGB image: a JPEG at quality 85 or a PNG, by the path's extension."""
    params = [cv2.IMWRITE_JPEG_QUALITY, 85] if path.endswith(".jpg") else []
    ok, data = cv2.imencode(os.path.splitext(path)[1], cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    assert ok, path
    return data.tobytes()


def main():
    for path, image in render().items():
        with open(path, "wb") as f:
            f.write(encode(path, image))
        print(path)


if __name__ == "__main__":
    main()
