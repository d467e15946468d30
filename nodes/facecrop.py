"""PalsyFaceCrop: the landmark face crop that training and `python -m palsysim condition` use.

Conditions made from the cropped photo and its carried landmarks equal the CLI's pixel for pixel,
and ComfyUI gets a square hint at the sampling size instead of centre-cropping a raw photo.
"""
from comfy_api.latest import io

from ..palsysim.condition import facecrop
from .codc import _check_faces
from .comfy_internals import ProgressBar
from .common import Landmarks, Node, output, to_arrays, to_image


class FaceCrop(Node):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PalsyFaceCrop",
            display_name="Face Crop (landmarks, as in training)",
            category="PalsySim",
            description="Square crop around the face oval, resized to `size` (512: the paper's and training's), "
                        "with the landmarks carried into the crop (no second detection).",
            inputs=[
                io.Image.Input("image"), Landmarks.Input("landmarks"),
                io.Int.Input("size", default=512, min=64, max=4096, step=8, tooltip="Side of the square crop."),
                io.Float.Input("margin", default=facecrop.FACE_MARGIN, min=0.0, max=1.0, step=0.01,
                               tooltip="Added on each side of the face oval, as a fraction of its larger side."),
            ],
            outputs=[output(io.Image, "crop"), output(Landmarks, "crop_landmarks")],
        )

    @classmethod
    def execute(cls, image, landmarks, size, margin) -> io.NodeOutput:
        arrays = to_arrays(image)
        _check_faces(landmarks, arrays)
        bar, crops, faces = ProgressBar(len(arrays)), [], []
        for a, face in zip(arrays, landmarks):
            crop, matrix = facecrop.face_crop(a, face.xy, size, margin)
            crops.append(crop)
            faces.append(facecrop.crop_face(face, matrix, size))
            bar.update(1)
        return io.NodeOutput(to_image(crops), faces)
