"""Cross-frame attention for identity-consistent video frames, training-free.

Sampled as one batch, each frame of a video would get its own face. Here every self-attention layer of
the UNet takes its keys and values from other frames of the batch, so the frames look up one appearance
and only the queries (where things are: the condition's motion) differ. Where they come from (`MODES`):

- first_frame (Text2Video-Zero, Khachatryan et al. 2023): the batch's first frame, for every frame.
- first_and_previous (sparse-causal, Tune-A-Video, Wu et al. 2023): the first frame's tokens and the
  previous frame's side by side; frame 0 gets its own twice, which softmax weighs as once (equal to a
  run without the patch up to rounding, not bit for bit).
- flow_guided: the previous frame's tokens, each gathered where the optical flow between the two frames'
  conditions says it went: the simplest form of FRESCO's and TokenFlow's flow correspondences. SD's
  self-attention gives keys no position, so the gather changes which tokens are there (stretched areas
  repeat, squeezed ones thin out) rather than where a query looks; the chain from frame to previous frame
  is what sets it apart from first_frame. FRESCO's own flow attention (each query limited to the tokens
  on its flow path) needs an attention replacement, not this key/value patch.

In first_frame and flow_guided frame 0 attends to itself as before: exactly the frame a run without
the patch makes.

The patches have the signature of ComfyUI's "attn1_patch" (ModelPatcher.set_model_attn1_patch):
(n, context, value, extra_options) -> (n, context, value), where n is the normed hidden states
(B, tokens, channels) and context/value what keys and values are computed from. ComfyUI stacks the
batch of each conditioning (positive, negative) into one tensor, chunk after chunk, and lists them in
extra_options["cond_or_uncond"]: frames are taken per chunk, so the negative frames look at negative ones.
"""
import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..base.errors import InputError
from ..face.flow import dense_flow, grey

MODES = ("first_frame", "first_and_previous", "flow_guided")


def _patch(pick):
    """attn1_patch that gives keys and values pick(x as (chunks, frames, tokens, C), extra_options)."""
    def attn1_patch(n, context, value, extra_options):
        chunks = max(1, len(extra_options.get("cond_or_uncond") or [None]))
        if n.shape[0] % chunks or context.shape != n.shape:  # not self-attention over a whole batch: leave it
            return n, context, value

        def per_frame(x):
            y = pick(x.reshape(chunks, n.shape[0] // chunks, *x.shape[1:]), extra_options)
            return y.reshape(-1, *y.shape[2:])
        return n, per_frame(context), per_frame(value)
    return attn1_patch


def _first(x, extra_options):
    return x[:, :1].expand_as(x)


def _first_and_previous(x, extra_options):
    previous = torch.cat([x[:, :1], x[:, :-1]], dim=1)
    return torch.cat([x[:, :1].expand_as(x), previous], dim=2)


first_frame_attention = _patch(_first)
first_and_previous_attention = _patch(_first_and_previous)


def condition_flows(conditions):
    """Flow from each condition to the one before: list of (H, W[, 3]) -> (T, H, W, 2) float32 pixels
    (frame 0's is zero). Edge maps are blurred first: Farneback follows smooth shading, not one-pixel lines."""
    sigma = max(1.0, np.shape(conditions[0])[1] / 128)
    greys = [cv2.GaussianBlur(grey(c), (0, 0), sigma) for c in conditions]
    if len({g.shape for g in greys}) > 1:
        raise InputError("the conditions have different sizes: give the conditions of one video")
    flows = [np.zeros(greys[0].shape + (2,), np.float32)]
    return np.stack(flows + [dense_flow(b, a) for a, b in zip(greys[:-1], greys[1:])])


class _FlowGather:
    """Each frame's keys and values: the previous frame's tokens at flow-corresponding positions."""

    def __init__(self, flows):
        self.flows = torch.from_numpy(np.ascontiguousarray(flows[1:])).permute(0, 3, 1, 2)  # (T-1, 2, H, W)
        self.frames = len(flows)
        self.grids = {}

    def grid(self, h, w, device):
        """grid_sample's sampling grid of frames 1.. in their predecessors, at an h x w attention map."""
        if (h, w, device) not in self.grids:
            height, width = self.flows.shape[2:]
            to_unit = torch.tensor([2.0 / width, 2.0 / height]).view(1, 2, 1, 1)  # pixels -> grid units
            shift = F.interpolate(self.flows * to_unit, size=(h, w), mode="area")
            xs, ys = ((torch.arange(n) + 0.5) / n * 2 - 1 for n in (w, h))
            here = torch.stack(torch.meshgrid(xs, ys, indexing="xy"))[None]
            self.grids[(h, w, device)] = (here + shift).permute(0, 2, 3, 1).to(device)
        return self.grids[(h, w, device)]

    def __call__(self, x, extra_options):
        chunks, frames, tokens, channels = x.shape
        if frames != self.frames:
            raise InputError(f"flow-guided attention has the flow of {self.frames} conditions but the batch holds "
                             f"{frames} frames: connect the conditions the video is sampled with")
        if frames == 1:
            return x
        height, width = extra_options.get("original_shape", [1, 1, 1, 1])[-2:]
        h = round((tokens * height / width) ** 0.5)
        if tokens % h:
            raise InputError(f"{tokens} attention tokens do not tile a {width}x{height} latent")
        w = tokens // h
        previous = x[:, :-1].reshape(-1, h, w, channels).permute(0, 3, 1, 2).float()
        grid = self.grid(h, w, x.device).repeat(chunks, 1, 1, 1)
        moved = F.grid_sample(previous, grid, mode="bilinear", padding_mode="border", align_corners=False)
        moved = moved.permute(0, 2, 3, 1).reshape(chunks, frames - 1, tokens, channels).to(x.dtype)
        return torch.cat([x[:, :1], moved], dim=1)


def attention_patch(mode, conditions=None):
    """The attn1_patch of one of MODES; flow_guided needs the video's conditions (list of (H, W[, 3]), one a frame)."""
    if mode not in MODES:
        raise InputError(f"unknown cross-frame attention {mode!r}: use one of {', '.join(MODES)}")
    if mode == "first_frame":
        return first_frame_attention
    if mode == "first_and_previous":
        return first_and_previous_attention
    if conditions is None or not len(conditions):
        raise InputError("flow_guided attention follows the flow between the video's conditions: connect them")
    return _patch(_FlowGather(condition_flows(conditions)))
