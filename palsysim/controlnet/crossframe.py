"""Cross-frame attention for identity-consistent video frames, training-free (Text2Video-Zero, Khachatryan et al. 2023).

Sampled as one batch, each frame of a video would get its own face. Here every self-attention
layer of the UNet takes its keys and values from the first frame of the batch, so every frame
looks up the same appearance and only the queries (where things are: the condition's motion) differ.
Frame 0 attends to itself as before, so it is exactly the frame a run without the patch makes.

The function has the signature of ComfyUI's "attn1_patch" (ModelPatcher.set_model_attn1_patch):
(n, context, value, extra_options) -> (n, context, value), where n is the normed hidden states
(B, tokens, channels) and context/value what keys and values are computed from. ComfyUI stacks the
batch of each conditioning (positive, negative) into one tensor, chunk after chunk, and lists them in
extra_options["cond_or_uncond"]: the first frame is taken per chunk, so the negative frames look at
the negative first frame.
"""


def first_frame_attention(n, context, value, extra_options):
    """attn1_patch: keys and values of every frame from its chunk's first frame. Shapes (B, T, C), B = chunks x frames."""
    chunks = max(1, len(extra_options.get("cond_or_uncond") or [None]))
    if n.shape[0] % chunks or context.shape != n.shape:  # not self-attention over a whole batch: leave it
        return n, context, value
    frames = n.shape[0] // chunks

    def first(x):
        x = x.reshape(chunks, frames, *x.shape[1:])
        return x[:, :1].expand_as(x).reshape(chunks * frames, *x.shape[2:])
    return n, first(context), first(value)
