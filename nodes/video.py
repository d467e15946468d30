"""Pseudo-palsy expression videos: smoothed landmarks, sequence conditions, one noise and one appearance for
every frame, and a video save that writes no metadata. Frames travel as ComfyUI's IMAGE batch (core
Get Video Components gives it from a LoadVideo); the frame rate as a FLOAT."""
import os

import folder_paths
import numpy as np
from comfy_api.latest import io, ui

from ..palsysim.base.errors import InputError
from ..palsysim.base.photos import to_rgb_uint8
from ..palsysim.base.video_files import write_video
from ..palsysim.condition import codc, sequence
from ..palsysim.controlnet.crossframe import MODES, attention_patch
from ..palsysim.face import smoothing
from ..palsysim.face.landmarks import Face
from .comfy_internals import with_attn1_patch
from .common import Landmarks, Node, output, to_arrays, to_image
from .save import check_prefix


def _filter_inputs():
    return [
        io.Float.Input("fps", default=30.0, min=1.0, max=240.0, step=1.0, tooltip="Frames per second of the video."),
        io.Float.Input("min_cutoff", default=smoothing.MIN_CUTOFF, min=0.01, max=30.0, step=0.1,
                       tooltip="Hz: smoothing of still landmarks (lower = smoother, more lag)."),
        io.Float.Input("beta", default=smoothing.BETA, min=0.0, max=1000.0, step=0.5,
                       tooltip="How fast the cutoff rises with speed (higher = less lag on fast motion)."),
        io.Float.Input("d_cutoff", default=smoothing.D_CUTOFF, min=0.01, max=30.0, step=0.1),
    ]


class SmoothLandmarks(Node):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PalsySmoothLandmarks", display_name="Smooth Landmarks over Time", category="PalsySim/video",
            description="One-Euro filter over a video's landmarks (one face per frame, in order): removes "
                        "detector jitter without lagging real motion.",
            inputs=[Landmarks.Input("landmarks"), *_filter_inputs()],
            outputs=[output(Landmarks, "smoothed_landmarks")],
        )

    @classmethod
    def execute(cls, landmarks, fps, min_cutoff, beta, d_cutoff) -> io.NodeOutput:
        if not landmarks:
            raise InputError("landmarks hold no face: connect Face Landmarks run on the video's frames")
        if len({f.image_size for f in landmarks}) > 1:
            raise InputError("the landmarks were found on frames of different sizes: give the frames of one video")
        xy = smoothing.one_euro(np.stack([f.xy for f in landmarks]), fps, min_cutoff, beta, d_cutoff)
        faces = [Face(np.concatenate([p.astype(np.float32), f.points[:, 2:]], axis=1), f.image_size, f.face_index,
                      f.faces_found) for p, f in zip(xy, landmarks)]
        return io.NodeOutput(faces)


class VideoConditions(Node):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PalsyVideoConditions", display_name="Video Conditions (PF / CODC)", category="PalsySim/video",
            description="One condition per frame with frame 0's face crop and the rest landmarks' organ scales for the "
                        "whole video, so organs move only as the face moves.",
            inputs=[
                io.Image.Input("frames"), Landmarks.Input("landmarks"),
                io.Combo.Input("mode", options=["codc", "pf"], default="codc"),
                io.Image.Input("donor_image", optional=True), Landmarks.Input("donor_landmarks", optional=True),
                Landmarks.Input("rest_landmarks", optional=True,
                                tooltip="The patient's rest photo's landmarks; unconnected: the first frame's."),
                io.Int.Input("size", default=512, min=64, max=2048, step=64, tooltip="Side of the square face crop."),
                io.Combo.Input("contour", options=list(codc.CONTOURS), default="canny"),
            ],
            outputs=[output(io.Image, "conditions")],
        )

    @classmethod
    def execute(cls, frames, landmarks, mode, size, contour, donor_image=None, donor_landmarks=None,
                rest_landmarks=None) -> io.NodeOutput:
        arrays = [np.clip(a, 0.0, 1.0) for a in to_arrays(frames, "frames")]
        if len(landmarks) != len(arrays):
            raise InputError(f"{len(landmarks)} landmark sets for {len(arrays)} frames: connect the landmarks found "
                             f"on these frames")
        donor = donor_xy = None
        if mode == "codc":
            if donor_image is None or not donor_landmarks:
                raise InputError("codc needs donor_image and donor_landmarks: connect a healthy donor's photo")
            donor, donor_xy = to_arrays(donor_image, "donor_image")[0], donor_landmarks[0].xy
        rest = rest_landmarks[0].xy if rest_landmarks else None
        conditions, _ = sequence.sequence_conditions(arrays, np.stack([f.xy for f in landmarks]), mode, donor,
                                                     donor_xy, rest, size, contour)
        return io.NodeOutput(to_image([np.repeat(c[..., None], 3, axis=2) for c in conditions]))


