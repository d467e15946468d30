"""PalsyArcFaceDissimilarity and PalsyPrivacyGate: identity checks against the patient (ArcFace, dlib, or both)."""
import folder_paths
import torch
from comfy_api.latest import io, ui

from ..palsysim.face.draw import held_back_tile
from ..palsysim.identity import arcface
from ..palsysim.identity import check as identity
from ..palsysim.identity import dlib_face as identity_dlib
from .comfy_internals import ExecutionBlocker
from .common import Node, model_file, output, to_arrays, to_image

THRESHOLD_TIP = (f"Pass only below this ArcFace cosine similarity to the patient. {arcface.THRESHOLD} is "
                 f"ArcFace's same-person score at a 0.1% false-accept rate on LFW.")
DLIB_TIP = (f"Pass only at or above this dlib descriptor distance to the patient. {identity_dlib.THRESHOLD} is "
            f"dlib's documented same-person decision (99.38% on LFW).")
BACKEND_TIP = ("auto: ArcFace when its ONNX file is present, else dlib's recogniser (installs with the pack); "
               "arcface; dlib; both: an image passes only what both pass.")


def _inputs():
    return [
        io.Image.Input("image", tooltip="Generated faces (a batch)."),
        io.Image.Input("reference", tooltip="The patient: one photo or several of the same person."),
        io.Combo.Input("model_name", options=arcface_names(),
                       tooltip="An ArcFace ONNX in models/insightface/, e.g. buffalo_l/w600k_r50.onnx "
                               "(not needed for backend dlib; auto uses dlib when it is missing)."),
        io.Float.Input("threshold", default=arcface.THRESHOLD, min=-1.0, max=1.0, step=0.01, tooltip=THRESHOLD_TIP),
        io.Combo.Input("backend", options=list(identity.BACKENDS), default="auto", optional=True, tooltip=BACKEND_TIP),
        io.Float.Input("dlib_threshold", default=identity_dlib.THRESHOLD, min=0.0, max=2.0, step=0.01,
                       optional=True, tooltip=DLIB_TIP),
    ]


# InstantID and ReActor keep insightface's packs one folder down, models/insightface/models/buffalo_l/: the
# shipped workflows' buffalo_l/w600k_r50.onnx finds the file there too, and lists under that name.
KEPT_BY_OTHERS = "models/"


def arcface_names():
    names = folder_paths.get_filename_list("insightface")
    return names + [n[len(KEPT_BY_OTHERS):] for n in names
                    if n.startswith(KEPT_BY_OTHERS) and n[len(KEPT_BY_OTHERS):] not in names]


def arcface_file(model_name):
    """model_file of the ArcFace ONNX chosen, in models/insightface/ or where other packs keep it."""
    if (isinstance(model_name, str) and model_name and folder_paths.get_full_path("insightface", model_name) is None
            and folder_paths.get_full_path("insightface", KEPT_BY_OTHERS + model_name)):
        model_name = KEPT_BY_OTHERS + model_name
    return model_file("insightface", model_name, "model_name")


def _arcface_path(model_name):
    try:
        return arcface_file(model_name)
    except ValueError:
        return None


def _check(image, reference, model_name, threshold, backend, dlib_threshold, gate=False):
    """check() rows and their report for the node inputs."""
    # A null model_name (a prompt's, or an empty model list's) is fine where dlib may be used instead.
    path = (arcface_file(model_name) if backend in ("arcface", "both")
            else _arcface_path(model_name))
    used, rows = identity.check(to_arrays(image, "image"), to_arrays(reference, "reference"), backend, path,
                                threshold, dlib_threshold)
    return used, rows, identity.report(used, rows, threshold, dlib_threshold, gate)


def _validate(model_name, backend="auto"):
    # Our own check replaces the list checks, so a missing file names its folder.
    if backend not in identity.BACKENDS:
        return f"backend {backend!r} is not one of {', '.join(identity.BACKENDS)}"
    try:
        if backend in ("arcface", "both"):
            arcface_file(model_name)
        if backend == "auto":
            identity.resolve_backend("auto", _arcface_path(model_name))
        if backend in ("dlib", "both") and identity_dlib.unavailable():
            return f"the dlib identity backend is missing: {identity_dlib.unavailable()}"
    except ValueError as e:
        return str(e)
    return True


