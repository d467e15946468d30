"""Write the shipped UI workflows (example_workflows/<title>.json) from the specs below, laid out by stage
(scripts/workflow_layout.py).

    python scripts/build_workflows.py --embedded          # then: python scripts/workflow_to_api.py --embedded
    python scripts/build_workflows.py --server URL

Each workflow is a row of groups, one per stage (inputs with the prompt, conditions, generation,
privacy gate and save), their title bars level so that no link crosses one, with their nodes in columns inside;
the note sits at the top of the inputs. Heights follow the frontend's own node sizes (slots, widgets,
multiline boxes) plus room for what a node shows (a photo, a preview, a report); widths let every widget
show its label and value uncut, and never go below what the frontend widens a node to (its title), one
width a column; so PF, zero-shot and CODC fit a 1600x1000 window at a zoom where the frontend still draws text.
Node sockets and widget order come from the server's /object_info, so the files load as if made in the
frontend. Titles are what the headless runner fills.
"""
import argparse
import json
import os
import sys

import requests

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from workflow_layout import CONDITIONS, GENERATION, INPUTS, PRIVACY, Graph, build  # noqa: E402

from palsysim.base.vocabulary import ITEMS  # noqa: E402
from palsysim.base.workflows import (PROMPT, STOCK_CONTROLNET, TRAIN_COMMAND, TRAINED_CONTROLNET,  # noqa: E402
                                     TRAINED_WINDOW, template_path)

CHECKPOINT, ARCFACE = "v1-5-pruned-emaonly.safetensors", "buffalo_l/w600k_r50.onnx"


def face(g, who, photo, col, out="IMAGE"):
    """Landmarks -> face crop of node `photo`'s output `out`; returns the crop node's key."""
    g.add(f"{who} landmarks", "PalsyFaceLandmarks", f"{who} landmarks", CONDITIONS, col)
    g.link(f"{who} landmarks", "image", photo, out)
    g.add(f"{who} crop", "PalsyFaceCrop", f"{who} face crop", CONDITIONS, col)
    g.link(f"{who} crop", "image", photo, out)
    g.link(f"{who} crop", "landmarks", f"{who} landmarks", "landmarks")
    return f"{who} crop"


def generation(g, condition, identity, controlnet, prompt_col, batch=1):
    """The prompt (an input: in column prompt_col of the inputs, after the identity that fills it), the
    ControlNet (file `controlnet`, through the window loader) and sampling in two columns, the models and
    encoders, then apply, sample, decode and the report of the steps that fell in the window, from the run."""
    g.add("prompt", "StringReplace", "prompt", INPUTS, prompt_col, string=PROMPT, find="<identity>")
    g.link("prompt", "replace", *identity)
    g.add("checkpoint", "CheckpointLoaderSimple", "checkpoint", GENERATION, 0, ckpt_name=CHECKPOINT)
    g.add("controlnet", "PalsyTimestepWindowControlNetLoader", "controlnet", GENERATION, 0, control_net_name=controlnet,
          apply="everywhere", t_lo=-1, t_hi=-1)
    g.add("positive", "CLIPTextEncode", "positive", GENERATION, 0)
    g.link("positive", "clip", "checkpoint", "CLIP")
    g.link("positive", "text", "prompt", "STRING")
    g.add("negative", "CLIPTextEncode", "negative", GENERATION, 0, text="")
    g.link("negative", "clip", "checkpoint", "CLIP")
    g.add("latent", "EmptyLatentImage", "latent", GENERATION, 0, width=512, height=512, batch_size=batch)
    g.add("apply", "ControlNetApplyAdvanced", "apply controlnet", GENERATION, 1, strength=1.0, start_percent=0.0,
          end_percent=1.0)
    for side in ("positive", "negative"):
        g.link("apply", side, side, "CONDITIONING")
    g.link("apply", "control_net", "controlnet", "control_net")
    g.link("apply", "image", *condition)
    g.link("apply", "vae", "checkpoint", "VAE")
    g.add("sampler", "KSampler", "sampler", GENERATION, 1, seed=1, cfg=7.5)
    g.link("sampler", "model", "checkpoint", "MODEL")
    g.link("sampler", "positive", "apply", "positive")
    g.link("sampler", "negative", "apply", "negative")
    g.link("sampler", "latent_image", "latent", "LATENT")
    g.add("decode", "VAEDecode", "decode", GENERATION, 1)
    g.link("decode", "samples", "sampler", "LATENT")
    g.link("decode", "vae", "checkpoint", "VAE")
    # Which steps fell in the window, read from the run (no sampler setting tied to the loader).
    g.add("window steps", "PalsyWindowSteps", "controlnet window steps", GENERATION, 1)
    g.link("window steps", "control_net", "controlnet", "control_net")
    g.link("window steps", "samples", "sampler", "LATENT")
    g.add("window report", "PreviewAny", "controlnet report", GENERATION, 1)
    g.link("window report", "source", "window steps", "report")


