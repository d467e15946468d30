"""Fitting batch 4 at 512x512 into a small GPU: precision, gradient checkpointing, 8-bit optimizer.

- The frozen UNet, CLIP and VAE are loaded in bf16/fp16 (`--precision`); the ControlNet keeps
  float32 master weights and runs its forward under autocast.
- Gradient checkpointing recomputes each res block and transformer of the ControlNet and the UNet
  in the backward pass instead of keeping their activations.
- AdamW in 8 bits when bitsandbytes is installed (`--optimizer adamw8bit`).
Attention is ComfyUI's own, which uses PyTorch's scaled_dot_product_attention where it can.
"""
import functools

import torch
from torch.utils.checkpoint import checkpoint

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
OPTIMIZERS = ("adamw", "adamw8bit")


def pick_device(name=None):
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def frozen_dtype(precision, device):
    """The dtype of the frozen models; "auto" is bf16 on a GPU that has it, else float32."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast_dtype(dtype):
    """The ControlNet's autocast dtype, or None to run it in float32."""
    return None if dtype == torch.float32 else dtype


def _checkpointed(forward, *args, **kwargs):
    # only worth it (and only possible) when something upstream needs gradients
    if torch.is_grad_enabled():
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)
    return forward(*args, **kwargs)


def enable_gradient_checkpointing(*modules):
    """Recompute every ResBlock and SpatialTransformer of `modules` in backward; returns how many.

    The instance's forward is wrapped, so weights, keys and ComfyUI's block wiring stay as they are.
    """
    from comfy.ldm.modules.attention import SpatialTransformer
    from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock
    count = 0
    for module in modules:
        for block in module.modules():
            if isinstance(block, (ResBlock, SpatialTransformer)):
                block.forward = functools.partial(_checkpointed, block.forward)
                count += 1
    return count


def make_optimizer(name, params, lr):
    if name == "adamw8bit":
        try:
            import bitsandbytes
        except ImportError:
            raise ValueError("--optimizer adamw8bit needs the bitsandbytes package (pip install bitsandbytes); "
                             "or use --optimizer adamw") from None
        return bitsandbytes.optim.AdamW8bit(params, lr=lr)
    if name != "adamw":
        raise ValueError(f"unknown optimizer {name!r}: use one of {', '.join(OPTIMIZERS)}")
    params = list(params)
    # The fused kernel needs no step temporaries: measured on an H200, batch 4 at 512x512 peaks at
    # 7.84 GiB instead of 8.46 at the same speed (BENCHMARKS.md), inside an 8 GB card.
    fused = all(p.is_cuda for p in params)
    return torch.optim.AdamW(params, lr=lr, fused=fused or None)


def peak_memory(device):
    """Peak bytes allocated on a GPU, or the process's peak resident set on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
