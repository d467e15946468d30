"""PalsyArcFaceDissimilarity and PalsyPrivacyGate: ArcFace identity checks against the patient."""
import folder_paths
import torch
from comfy_api.latest import io, ui
from comfy_execution.graph_utils import ExecutionBlocker

from ..palsysim import identity
from .common import model_file, output, to_arrays

THRESHOLD_TIP = (f"Pass only below this ArcFace cosine similarity to the patient. {identity.THRESHOLD} is "
                 f"ArcFace's same-person score at a 0.1% false-accept rate on LFW.")


def _inputs():
    return [
        io.Image.Input("image", tooltip="Generated faces (a batch)."),
        io.Image.Input("reference", tooltip="The patient: one photo or several of the same person."),
        io.Combo.Input("model_name", options=folder_paths.get_filename_list("insightface"),
                       tooltip="An ArcFace ONNX in models/insightface/, e.g. buffalo_l/w600k_r50.onnx."),
        io.Float.Input("threshold", default=identity.THRESHOLD, min=-1.0, max=1.0, step=0.01, tooltip=THRESHOLD_TIP),
    ]


def _check(image, reference, model_name, threshold):
    """similarity_to_reference rows and their report for the node inputs."""
    rows = identity.similarity_to_reference(to_arrays(image, "image"), to_arrays(reference, "reference"),
                                            model_file("insightface", model_name), threshold)
    return rows, identity.report(rows, threshold)


def _validate(model_name):
    # Our own check replaces the list check, so a missing file names its folder.
    try:
        model_file("insightface", model_name)
    except ValueError as e:
        return str(e)
    return True


class ArcFaceDissimilarity(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PalsyArcFaceDissimilarity",
            display_name="ArcFace Dissimilarity (privacy check)",
            category="PalsySim",
            description="ArcFace cosine similarity of each image to the patient (its most similar reference "
                        "photo). similarity/dissimilarity: the batch's worst case (its most patient-like image); "
                        "passed: every image is below the threshold; report: the per-image table.",
            inputs=_inputs(),
            is_output_node=True,  # it shows its report, so it runs even with nothing connected
            outputs=[output(io.Float, "similarity"), output(io.Float, "dissimilarity"),
                     output(io.Boolean, "passed"), output(io.String, "report")],
        )

    @classmethod
    def validate_inputs(cls, model_name):
        return _validate(model_name)

    @classmethod
    def execute(cls, image, reference, model_name, threshold) -> io.NodeOutput:
        rows, text = _check(image, reference, model_name, threshold)
        worst = max(r["similarity"] for r in rows)
        return io.NodeOutput(worst, 1.0 - worst, all(r["passed"] for r in rows), text, ui=ui.PreviewText(text))


class PrivacyGate(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PalsyPrivacyGate",
            display_name="Privacy Gate (ArcFace)",
            category="PalsySim",
            description="Passes on only the images whose ArcFace similarity to the patient is below the "
                        "threshold; the rest are held back. When every image is held back, nodes fed by "
                        "`images` (e.g. Save Image) do not run.",
            inputs=_inputs(),
            is_output_node=True,
            outputs=[output(io.Image, "images"), output(io.Int, "held_back"), output(io.String, "report")],
        )

    @classmethod
    def validate_inputs(cls, model_name):
        return _validate(model_name)

    @classmethod
    def execute(cls, image, reference, model_name, threshold) -> io.NodeOutput:
        rows, text = _check(image, reference, model_name, threshold)
        keep = [i for i, r in enumerate(rows) if r["passed"]]
        held = len(rows) - len(keep)
        # An empty IMAGE batch breaks most nodes; block them instead (silently: the report says why).
        images = image[torch.tensor(keep, dtype=torch.long)] if keep else ExecutionBlocker(None)
        return io.NodeOutput(images, held, text, ui=ui.PreviewText(text))
