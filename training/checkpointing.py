"""Training state on disk: written whole or not at all, read back to continue exactly.

The state holds the trainable weights, the optimizer, the learning-rate schedule, the step and
the global RNG; batches, noise and timesteps are drawn from generators seeded by (seed, step), so a
resumed run sees the very draws the unbroken one would have. It holds no image data and no paths.
"""
import glob
import hashlib
import os

import torch

from palsysim.base.files import sha256_of, write_atomically

STATE_FILE = "training_state.torch"  # not .pt/.ckpt: ComfyUI would list it as a ControlNet
PREVIOUS = ".prev"  # STATE_FILE + PREVIOUS: the state before the last save


class NoIntactState(ValueError):
    """Neither saved state can be read back intact; the message says why and what to do."""


def save_state(path, state):
    """Write state to path with its checksum; the state it replaces becomes path + PREVIOUS."""
    state = {**state, "checksum": checksum(state)}
    write_atomically(path, lambda tmp: torch.save(state, tmp), keep_previous=path + PREVIOUS)


def exists(path):
    return any(os.path.isfile(p) for p in (path, path + PREVIOUS))


def load_latest(path):
    """(state, the file it came from, [why a newer file was passed over]) of the newest intact state.

    Tensors and plain Python values only, so weights-only loading suffices. Raises NoIntactState
    when neither path nor path + PREVIOUS is intact.
    """
    skipped = []
    for candidate in (path, path + PREVIOUS):
        name = os.path.basename(candidate)
        if not os.path.isfile(candidate):
            skipped.append(f"{name} is missing")
            continue
        try:
            state = torch.load(candidate, map_location="cpu", weights_only=True)
        except Exception as e:  # a file cut short fails in the zip reader, a damaged pickle in many ways
            skipped.append(f"{name} is unreadable, cut short or damaged ({e.__class__.__name__}: {str(e).splitlines()[0][:120]})")
            continue
        # torch.load does not check tensor bytes (a flipped bit loads silently): the checksum does.
        if not isinstance(state, dict) or state.pop("checksum", None) != checksum(state):
            skipped.append(f"{name} is damaged (its contents do not match the checksum saved with it)")
            continue
        return state, candidate, skipped
    folder = os.path.dirname(os.path.abspath(path))
    raise NoIntactState(f"--resume: no intact training state in {folder}: {'; '.join(skipped)}. This run cannot "
                        f"be continued: delete that folder and train again without --resume")


def model_digest(path, saved=None):
    """{"name": file name, "sha256": of the whole file, "stamp": of its path, size and mtime}.

    A model differing in one tensor has the same size and mostly the same bytes, so only the whole
    file tells it apart. saved: the entry a resumed state holds for this file; when its stamp is this
    file's, its digest is reused, so a resume does not read a 4 GB checkpoint again. The stamp is
    itself a digest: the state holds no paths.
    """
    st = os.stat(path)
    stamp = hashlib.sha256(repr((os.path.realpath(path), st.st_size, st.st_mtime_ns)).encode()).hexdigest()[:32]
    same = saved and saved.get("stamp") == stamp and saved.get("sha256")
    return {"name": os.path.basename(path), "sha256": same or sha256_of(path), "stamp": stamp}


def remove_stale_temps(folder):
    """Delete the temporary files that saves killed half-way left in folder (write_atomically's names)."""
    for tmp in glob.glob(os.path.join(glob.escape(folder), ".*.tmp")):
        os.unlink(tmp)


def checksum(state):
    """SHA-256 of every value in the state, tensor bytes included, in a fixed walk order."""
    h = hashlib.sha256()

    def walk(x):
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous().reshape(-1)
            h.update(f"T{t.dtype}{tuple(x.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().data)
        elif isinstance(x, dict):
            h.update(b"{%d" % len(x))
            for k, v in x.items():
                h.update(repr(k).encode())
                walk(v)
        elif isinstance(x, (list, tuple)):
            h.update(b"[%d" % len(x))
            for v in x:
                walk(v)
        else:
            h.update(repr(x).encode())
    walk(state)
    return h.hexdigest()


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