def gate_and_save(g, prefix, report=True):
    """report: a Preview as Text of the gate's report (the grid shows its sheet's, which names each row's)."""
    g.add("gate", "PalsyPrivacyGate", "privacy gate", PRIVACY, 0, model_name=ARCFACE)
    g.link("gate", "image", "decode", "IMAGE")
    g.link("gate", "reference", "patient crop", "crop")
    if report:
        g.add("gate report", "PreviewAny", "gate report", PRIVACY, 0)  # how many passed, and each image's score
        g.link("gate report", "source", "gate", "report")
    g.add("output", "PalsySaveAnonymized", "output", PRIVACY, 0, filename_prefix=prefix)
    g.link("output", "images", "gate", "images")
    g.link("output", "identity_check", "gate", "checked")
    g.link("output", "method_summary", "controlnet", "summary")


def single(info, mode):
    g = Graph(info)
    g.add("patient", "LoadImage", "patient", INPUTS, image="patient.png")
    if mode == "codc":
        g.add("rest", "LoadImage", "patient rest", INPUTS, 1, image="rest.png")
        g.add("donor", "LoadImage", "donor", INPUTS, 1, image="donor.png")
    g.add("identity", "PrimitiveString", "identity", INPUTS, 0 if mode == "codc" else 1, value="a man")
    crop = face(g, "patient", "patient", 0)
    if mode == "codc":
        g.note_at = (INPUTS, 1)  # under the rest and donor photos: the first column holds the identity and prompt
        face(g, "donor", "donor", 0)
        g.add("organs", "PalsyOrganCropResize", "organ crop + resize", CONDITIONS, 1)
        g.link("organs", "image", crop, "crop")
        g.link("organs", "landmarks", crop, "crop_landmarks")
        g.link("organs", "donor_landmarks", "donor crop", "crop_landmarks")
        g.add("rest landmarks", "PalsyFaceLandmarks", "patient rest landmarks", CONDITIONS, 0)
        g.link("rest landmarks", "image", "rest", "IMAGE")
        g.link("organs", "rest_landmarks", "rest landmarks", "landmarks")
        g.add("condition", "PalsyContourReposition", "CODC condition", CONDITIONS, 1)
        g.link("condition", "organs", "organs", "organs")
        g.link("condition", "donor_image", "donor crop", "crop")
        g.link("condition", "donor_landmarks", "donor crop", "crop_landmarks")
    else:
        g.add("condition", "PalsyPFCondition", "PF condition", CONDITIONS, 0, size=0)
        g.link("condition", "image", crop, "crop")
        g.link("condition", "landmarks", crop, "crop_landmarks")
    g.add("show", "PalsyPreview", "condition preview", CONDITIONS, 1 if mode == "codc" else 0)
    g.link("show", "images", "condition", "preview")
    # PF and CODC (the paper's Methods 1 and 2) sample with the fine-tuned net, zero-shot with the stock one.
    generation(g, ("condition", "condition"), ("identity", "STRING"),
               STOCK_CONTROLNET if mode == "zero_shot" else TRAINED_CONTROLNET, 0 if mode == "codc" else 1)
    gate_and_save(g, f"palsysim/{mode}")
    return g


