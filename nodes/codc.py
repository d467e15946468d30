from comfy_api.latest import io

from ..palsysim.base.errors import InputError
from ..palsysim.condition import codc, facecrop
from ..palsysim.condition.edges import HIGH, LOW
from .comfy_internals import ProgressBar
from .common import Landmarks, Node, output, to_arrays, to_image

Organs = io.Custom("PALSY_ORGANS")


def _edge_inputs():
    return [
        io.Float.Input("low_threshold", default=LOW, min=1.0, max=1000.0, step=1.0,
                       tooltip="Canny low threshold (L1 Sobel magnitude of the RGB image, as control_sd15_canny's annotator)."),
        io.Float.Input("high_threshold", default=HIGH, min=1.0, max=1000.0, step=1.0),
        io.Float.Input("blur_sigma", default=0.0, min=0.0, max=5.0, step=0.1, tooltip="Gaussian blur first; 0 = none."),
    ]


def _check_count(items, n, what, source):
    if len(items) != n:
        raise InputError(f"{what} holds {len(items)} face(s) but {source} has {n} image(s): "
                         f"connect the landmarks found on that same image batch")


def _check_faces(landmarks, arrays):
    """One landmark set per image, each found on an image of that size (else boxes land on the wrong pixels)."""
    _check_count(landmarks, len(arrays), "landmarks", "image")
    for i, (a, face) in enumerate(zip(arrays, landmarks)):
        if tuple(face.image_size) != a.shape[:2]:
            raise InputError(f"landmarks {i + 1} were found on a {face.image_size[1]}x{face.image_size[0]} image but "
                             f"image {i + 1} is {a.shape[1]}x{a.shape[0]}: connect the landmarks found on that "
                             f"same image")


class OrganCropResize(Node):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PalsyOrganCropResize",
            display_name="Organ Crop + Resize (CODC)",
            category="PalsySim",
            description="Crops the patient's eyes with brows, nose and mouth, scaled isotropically to the donor's "
                        "organ sizes (the expression kept) and Canny-edged.",
            inputs=[
                io.Image.Input("image"), Landmarks.Input("landmarks"), Landmarks.Input("donor_landmarks"),
                Landmarks.Input("rest_landmarks", optional=True,
                                tooltip="The same patient's landmarks on their rest photo (one for all, or one per "
                                        "image): each organ moves on the donor's layout as far as it moved "
                                        "from rest. Unconnected: every organ on the donor's own place."),
                io.Float.Input("eye_margin", default=codc.EYE_MARGIN, min=0.0, max=1.0, step=0.01,
                               tooltip="Added around each eye with its brow, in inter-pupil distances."),
                io.Float.Input("nose_margin", default=codc.NOSE_MARGIN, min=0.0, max=1.0, step=0.01),
                io.Float.Input("mouth_margin", default=codc.MOUTH_MARGIN, min=0.0, max=1.0, step=0.01),
                *_edge_inputs(),
            ],
            outputs=[output(Organs, "organs"), output(io.Image, "preview")],
        )

    @classmethod
    def execute(cls, image, landmarks, donor_landmarks, eye_margin, nose_margin, mouth_margin,
                low_threshold, high_threshold, blur_sigma, rest_landmarks=None) -> io.NodeOutput:
        arrays = to_arrays(image)
        _check_faces(landmarks, arrays)
        donors = codc.pair_batches(len(arrays), len(donor_landmarks), "donor landmark set")
        rests = codc.pair_batches(len(arrays), len(rest_landmarks), "rest landmark set") if rest_landmarks else None
        bar, out = ProgressBar(len(arrays)), []
        for i, (a, face) in enumerate(zip(arrays, landmarks)):
            d = donor_landmarks[donors[i]]
            out.append(codc.organ_crop_resize(
                a, face.xy, d.xy, d.image_size, eye_margin, nose_margin, mouth_margin, low_threshold,
                high_threshold, blur_sigma, what=f"patient image {i + 1}", donor_what=f"donor {donors[i] + 1}",
                rest_xy=rest_landmarks[rests[i]].xy if rests else None))
            bar.update(1)
        return io.NodeOutput(out, to_image([codc.organs_preview(a, o) for a, o in zip(arrays, out)]))