class ArcFaceDissimilarity(Node):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PalsyArcFaceDissimilarity",
            display_name="Identity Dissimilarity (privacy check: ArcFace / dlib)",
            category="PalsySim",
            description="Identity of each image against the patient (its most similar reference photo). "
                        "similarity/dissimilarity: the batch's worst case, as ArcFace cosine (with backend dlib "
                        "alone: 1 - dlib distance, and dissimilarity = the distance); passed: every image passes "
                        "every backend used (an image without a face never passes); report: the per-image table.",
            inputs=_inputs(),
            is_output_node=True,  # it shows its report, so it runs even with nothing connected
            outputs=[output(io.Float, "similarity"), output(io.Float, "dissimilarity"),
                     output(io.Boolean, "passed"), output(io.String, "report")],
        )

    @classmethod
    def own_checks(cls, inputs):
        return {"model_name": lambda name: _validate(name, inputs.get("backend") or "auto")}

    @classmethod
    def execute(cls, image, reference, model_name, threshold, backend="auto",
                dlib_threshold=identity_dlib.THRESHOLD) -> io.NodeOutput:
        used, rows, text = _check(image, reference, model_name, threshold, backend, dlib_threshold)
        checked = [r for r in rows if r["problem"] is None]
        if not checked:  # nothing could be checked: report the worst case
            worst = 1.0
        elif "arcface" in used:
            worst = max(r["arcface"]["similarity"] for r in checked)
        else:
            worst = 1.0 - min(r["dlib"]["distance"] for r in checked)
        return io.NodeOutput(worst, 1.0 - worst, all(r["passed"] for r in rows), text, ui=ui.PreviewText(text))


class PrivacyGate(Node):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PalsyPrivacyGate",
            display_name="Privacy Gate (ArcFace / dlib)",
            category="PalsySim",
            description="Passes on only the images that no longer resemble the patient (ArcFace similarity below "
                        "its threshold, dlib distance at or above its own, or both); the rest are held back, "
                        "images without a face too (counted and reported, never an error). When every image is "
                        "held back, nodes fed by `images` (e.g. Save Image) do not run. `slots` keeps every "
                        "image's place, a grey 'held back' tile for each one held back, for grids and previews.",
            inputs=_inputs(),
            is_output_node=True,
            outputs=[output(io.Image, "images"), output(io.Int, "held_back"), output(io.String, "report"),
                     output(io.Image, "slots"),
                     output(io.String, "checked", tooltip="What the passed images may say of themselves: connect "
                                                          "to Save Image (anonymized)'s identity_check.")],
        )

    @classmethod
    def own_checks(cls, inputs):
        return {"model_name": lambda name: _validate(name, inputs.get("backend") or "auto")}

    @classmethod
    def execute(cls, image, reference, model_name, threshold, backend="auto",
                dlib_threshold=identity_dlib.THRESHOLD) -> io.NodeOutput:
        used, rows, text = _check(image, reference, model_name, threshold, backend, dlib_threshold, gate=True)
        keep = [i for i, r in enumerate(rows) if r["passed"]]
        held = len(rows) - len(keep)
        # An empty IMAGE batch breaks most nodes; block them instead (silently: the report says why).
        images = image[torch.tensor(keep, dtype=torch.long)] if keep else ExecutionBlocker(None)
        slots = image.clone()
        tile = to_image([held_back_tile(image.shape[1], image.shape[2])])[0]
        for i in set(range(len(rows))) - set(keep):
            slots[i, ..., :3] = tile
        # Which of the batch passed, for the headless runner to name each saved image by its place in the
        # batch; one record per run of the node (ComfyUI joins a list-mapped node's records in run order).
        shown = {**ui.PreviewText(text).as_dict(), identity.KEPT_KEY: [{"batch": len(rows), "kept": keep}]}
        return io.NodeOutput(images, held, text, slots, identity.passed_stamp(used, threshold, dlib_threshold), ui=shown)
