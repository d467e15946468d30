"""What trains in each mode of the paper's comparison, and over which timesteps.

partial  all ControlNet weights, timesteps in the window only (the method; 500..700 by default)
full     all ControlNet weights, every timestep 0..999
freeze   every timestep; only the innermost down blocks (with their zero convolutions), the
         middle block (with its output convolution) and every cross-attention layer train. A
         ControlNet is the UNet's encoder copy: it has no up blocks; its zero convolutions are what
         feeds the UNet's up path, so those of the innermost blocks train with them.
lora     every timestep; a low-rank update on every linear and convolution layer of the ControlNet,
         the original weights frozen; written merged (an ordinary ControlNet file), as a LoRA file
         (factors relative to the base ControlNet, see palsysim/controlnet/file.py), or both.
A window given explicitly (--t-min/--t-max) applies to any mode.
"""
import torch
from torch import nn
from torch.nn.utils import parametrize

from palsysim.controlnet.file import CONTROL_PREFIX, lora_keys, merge_lora

MODES = ("partial", "full", "freeze", "lora")
PAPER_WINDOW = (500, 700)
ALL_TIMESTEPS = (0, 999)


def default_window(mode):
    return PAPER_WINDOW if mode == "partial" else ALL_TIMESTEPS


def innermost_block_indices(control_model):
    """Indices into input_blocks (and zero_convs) of the deepest level's blocks, its downsampler excluded."""
    counts = list(control_model.num_res_blocks)
    # input_blocks: the input conv, then per level its res blocks and (but for the last) a downsampler
    first = 1 + sum(n + 1 for n in counts[:-1])
    return list(range(first, first + counts[-1]))


def freeze_trainable(name, innermost):
    """Whether parameter `name` of a ControlNet trains in freeze mode."""
    parts = name.split(".")
    if parts[0] in ("input_blocks", "zero_convs") and int(parts[1]) in innermost:
        return True
    return parts[0] in ("middle_block", "middle_block_out") or "attn2" in parts


class LowRankDelta(nn.Module):
    """weight -> weight + up @ down, reshaped to the weight; up starts at zero so nothing changes at step 0."""

    def __init__(self, weight, rank, generator):
        super().__init__()
        out_features, fan_in = weight.shape[0], weight[0].numel()
        rank = min(rank, out_features, fan_in)
        self.down = nn.Parameter(torch.empty(rank, fan_in, dtype=torch.float32, device=weight.device))
        nn.init.kaiming_uniform_(self.down, a=5 ** 0.5, generator=generator)
        self.up = nn.Parameter(torch.zeros(out_features, rank, dtype=torch.float32, device=weight.device))

    def forward(self, weight):
        return weight + (self.up @ self.down).view_as(weight).to(weight.dtype)


def add_lora(control_model, rank, seed):
    """Put a LowRankDelta on the weight of every Linear and Conv2d layer; returns how many."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    layers = [m for m in control_model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    for layer in layers:
        delta = LowRankDelta(layer.weight.detach().cpu(), rank, generator).to(layer.weight.device)
        parametrize.register_parametrization(layer, "weight", delta)
    return len(layers)


def select_trainable(control_model, mode, lora_rank=16, seed=0):
    """Set requires_grad for `mode` and return the trainable (name, parameter) pairs."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    if mode == "lora":
        control_model.requires_grad_(False)
        add_lora(control_model, lora_rank, seed)  # the new up/down parameters require grad
    elif mode == "freeze":
        innermost = innermost_block_indices(control_model)
        for name, p in control_model.named_parameters():
            p.requires_grad_(freeze_trainable(name, innermost))
    else:
        control_model.requires_grad_(True)
    return [(n, p) for n, p in control_model.named_parameters() if p.requires_grad]


def _parametrized_owners(control_model):
    return [name for name, m in control_model.named_modules()
            if parametrize.is_parametrized(m, "weight") and isinstance(m.parametrizations.weight[0], LowRankDelta)]


def lora_state_dict(control_model):
    """The LoRA factors as a LoRA file holds them: {lora.control_model.<key>.down/.up/.alpha: tensor} (alpha = rank)."""
    out = {}
    for owner in _parametrized_owners(control_model):
        delta = control_model.get_submodule(owner).parametrizations.weight[0]
        down_key, up_key, alpha_key = lora_keys(owner + ".weight")
        out[down_key], out[up_key] = delta.down.detach(), delta.up.detach()
        out[alpha_key] = torch.tensor(float(delta.down.shape[0]))
    return out


def base_state_dict(control_model):
    """The ControlNet's weights under ComfyUI's keys with any LoRA left out (the frozen originals)."""
    out = {}
    for key, value in control_model.state_dict().items():
        if ".parametrizations." not in key:
            out[key] = value.detach()
        elif key.endswith(".parametrizations.weight.original"):
            out[key[: -len(".parametrizations.weight.original")] + ".weight"] = value.detach()
    return out


def plain_state_dict(control_model):
    """The ControlNet's weights under ComfyUI's keys, any LoRA merged into them (by merge_lora, as the loader does)."""
    base = base_state_dict(control_model)
    if not _parametrized_owners(control_model):
        return base
    merged = merge_lora(base, lora_state_dict(control_model))
    return {k[len(CONTROL_PREFIX):]: v for k, v in merged.items()}
