"""Real-size SD1.5 checkpoint and Canny ControlNet files with random weights, for benchmarks on any machine.

The same UNet and ControlNet that training.bench times (build_sd15), ComfyUI's own CLIP-L and SD
VAE classes, in the key layout and fp16 of the published files (v1-5-pruned-emaonly-fp16,
control_v11p_sd15_canny_fp16), so ComfyUI's loaders and `bench generate` take them as the real ones.
"""
import os

import torch

from .bench import build_sd15, init_weights

# ComfyUI's default SD1.x VAE (comfy/sd.py), the first_stage_model of v1-5-pruned-emaonly.
SD15_VAE = dict(double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3, ch=128, ch_mult=[1, 2, 4, 4],
                num_res_blocks=2, attn_resolutions=[], dropout=0.0)
MODEL_FILES = {"checkpoint": os.path.join("checkpoints", "sd15_random.safetensors"),
               "controlnet": os.path.join("controlnet", "sd15_canny_random.safetensors")}


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

    from palsysim.files import write_atomically
    paths = {k: os.path.join(models_dir, v) for k, v in MODEL_FILES.items()}
    for path, state_dict in zip(paths.values(), sd15_state_dicts(dtype)):
        write_atomically(path, lambda tmp: save_file(state_dict, tmp))
    return paths