class ContourReposition(Node):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PalsyContourReposition",
            display_name="Contour Reposition (CODC condition)",
            category="PalsySim",
            description="Places the patient's organ edges on the donor's face contour: the CODC ControlNet condition.",
            inputs=[
                Organs.Input("organs"), io.Image.Input("donor_image"), Landmarks.Input("donor_landmarks"),
                io.Combo.Input("contour", options=list(codc.CONTOURS), default="canny",
                               tooltip="canny: the donor photo's edges without its organs; oval: its face oval only."),
                *_edge_inputs(),
            ],
            outputs=[output(io.Image, "condition"), output(io.Image, "preview")],
        )

    @classmethod
    def execute(cls, organs, donor_image, donor_landmarks, contour, low_threshold, high_threshold,
                blur_sigma) -> io.NodeOutput:
        donors = to_arrays(donor_image, "donor_image")
        _check_count(donor_landmarks, len(donors), "donor_landmarks", "donor_image")
        pairs = codc.pair_batches(len(organs), len(donors), "donor image")
        bar, contours, conditions, previews = ProgressBar(len(organs)), {}, [], []
        for o, d in zip(organs, pairs):
            if d not in contours:  # one donor serving many patients is edged once
                contours[d] = codc.donor_contour(donors[d], donor_landmarks[d].xy, o.donor_boxes, contour,
                                                 low_threshold, high_threshold, blur_sigma)
            cond = codc.reposition(o, contours[d])
            conditions.append(cond[..., None].repeat(3, axis=2))
            previews.append(codc.condition_preview(donors[d], cond, o))
            bar.update(1)
        return io.NodeOutput(to_image(conditions), to_image(previews))


class PFCondition(Node):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PalsyPFCondition",
            display_name="PF Condition (face-crop Canny)",
            category="PalsySim",
            description="The plain PF ControlNet condition: Canny of the patient's square face crop (no donor).",
            inputs=[
                io.Image.Input("image"), Landmarks.Input("landmarks"),
                io.Int.Input("size", default=512, min=0, max=4096, step=8,
                             tooltip="Side of the square face crop (512: the paper's); 0 = the whole photo as it is "
                                     "(a Face Crop's output, as in the shipped workflows)."),
                io.Float.Input("margin", default=facecrop.FACE_MARGIN, min=0.0, max=1.0, step=0.01,
                               tooltip="Added on each side of the face oval, as a fraction of its larger side, when "
                                       f"size crops; with size 0 nothing is cropped, so it must stay "
                                       f"{facecrop.FACE_MARGIN} (set the margin on the Face Crop before it)."),
                *_edge_inputs(),
            ],
            outputs=[output(io.Image, "condition"), output(io.Image, "preview")],
        )

    @classmethod
    def validate_inputs(cls, **inputs):
        size, margin = inputs.get("size"), inputs.get("margin")
        if size == 0 and isinstance(margin, (int, float)) and margin != facecrop.FACE_MARGIN:
            return (f"margin={margin} does nothing with size 0 (the whole photo, nothing cropped): set the margin on "
                    f"the Face Crop that feeds this node and leave this one at {facecrop.FACE_MARGIN}, or give size "
                    f"to crop here")
        return super().validate_inputs(**inputs)

    @classmethod
    def execute(cls, image, landmarks, size, margin, low_threshold, high_threshold, blur_sigma) -> io.NodeOutput:
        arrays = to_arrays(image)
        _check_faces(landmarks, arrays)
        bar, conditions, previews = ProgressBar(len(arrays)), [], []
        for a, face in zip(arrays, landmarks):
            cond = facecrop.pf_condition(a, face.xy, size, margin, low_threshold, high_threshold, blur_sigma)
            conditions.append(cond[..., None].repeat(3, axis=2))
            previews.append(facecrop.pf_preview(a, face.xy, cond, size, margin))
            bar.update(1)
        return io.NodeOutput(to_image(conditions), to_image(previews))