def grid(info):
    """One chain over the ten item photos as a batch; it runs once per identity line (list mapping)."""
    photos = Graph(info)
    for i, item in enumerate(ITEMS):  # two rows of five, in the grading order
        photos.add(f"patient {item}", "LoadImage", f"patient {item}", INPUTS, i % 5, image=f"{item}.png")
    photos.add("photos", "PalsyYanagiharaBatch", "photos (the ten items)", INPUTS, 5)
    for item in ITEMS:
        photos.link("photos", item, f"patient {item}", "IMAGE")
    g = Graph(info)
    # One node for the ten photos: the whole grid then fits the window at a zoom where the frontend draws text.
    g.add_subgraph("photos", "patient photos (the ten items)", INPUTS, 0, "the ten item photos", photos,
                   [("images", "photos", "images"), ("items", "photos", "items")])
    g.add("identities", "PalsyLines", "identities", INPUTS, 0, text="a man\na woman\nan elderly woman")
    crop = face(g, "patient", "photos", 0, "images")
    g.add("condition", "PalsyPFCondition", "PF condition", CONDITIONS, 0, size=0)
    g.link("condition", "image", crop, "crop")
    g.link("condition", "landmarks", crop, "crop_landmarks")
    g.add("show", "PalsyPreview", "condition preview", CONDITIONS, 0)
    g.link("show", "images", "condition", "preview")
    generation(g, ("condition", "condition"), ("identities", "lines"), STOCK_CONTROLNET, 0, batch=len(ITEMS))
    gate_and_save(g, "palsysim/grid", report=False)
    # The sheet, its report and its save beside the gate and the images' save: the graph stays as tall as the
    # generation.
    g.add("sheet", "PalsyLabelledGrid", "grid", PRIVACY, 1, columns=len(ITEMS))
    g.link("sheet", "images", "gate", "slots")
    g.link("sheet", "column_labels", "photos", "items")
    g.link("sheet", "row_labels", "identities", "labels")
    g.link("sheet", "reports", "gate", "report")  # the gate runs once per identity: the sheet names each row's
    g.add("gate report", "PreviewAny", "gate report", PRIVACY, 1)  # every row's outcome, then each row's table
    g.link("gate report", "source", "sheet", "report")
    g.add("grid output", "PalsySaveAnonymized", "grid output", PRIVACY, 1, filename_prefix="palsysim/grid_sheet")
    g.link("grid output", "images", "sheet", "grid")
    g.link("grid output", "method_summary", "controlnet", "summary")
    g.link("grid output", "identity_check", "gate", "checked")  # every face on the sheet passed; the rest are grey
    return g




