"""Finding ComfyUI and loading the user's model files with ComfyUI's own code.

Training runs the very modules that sample inside ComfyUI, so every checkpoint and ControlNet a
ComfyUI user has loads here, and the trained ControlNet is the one inference runs.
"""
import logging
import os
import sys
from dataclasses import dataclass

import torch

from palsysim.base.paths import comfyui_dir
from palsysim.controlnet.file import CONTROL_PREFIX, load_controlnet_weights

from .checkpointing import model_digest


class HostError(RuntimeError):
    """ComfyUI or a model file could not be used; the message says what to do."""


class _AudioNotes(logging.Filter):
    """ComfyUI's notes, at import, that its audio models need torchaudio: nothing to do with SD1.5 training."""

    def filter(self, record):
        return not record.getMessage().startswith("torchaudio missing")


def _patcher_teardown(unraisable, default=sys.unraisablehook):
    """At interpreter exit ComfyUI's ModelPatcher.__del__ runs after the modules it needs are torn down and
    prints an "Exception ignored" traceback per model; nothing is left to release then. Others pass on."""
    if not (sys.is_finalizing() and getattr(unraisable.object, "__qualname__", "") == "ModelPatcher.__del__"):
        default(unraisable)


def use_comfyui(explicit=None):
    """Put ComfyUI on sys.path once, on the CPU when there is no GPU; returns its folder."""
    if not any(isinstance(f, _AudioNotes) for f in logging.getLogger().filters):
        logging.getLogger().addFilter(_AudioNotes())
        sys.unraisablehook = _patcher_teardown
    path = comfyui_dir(explicit)
    if path not in sys.path:
        sys.path.insert(0, path)
    import comfy.cli_args  # parses an empty argv: our own flags never reach ComfyUI's parser
    if not torch.cuda.is_available():
        # model_management asks CUDA for a device at import time unless told to use the CPU
        comfy.cli_args.args.cpu = True
    # PyTorch's fused scaled_dot_product_attention (ComfyUI picks it by itself only on NVIDIA GPUs;
    # this takes effect when model_management has not been imported yet in this process)
    comfy.cli_args.args.use_pytorch_cross_attention = True
    return path


@dataclass
class Models:
    """The frozen SD1.5 parts and the trainable ControlNet, as ComfyUI builds them."""
    patcher: object      # comfy ModelPatcher; .model is the BaseModel, .model.diffusion_model the UNet
    clip: object         # comfy CLIP
    vae: object          # comfy VAE
    controlnet: object   # comfy.controlnet.ControlNet; .control_model is the cldm.ControlNet module

    @property
    def unet(self):
        return self.patcher.model.diffusion_model

    @property
    def control_model(self):
        return self.controlnet.control_model


def _must_exist(path, what, folder):
    if not os.path.isfile(path):
        raise HostError(f"{what} file not found: {path} (it usually lives in ComfyUI/models/{folder}/)")


def model_file(path, what, folder, saved=None):
    """checkpointing.model_digest of an existing model file (saved: the resumed state's entry for it)."""
    _must_exist(path, what, folder)
    return model_digest(path, saved)


def load_models(checkpoint, controlnet, frozen_dtype=torch.float32):
    """SD1.5 checkpoint + ControlNet through ComfyUI's loaders; only the ControlNet may train.

    The frozen UNet, CLIP and VAE take `frozen_dtype`; the ControlNet stays float32 because its
    weights are the ones the optimizer updates.
    """
    _must_exist(checkpoint, "checkpoint", "checkpoints")
    _must_exist(controlnet, "ControlNet", "controlnet")
    import comfy.controlnet
    import comfy.sd
    import comfy.supported_models

    # The small file first: weights-only reading, messages naming the file (a code-running pickle, an SDXL net...)
    weights = load_controlnet_weights(controlnet)
    try:
        patcher, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(
            checkpoint, output_vae=True, output_clip=True, model_options={"dtype": frozen_dtype})
    except Exception as e:
        raise HostError(f"{os.path.basename(checkpoint)} is not a loadable SD1.5 checkpoint: {e}") from None
    if clip is None or vae is None:
        raise HostError(f"{os.path.basename(checkpoint)} has no CLIP text encoder or VAE inside; "
                        "use a full SD1.5 checkpoint such as v1-5-pruned-emaonly")
    if not isinstance(patcher.model.model_config, comfy.supported_models.SD15):
        raise HostError(f"{os.path.basename(checkpoint)} is a {type(patcher.model.model_config).__name__} "
                        "checkpoint; training needs an SD1.5 one such as v1-5-pruned-emaonly")
    name = os.path.basename(controlnet)
    ldm_keys = all(k.startswith(CONTROL_PREFIX) for k in weights)
    try:
        cnet = comfy.controlnet.load_controlnet_state_dict(weights, model_options={"dtype": torch.float32})
    except Exception as e:
        if ldm_keys:  # ComfyUI tells the model type from a few keys; without them it fails on a None config
            lacks = f" (it lacks {e})" if isinstance(e, KeyError) else ""
            raise HostError(f"{name} is an incomplete ControlNet: ComfyUI cannot tell its model from its "
                            f"{len(weights)} control_model.* weights{lacks}; the file may be cut short or a partial "
                            "export: use the complete file") from None
        raise HostError(f"{name} is not a loadable ControlNet: {e}") from None
    if type(cnet) is not comfy.controlnet.ControlNet:
        raise HostError(f"{name} is not an SD1.5 ControlNet (ldm or diffusers format)")
    if ldm_keys:  # ComfyUI only logs missing keys and leaves those weights uninitialised: never train from that
        missing = sorted(set(cnet.control_model.state_dict()) - {k[len(CONTROL_PREFIX):] for k in weights})
        if missing:
            raise HostError(f"{name} is an incomplete ControlNet: {len(missing)} of its weights are missing "
                            f"(e.g. {', '.join(missing[:3])}); the file may be cut short or a partial export: use "
                            "the complete file")
    models = Models(patcher, clip, vae, cnet)
    unet, ctrl = models.unet, models.control_model
    if (ctrl.model_channels, list(ctrl.channel_mult), list(ctrl.num_res_blocks)) != \
            (unet.model_channels, list(unet.channel_mult), list(unet.num_res_blocks)):
        # ComfyUI only logs a shape mismatch and samples without control; refuse it up front
        raise HostError(f"{os.path.basename(controlnet)} does not match the UNet of {os.path.basename(checkpoint)} "
                        "(different block layout); use an SD1.5 ControlNet such as control_sd15_canny")
    # Loaded modules come back with gradients on; backward through the UNet's in-place
    # `h += control` fails unless everything but the ControlNet is frozen.
    for module in (models.unet, clip.cond_stage_model, vae.first_stage_model):
        module.requires_grad_(False).eval()
    models.control_model.requires_grad_(True).train()
    return models
