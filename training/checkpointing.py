"""Training state on disk: written whole or not at all, read back to continue exactly.

The state holds the trainable weights, the optimizer, the learning-rate schedule, the step and
the global RNG; batches, noise and timesteps are drawn from generators seeded by (seed, step), so a
resumed run sees the very draws the unbroken one would have. It holds no image data and no paths.
"""
import hashlib
import os
import tempfile

import torch

STATE_FILE = "training_state.torch"  # not .pt/.ckpt: ComfyUI would list it as a ControlNet


def write_atomically(path, write):
    """Call write(tmp_path), fsync, rename onto path, fsync the folder: a crash leaves the old file or the new."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_state(path, state):
    write_atomically(path, lambda tmp: torch.save(state, tmp))


def load_state(path):
    """The saved state (tensors and plain Python values only, so weights-only loading suffices)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def rng_state():
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def step_generator(seed, *keys):
    """A CPU generator determined by (seed, keys) alone, e.g. (seed, "noise", step)."""
    digest = hashlib.sha256(repr((seed,) + keys).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