class CrossFrameAttention(Node):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PalsyCrossFrameAttention", display_name="Cross-Frame Attention (video)", category="PalsySim/video",
            description="Every frame's self-attention takes keys and values from other frames of the batch, so all "
                        "frames of a video get one face: the first frame's (Text2Video-Zero; frame 0 unchanged), "
                        "the first and the previous frame's (Tune-A-Video), or the previous frame's gathered along "
                        "the optical flow between the conditions (flow_guided; frame 0 unchanged).",
            inputs=[io.Model.Input("model"),
                    io.Combo.Input("attend_to", options=list(MODES), default=MODES[0]),
                    io.Image.Input("conditions", optional=True,
                                   tooltip="The video's conditions, one a frame: flow_guided follows their motion.")],
            outputs=[output(io.Model, "patched_model")],
        )

    @classmethod
    def execute(cls, model, attend_to, conditions=None) -> io.NodeOutput:
        patch = attention_patch(attend_to, None if conditions is None else to_arrays(conditions, "conditions"))
        return io.NodeOutput(with_attn1_patch(model, patch))


class SameNoise(Node):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PalsySameNoise", display_name="Same Noise for Every Frame", category="PalsySim/video",
            description="Every latent of the batch starts from the first one's noise (KSampler draws noise per "
                        "batch_index; all are set to 0).",
            inputs=[io.Latent.Input("latent")],
            outputs=[output(io.Latent, "same_noise_latent")],
        )

    @classmethod
    def execute(cls, latent) -> io.NodeOutput:
        return io.NodeOutput({**latent, "batch_index": [0] * latent["samples"].shape[0]})


class SaveAnonymizedVideo(Node):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PalsySaveAnonymizedVideo", display_name="Save Video (anonymized)", category="PalsySim/video",
            description="Writes the frames as an H.264 mp4 or VP9 webm with no metadata (Save Image (anonymized) "
                        "keeps the frames too); connect the privacy gate's held_back: one held-back frame holds "
                        "back the whole video.",
            inputs=[
                io.Image.Input("frames"),
                io.Float.Input("fps", default=30.0, min=1.0, max=240.0, step=1.0),
                io.String.Input("filename_prefix", default="palsysim/video"),
                io.Combo.Input("format", options=["mp4", "webm"], default="mp4"),
                io.Int.Input("held_back", default=0, min=0, max=100000, optional=True,
                             tooltip="From the privacy gate: frames that failed the identity check."),
                io.String.Input("gate_report", default="", optional=True, multiline=True,
                                tooltip="From the privacy gate: shown when the video is held back."),
            ],
            outputs=[output(io.String, "report")],
            is_output_node=True,
        )

    @classmethod
    def own_checks(cls, inputs):
        return {"filename_prefix": check_prefix}

    @classmethod
    def execute(cls, frames, fps, filename_prefix, format, held_back=0, gate_report="") -> io.NodeOutput:
        problem = check_prefix(filename_prefix)
        if problem:
            raise InputError(problem)
        arrays = to_arrays(frames, "frames")
        rgbs = [to_rgb_uint8(np.clip(a, 0.0, 1.0), f"frame {i + 1} of {len(arrays)}") for i, a in enumerate(arrays)]
        if held_back:
            text = (f"video held back: {held_back} of {held_back + len(rgbs)} frames failed the identity check, so "
                    f"nothing was saved\n\n{gate_report}").strip()
            return io.NodeOutput(text, ui=ui.PreviewText(text))
        folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, folder_paths.get_output_directory(), rgbs[0].shape[1], rgbs[0].shape[0])
        file = f"{name}_{counter:05}_.{format}"
        write_video(os.path.join(folder, file), rgbs, fps)
        text = f"saved {len(rgbs)} frames at {fps:g} fps as {format}"
        return io.NodeOutput(text, ui={"palsysim_video": [{"filename": file, "subfolder": subfolder,
                                                            "type": "output"}], "text": [text]})
