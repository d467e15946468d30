"""Real-size SD1.5 checkpoint and Canny ControlNet files with random weights, for benchmarks on any machine.

The UNet and ControlNet that training.bench times (build_sd15), ComfyUI's own CLIP-L and SD
VAE classes, in the key layout and fp16 of the published files (v1-5-pruned-emaonly-fp16,
control_v11p_sd15_canny_fp16), so ComfyUI's loaders and `bench generate` take them as the real ones.
"""
import os

import torch

from .host import Models

# SD1.5's UNet as ComfyUI's model detection describes v1-5-pruned-emaonly (num_heads etc. come from
# supported_models.SD15's extra config).
SD15_UNET = dict(image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[2, 2, 2, 2],
                 channel_mult=[1, 2, 4, 4], transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0], transformer_depth_middle=1,
                 transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], context_dim=768,
                 use_spatial_transformer=True, use_linear_in_transformer=False, legacy=False, adm_in_channels=None,
                 use_checkpoint=False, use_temporal_resblock=False, use_temporal_attention=False)
# --tiny: every width divided by 10 (32 channels at the top), the layout, heads and text width kept.
TINY_CHANNELS = 32
# ComfyUI's default SD1.x VAE (comfy/sd.py), the first_stage_model of v1-5-pruned-emaonly.
SD15_VAE = dict(double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3, ch=128, ch_mult=[1, 2, 4, 4],
                num_res_blocks=2, attn_resolutions=[], dropout=0.0)
MODEL_FILES = {"checkpoint": os.path.join("checkpoints", "sd15_random.safetensors"),
               "controlnet": os.path.join("controlnet", "sd15_canny_random.safetensors")}



def init_weights(module, seed=0):
    """torch's default initialisation for every layer (ComfyUI's layers skip it), from `seed`; the global RNG
    is left as it was."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for m in module.modules():
            for cls in type(m).__mro__:  # ComfyUI's op classes subclass torch.nn's: call torch.nn's initialiser
                if cls.__module__.startswith("torch.nn") and "reset_parameters" in cls.__dict__:
                    cls.reset_parameters(m)
                    break
    finally:
        torch.random.set_rng_state(state)
    return module


def build_sd15(device, dtype, tiny=False):
    """Models with a random-weight SD1.5 UNet (frozen, `dtype`) and ControlNet (float32), ComfyUI's classes.

    tiny: model_channels TINY_CHANNELS instead of 320 (not an SD1.5 any more, so not checked against detection).
    """
    import comfy.cldm.cldm
    import comfy.controlnet
    import comfy.model_detection
    import comfy.model_patcher
    import comfy.supported_models
    model_config = comfy.supported_models.SD15(dict(SD15_UNET, **(dict(model_channels=TINY_CHANNELS) if tiny else {})))
    model_config.set_inference_dtype(torch.float32, None)
    base = model_config.get_model({}, device="cpu")
    init_weights(base.diffusion_model, 0)
    if not tiny:
        detected = comfy.model_detection.model_config_from_unet(base.diffusion_model.state_dict(), "")
        assert type(detected) is comfy.supported_models.SD15, f"not detected as SD1.5 but {type(detected).__name__}"
    control_config = {k: v for k, v in model_config.unet_config.items() if k not in ("out_channels", "transformer_depth_output")}
    control_model = init_weights(comfy.cldm.cldm.ControlNet(hint_channels=3, device="cpu", **control_config), 1)
    base.diffusion_model.to(device, dtype).requires_grad_(False)
    control_model.to(device)
    patcher = comfy.model_patcher.ModelPatcher(base, load_device=device, offload_device=torch.device("cpu"))
    return Models(patcher, None, None, comfy.controlnet.ControlNet(control_model, load_device=device))

def sd15_state_dicts(dtype=torch.float16):
    """(checkpoint, ControlNet) {key: tensor} at real size with random weights: build_sd15's UNet and ControlNet,
    ComfyUI's CLIP-L and SD VAE, in v1-5-pruned-emaonly's key layout and a `control_model.*` Canny ControlNet's."""
    import comfy.ldm.models.autoencoder
    import comfy.sd1_clip
    models = build_sd15(torch.device("cpu"), dtype)
    checkpoint = {f"model.diffusion_model.{k}": v for k, v in models.unet.state_dict().items()}
    control = {f"control_model.{k}": v.to(dtype) for k, v in models.control_model.state_dict().items()}
    del models
    clip = init_weights(comfy.sd1_clip.SDClipModel(device="cpu", dtype=torch.float32), 2)
    with torch.no_grad():  # small embeddings keep a random 12-layer text model's activations finite
        for embedding in (clip.transformer.text_model.embeddings.token_embedding,
                          clip.transformer.text_model.embeddings.position_embedding):
            embedding.weight.mul_(0.02)
    checkpoint.update({f"cond_stage_model.{k}": v.to(dtype) if v.is_floating_point() else v
                       for k, v in clip.state_dict().items()
                       if k.startswith("transformer.") and k != "transformer.text_projection.weight"})  # SD1.5 has none
    vae = init_weights(comfy.ldm.models.autoencoder.AutoencoderKL(ddconfig=SD15_VAE, embed_dim=4), 3)
    checkpoint.update({f"first_stage_model.{k}": v.to(dtype) for k, v in vae.state_dict().items()})
    return ({k: v.contiguous() for k, v in checkpoint.items()}, {k: v.contiguous() for k, v in control.items()})


def write_sd15_files(models_dir, dtype=torch.float16):
    """Write sd15_state_dicts() as models_dir/MODEL_FILES (a ComfyUI models folder layout); returns their paths."""
    from safetensors.torch import save_file

    from palsysim.base.files import write_atomically
    paths = {k: os.path.join(models_dir, v) for k, v in MODEL_FILES.items()}
    for path, state_dict in zip(paths.values(), sd15_state_dicts(dtype)):
        write_atomically(path, lambda tmp: save_file(state_dict, tmp))
    return paths
