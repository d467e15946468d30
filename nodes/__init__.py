"""PalsySim's ComfyUI nodes: thin adapters over the palsysim core."""
from typing_extensions import override

from comfy_api.latest import ComfyExtension, io

from .controlnet_window import TimestepWindowControlNetLoader, WindowSteps
from .identity import ArcFaceDissimilarity, PrivacyGate
from .landmarks import FaceLandmarks
from .codc import ContourReposition, OrganCropResize, PFCondition
from .save import SaveAnonymized
from .grid import LabelledGrid, Lines, YanagiharaBatch
from .facecrop import FaceCrop
from .routes import register_routes
from .preview import Preview
from .video import CrossFrameAttention, SameNoise, SaveAnonymizedVideo, SmoothLandmarks, VideoConditions


class PalsySimExtension(ComfyExtension):
    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [FaceLandmarks, OrganCropResize, ContourReposition, PFCondition, TimestepWindowControlNetLoader, WindowSteps,
                ArcFaceDissimilarity, PrivacyGate, SaveAnonymized, YanagiharaBatch, Lines, LabelledGrid, FaceCrop, Preview,
                SmoothLandmarks, VideoConditions, CrossFrameAttention, SameNoise, SaveAnonymizedVideo]


async def comfy_entrypoint() -> PalsySimExtension:
    register_routes()  # the runner's upload clean-up
    return PalsySimExtension()