def video(info):
    """A patient's expression video -> one CODC condition a frame (frame 0's crop, smoothed landmarks) -> all
    frames sampled as one batch from one noise, each taking frame 0's keys and values (one face) -> gate ->
    video save. The latent's size and frame count are the conditions'."""
    g = Graph(info)
    # Once a file is chosen the frontend shows it 214 px wide at its aspect: room for a 3:4 portrait clip.
    g.add("video", "LoadVideo", "patient video", INPUTS, shows=290, file="patient_expression.mp4")
    g.add("components", "GetVideoComponents", "frames + fps", INPUTS)  # its audio (a voice) goes nowhere
    g.link("components", "video", "video", "VIDEO")
    g.add("donor", "LoadImage", "donor", INPUTS, 1, image="donor.png")
    g.add("identity", "PrimitiveString", "identity", INPUTS, 1, value="a man")
    g.add("patient landmarks", "PalsyFaceLandmarks", "patient landmarks", CONDITIONS, 0)
    g.link("patient landmarks", "image", "components", "images")
    g.add("smooth", "PalsySmoothLandmarks", "smoothed landmarks", CONDITIONS, 0)
    g.link("smooth", "landmarks", "patient landmarks", "landmarks")
    g.link("smooth", "fps", "components", "fps")
    g.add("patient crop", "PalsyFaceCrop", "patient face crop", CONDITIONS, 0)  # the gate's reference: every frame
    g.link("patient crop", "image", "components", "images")
    g.link("patient crop", "landmarks", "smooth", "smoothed_landmarks")
    g.add("donor landmarks", "PalsyFaceLandmarks", "donor landmarks", CONDITIONS, 1)
    g.link("donor landmarks", "image", "donor", "IMAGE")
    g.add("condition", "PalsyVideoConditions", "video conditions", CONDITIONS, 1, mode="codc", size=512)
    g.link("condition", "frames", "components", "images")
    g.link("condition", "landmarks", "smooth", "smoothed_landmarks")
    g.link("condition", "donor_image", "donor", "IMAGE")
    g.link("condition", "donor_landmarks", "donor landmarks", "landmarks")
    g.add("show", "PalsyPreview", "condition preview", CONDITIONS, 1)
    g.link("show", "images", "condition", "conditions")
    generation(g, ("condition", "conditions"), ("identity", "STRING"), TRAINED_CONTROLNET, 1)
    # The conditions' size and count set the latent's; with the two video nodes under the latent, the graph
    # stays narrow enough for Fit View to draw text.
    g.add("size", "GetImageSize", "frame size and count", CONDITIONS, 0, shows=60)  # it shows the sizes
    g.link("size", "image", "condition", "conditions")
    for key in ("width", "height", "batch_size"):
        g.link("latent", key, "size", key)
    g.add("same noise", "PalsySameNoise", "same noise", GENERATION, 0)
    g.link("same noise", "latent", "latent", "LATENT")
    g.link("sampler", "latent_image", "same noise", "same_noise_latent")
    g.add("one face", "PalsyCrossFrameAttention", "cross-frame attention", GENERATION, 0)
    g.link("one face", "model", "checkpoint", "MODEL")
    g.link("one face", "conditions", "condition", "conditions")  # for attend_to flow_guided
    g.link("sampler", "model", "one face", "patched_model")
    g.add("gate", "PalsyPrivacyGate", "privacy gate", PRIVACY, 0, model_name=ARCFACE)
    g.link("gate", "image", "decode", "IMAGE")
    g.link("gate", "reference", "patient crop", "crop")
    g.add("gate report", "PreviewAny", "gate report", PRIVACY, 0)  # which frames passed, and each one's score
    g.link("gate report", "source", "gate", "report")
    g.add("output", "PalsySaveAnonymizedVideo", "output", PRIVACY, 0, filename_prefix="palsysim/video")
    g.link("output", "frames", "gate", "images")
    g.link("output", "fps", "components", "fps")
    g.link("output", "held_back", "gate", "held_back")  # one frame held back holds back the video
    g.link("output", "gate_report", "gate", "report")
    g.add("save report", "PreviewAny", "save report", PRIVACY, 0)
    g.link("save report", "source", "output", "report")
    return g


NOTE_END = ("\n\nModels: see README (*Models*). Every image passes the privacy gate before the save, which "
            "writes pixels, the method summary and that the image passed the identity check, nothing else. "
            "Headless: `python -m palsysim run "
            "workflows/api/{api}.json --patients DIR --out OUT`.")

