import folder_paths
from comfy_api.latest import io

from ..palsysim.face import draw
from ..palsysim.face.landmarks import TASK_FILE, face_landmarks
from .comfy_internals import ProgressBar
from .common import Landmarks, Node, output, to_arrays, to_image


class FaceLandmarks(Node):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PalsyFaceLandmarks",
            display_name="Face Landmarks (MediaPipe, 478)",
            category="PalsySim",
            description="MediaPipe Face Mesh landmarks of the chosen face of each photo, with a preview.",
            inputs=[
                io.Image.Input("image"),
                io.Int.Input("max_faces", default=1, min=1, max=16, tooltip="How many faces the detector looks for; face_index ranks those by size."),
                io.Float.Input("min_confidence", default=0.5, min=0.05, max=1.0, step=0.05),
                io.Int.Input("face_index", default=0, min=0, max=15, tooltip="Which face to keep, 0 = the largest."),
                io.Combo.Input("backend", options=["auto", "legacy", "tasks"], default="auto",
                               tooltip=f"tasks needs models/mediapipe/{TASK_FILE}; auto uses legacy where installed."),
            ],
            outputs=[output(Landmarks, "landmarks"), output(io.Image, "preview")],
        )

    @classmethod
    def execute(cls, image, max_faces, min_confidence, face_index, backend) -> io.NodeOutput:
        task_file = folder_paths.get_full_path("mediapipe", TASK_FILE)
        arrays = to_arrays(image)
        bar, faces, previews = ProgressBar(len(arrays)), [], []
        for i, a in enumerate(arrays):
            face = face_landmarks(a, max_faces, min_confidence, face_index, backend, task_file,
                                  what=f"image {i + 1} of {len(arrays)}")
            faces.append(face)
            previews.append(draw.landmarks_preview(a, face))
            bar.update(1)
        return io.NodeOutput(faces, to_image(previews))
