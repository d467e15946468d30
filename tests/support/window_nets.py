"""The ControlNet files and hint that the timestep-window host tests share (test_controlnet_window.py,
test_controlnet_window_core.py): a fine-tuned net with its 500..700 window in the file, a stock-style
full .pth to run outside the window, a plain net with no window, and a rings-on-black hint."""
import os

import numpy as np
import torch
from safetensors.torch import save_file
from tiny_models import tiny_controlnet_state_dict, write_tiny_checkpoint

from palsysim.controlnet.file import save_controlnet

META = dict(t_lo=500, t_hi=700, mode="partial", base_model="v1-5-pruned-emaonly.safetensors")
WINDOW_NET, BASE_NET, PLAIN_NET = "palsy_partial.safetensors", "control_sd15_canny.pth", "plain.safetensors"
CHECKPOINT = "tiny_sd15.safetensors"
NET_SEEDS = {WINDOW_NET: 0, BASE_NET: 1, PLAIN_NET: 2}  # tiny_controlnet_state_dict's seed of each file


def write_window_models(models_dir):
    """The tiny checkpoint and the three nets into models_dir/checkpoints and models_dir/controlnet."""
    write_tiny_checkpoint(os.path.join(models_dir, "checkpoints", CHECKPOINT))
    nets = os.path.join(models_dir, "controlnet")
    os.makedirs(nets, exist_ok=True)
    save_controlnet(os.path.join(nets, WINDOW_NET), tiny_controlnet_state_dict(seed=0), **META)
    torch.save({"state_dict": tiny_controlnet_state_dict(seed=1)}, os.path.join(nets, BASE_NET))
    save_file(tiny_controlnet_state_dict(seed=2), os.path.join(nets, PLAIN_NET))


def rings_hint():
    """A 64x64 edge-map-like hint: white rings on black."""
    y, x = np.mgrid[:64, :64]
    r = np.hypot(y - 32, x - 30)
    return (((r % 12) < 2) * 255).astype(np.uint8)[..., None].repeat(3, axis=2)


def sampling_graph(hint, control, positive, negative, steps=20, sampler="euler", scheduler="normal", denoise=1.0):
    """Checkpoint, prompts and hint (nodes 1-3, 5), KSampler (8) on the conditioning that `control` applies,
    VAEDecode (9). control: {node id: node} applying ControlNets to ["2", 0] and ["3", 0]; positive and
    negative: the links to the conditioning it ends in."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "ID photo of a person"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        "5": {"class_type": "LoadImage", "inputs": {"image": hint}},
        **control,
        "7": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        # cfg 1 lets ComfyUI skip the negative pass: one ControlNet call per step.
        "8": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": positive, "negative": negative,
                                                   "latent_image": ["7", 0], "seed": 7, "steps": steps, "cfg": 1.0,
                                                   "sampler_name": sampler, "scheduler": scheduler,
                                                   "denoise": denoise}},
        "9": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["1", 2]}},
    }


def apply_advanced(control_net, positive, negative, start=0.0, end=1.0):
    """Core Apply ControlNet (Advanced) of `control_net` (a link) on the hint, strength 1."""
    return {"class_type": "ControlNetApplyAdvanced",
            "inputs": {"positive": positive, "negative": negative, "control_net": control_net, "image": ["5", 0],
                       "strength": 1.0, "start_percent": start, "end_percent": end}}


def window_loader(name=WINDOW_NET, apply="everywhere", t_lo=-1, t_hi=-1, base="(none)"):
    """The pack's Load Timestep-Window ControlNet node."""
    return {"class_type": "PalsyTimestepWindowControlNetLoader",
            "inputs": {"control_net_name": name, "apply": apply, "t_lo": t_lo, "t_hi": t_hi,
                       "base_control_net_name": base}}