# What PF and CODC load, and how to make it: the training line of README's "Fine-tuning the ControlNet".
TRAINED = (f"\n\n**ControlNet**: `{TRAINED_CONTROLNET}`, fine-tuned on timesteps "
           f"{TRAINED_WINDOW[0]}..{TRAINED_WINDOW[1]} "
           f"(the file records the window; the loader applies the net at every step, as the paper does). Make it "
           f"first, in the pack's folder, `models/` being your ComfyUI's models folder and `DATA` your photos as "
           f"`DATA/<patient>/<expression>/*.png` (README: *Fine-tuning the ControlNet*):\n\n`{TRAIN_COMMAND}`"
           f"\n\nUntil then, `{STOCK_CONTROLNET}` in *controlnet* gives the zero-shot baseline.")

WORKFLOWS = {
    "palsy_pf": (lambda info: single(info, "pf"),
                 "**PF**: patient photo -> landmarks -> face crop (512, as in training) -> PF condition (Canny "
                 "of the crop) -> SD1.5 + the fine-tuned ControlNet -> privacy gate -> save." + TRAINED),
    "palsy_codc": (lambda info: single(info, "codc"),
                   "**CODC**: the patient's eyes, nose and mouth edges, scaled to the donor, on the donor's "
                   "face contour (both face-cropped): each organ where the donor has it, moved as far as the "
                   "patient's moved from their *rest* photo (the same photo at rest) -> SD1.5 + the fine-tuned "
                   "ControlNet (trained on PF conditions: the paper's Method 2) -> privacy gate -> save. The donor "
                   "is a healthy, consenting non-patient." + TRAINED),
    "palsy_zero_shot": (lambda info: single(info, "zero_shot"),
                        f"**Zero-shot baseline**: the PF condition with the stock `{STOCK_CONTROLNET}` (no "
                        "fine-tuning), applied at every step; the saved summary says so."),
    "palsy_yanagihara_grid": (grid,
                              "**Yanagihara grid**: one photo per item, one batch, one PF chain that runs once "
                              "per line of *identities*; the gate passes what no longer resembles the patient "
                              "and the grid shows held-back tiles in grey. The ten photos are inside *patient "
                              "photos (the ten items)*: open it (the icon at its top right) to pick them."),
    "palsy_video": (video,
                    "**Expression video**: a patient's expression video (e.g. rest -> grin -> rest) -> landmarks "
                    "per frame, smoothed over time -> one CODC condition per frame on the donor's face contour "
                    "(frame 0's crop: organs move only as the face moves) -> SD1.5 + the fine-tuned ControlNet, "
                    "every frame in "
                    "one batch from one noise, each taking frame 0's appearance (cross-frame attention) -> "
                    "privacy gate -> mp4 at the video's frame rate. Files: the patient video (input folder), "
                    "a donor photo (a healthy, consenting non-patient), models below. The whole video is one "
                    "batch: a few seconds at 512 px need a GPU's memory; trim long clips first." + TRAINED),
}
# The video's save writes pixels only (no summary), and its patients are videos.
VIDEO_NOTE_END = ("\n\nModels: see README (*Models*). Every frame passes the privacy gate before the save; one "
                  "frame held back holds back the video. The mp4 holds pixels and the codec's settings only: no "
                  "audio, no file name, no metadata. Headless: `python -m palsysim run workflows/api/palsy_video.json "
                  "--patients DIR --donor PHOTO --out OUT`, each expression a video (DIR/<patient>/<item>.mp4).")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--server")
    where.add_argument("--embedded", action="store_true")
    args = ap.parse_args(argv)
    if args.embedded:
        from palsysim.comfy.host import EmbeddedHost
        with EmbeddedHost() as host:
            info = requests.get(host.url + "/object_info", timeout=60).json()
    else:
        info = requests.get(args.server.rstrip("/") + "/object_info", timeout=60).json()
    for name, (make, note) in WORKFLOWS.items():
        end = VIDEO_NOTE_END if name == "palsy_video" else NOTE_END
        wf = build(make(info), name, note + end.replace("{api}", name))
        path = template_path(name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(json.dumps(wf, indent=1, ensure_ascii=False) + "\n")
        print("wrote", os.path.relpath(path, REPO))


if __name__ == "__main__":
    main()
