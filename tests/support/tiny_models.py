"""Tiny, loadable SD1.5-shaped model files built with ComfyUI's own classes (no downloads).

Nothing here is trained: weights are random but finite and deterministic per seed, so the files
load through ComfyUI's ordinary loaders (CheckpointLoaderSimple, ControlNetLoader,
comfy.sd.load_checkpoint_guess_config, comfy.controlnet.load_controlnet) and sample real,
non-constant images in about a second on a CPU.

    write_tiny_checkpoint(path)               SD1.5 checkpoint: UNet + complete CLIP-L + TAESD VAE
    write_tiny_controlnet(path, seed=0)       `control_model.*` ControlNet matching that UNet
    tiny_controlnet_state_dict(seed=0)        the same ControlNet as a plain {key: tensor} dict,
                                              to save variants (a .ckpt, a corrupted file, ...)

Why each part is shaped as it is:
- UNet: ComfyUI detects SD1.5 from model_channels=320, context_dim=768 and a 1x1-conv proj_in
  (use_linear_in_transformer False). One level, one res block, transformer depth 1 keeps it at
  about 16 M parameters.
- CLIP: SD1.5 checkpoints always load ComfyUI's fixed CLIP-L config; a missing key is left
  uninitialised (NaN images), so the whole 123 M-parameter text model is written (as float16 to
  halve the file).
- VAE: TAESD (`first_stage_model.taesd_*`) is a complete VAE that ComfyUI recognises, 2.4 M
  parameters instead of the real VAE's 84 M.
ComfyUI's layers skip weight initialisation (`comfy.ops.disable_weight_init`), so every layer is
reset here with torch's own initialiser under a fixed seed.
"""
import atexit
import os
import shutil
import sys
import tempfile

import torch

from palsysim.base.files import write_atomically
from palsysim.base.paths import comfyui_dir
from training.sd15_files import init_weights


def import_comfy():
    """Make ComfyUI's `comfy` package importable in this process (CPU-only when no GPU is visible)."""
    host = comfyui_dir()
    if host not in sys.path:
        sys.path.insert(0, host)
    import comfy.cli_args
    if not torch.cuda.is_available():
        # model_management probes the GPU at import; on a CPU-only machine that must be told first.
        comfy.cli_args.args.cpu = True
    import comfy.model_management  # noqa: F401  (settles the device before the model modules load)


# The UNet that ComfyUI detects as SD1.5 (supported_models.SD15) at the smallest useful size.
UNET_CONFIG = dict(
    image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[1],
    channel_mult=[1], num_heads=8, num_head_channels=-1, use_spatial_transformer=True,
    transformer_depth=[1], transformer_depth_middle=1, transformer_depth_output=[1, 1],
    context_dim=768, use_linear_in_transformer=False, legacy=False, adm_in_channels=None,
    use_temporal_attention=False, use_temporal_resblock=False,
)


def _init_weights(module, seed):
    """Give every layer torch's default random initialisation (ComfyUI's layers skip it), and check it took."""
    init_weights(module, seed)
    for name, p in module.state_dict().items():
        if p.is_floating_point() and not torch.isfinite(p).all():
            raise RuntimeError(f"tiny model left {name} uninitialised")
    return module


def _unet(seed):
    import_comfy()
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    return _init_weights(UNetModel(**UNET_CONFIG, device="cpu"), seed)


def _clip_l(seed):
    import_comfy()
    import comfy.sd1_clip
    clip = _init_weights(comfy.sd1_clip.SDClipModel(device="cpu", dtype=torch.float32), seed)
    with torch.no_grad():
        # Small embeddings keep the random 12-layer text model's activations tame.
        clip.transformer.text_model.embeddings.token_embedding.weight.mul_(0.02)
        clip.transformer.text_model.embeddings.position_embedding.weight.mul_(0.02)
    return clip


def _taesd(seed):
    import_comfy()
    import comfy.taesd.taesd
    vae = _init_weights(comfy.taesd.taesd.TAESD(latent_channels=4), seed)
    with torch.no_grad():
        # Centre the decoded pixels on mid-grey: a random decoder's output sits near 0 and is
        # mostly clipped to black, which would hide how much the sampled latents vary.
        vae.taesd_decoder[-1].bias.fill_(0.5)
    return vae


def tiny_checkpoint_state_dict(seed=0):
    """{key: tensor} of an SD1.5 checkpoint in the original (LDM) key layout."""
    sd = {}
    for k, v in _unet(seed).state_dict().items():
        sd[f"model.diffusion_model.{k}"] = v
    for k, v in _clip_l(seed + 1).state_dict().items():
        if k.startswith("transformer."):
            sd[f"cond_stage_model.{k}"] = v.half() if v.is_floating_point() else v
    for k, v in _taesd(seed + 2).state_dict().items():
        sd[f"first_stage_model.{k}"] = v
    return {k: v.detach().contiguous() for k, v in sd.items()}


_built = {}  # (kind, seed, extension) -> the file as first built in this process


def _write_once(path, key, build):
    """Copy to path the file that build(tmp) writes for key, built once per process: the same bytes,
    and the seconds of building a 0.3 GB checkpoint spent once per test session, not per test."""
    if key not in _built or not os.path.isfile(_built[key]):
        folder = tempfile.mkdtemp(prefix="palsysim_tiny_")
        atexit.register(shutil.rmtree, folder, True)
        _built[key] = os.path.join(folder, "model" + key[-1])
        build(_built[key])
    write_atomically(path, lambda tmp: shutil.copyfile(_built[key], tmp))
    return path


def write_tiny_checkpoint(path, seed=0):
    """Write a tiny SD1.5 checkpoint (.safetensors) to path and return path (about 0.3 GB, 2-4 s the first time)."""
    from safetensors.torch import save_file
    return _write_once(path, ("checkpoint", seed, ".safetensors"),
                       lambda out: save_file(tiny_checkpoint_state_dict(seed), out))


def tiny_controlnet_state_dict(seed=0):
    """{`control_model.*`: tensor} of a ControlNet matching the tiny UNet (3-channel hint).

    The zero convolutions are random too (not zero as in a fresh training run), so the control
    visibly changes what the model samples: tests can tell an applied ControlNet from an ignored one.
    """
    import_comfy()
    from comfy.cldm.cldm import ControlNet
    config = {k: v for k, v in UNET_CONFIG.items() if k not in ("out_channels", "transformer_depth_output")}
    net = _init_weights(ControlNet(hint_channels=3, device="cpu", **config), seed)
    return {f"control_model.{k}": v.detach().contiguous() for k, v in net.state_dict().items()}


def write_tiny_controlnet(path, seed=0):
    """Write a tiny ControlNet to path (.safetensors, or .ckpt/.pt/.pth as a torch pickle); returns path."""
    def build(out):
        sd = tiny_controlnet_state_dict(seed)
        if path.endswith(".safetensors"):
            from safetensors.torch import save_file
            save_file(sd, out)
        else:
            torch.save({"state_dict": sd}, out)
    return _write_once(path, ("controlnet", seed, ".safetensors" if path.endswith(".safetensors") else ".pt"), build)
