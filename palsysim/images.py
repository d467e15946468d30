"""Image plumbing shared by the CLI, the nodes and training: one RGB uint8 convention."""
import os

import cv2
import numpy as np

from .files import write_atomically

MIN_SIDE = 64  # smaller crops give MediaPipe nothing to find


class InputError(ValueError):
    """A problem with what the user handed in; the message says what and how to fix it."""


def to_rgb_uint8(image, what="image"):
    """Any photo array -> (H, W, 3) uint8 RGB.

    Accepts (H, W) grey, (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA (composited on white), as uint8
    or float in 0..1 (ComfyUI's convention; values beyond it are clipped, never rescaled). NaN or
    infinite pixels are refused rather than guessed at.
    """
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise InputError(f"{what} has shape {tuple(np.shape(image))}; expected height x width with 1, 3 or 4 channels")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise InputError(f"{what} is empty ({a.shape[1]}x{a.shape[0]} pixels)")
    if a.dtype != np.uint8:
        a = a.astype(np.float32)
        if not np.isfinite(a).all():
            raise InputError(f"{what} contains NaN or infinite pixel values; re-export the photo or fix the node that made it")
        a = np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:
        alpha = a[..., 3:4].astype(np.float32) / 255.0
        a = (a[..., :3] * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
    return np.ascontiguousarray(a)


def check_size(image, what="image", min_side=MIN_SIDE):
    """Refuse photos too small to hold a detectable face."""
    h, w = image.shape[:2]
    if min(h, w) < min_side:
        raise InputError(f"{what} is {w}x{h} pixels; a face photo needs at least {min_side}x{min_side} (use a larger photo)")


def read_image(path):
    """A photo file -> (H, W, 3) uint8 RGB, with a message that names the file when it cannot be read."""
    data = np.fromfile(path, dtype=np.uint8) if os.path.isfile(path) else None
    if data is None:
        raise InputError(f"no such image file: {path}")
    bgr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if bgr is None:
        raise InputError(f"{path} is not a readable image (PNG or JPEG expected)")
    if bgr.ndim == 3:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_BGRA2RGBA if bgr.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    if bgr.dtype == np.uint16:
        bgr = (bgr / 257.0).astype(np.uint8)
    return to_rgb_uint8(bgr, what=os.path.basename(path))


def write_image(path, image):
    """(H, W, 3) uint8 RGB -> PNG/JPEG file, written whole or not at all, without metadata."""
    ext = os.path.splitext(path)[1] or ".png"
    ok, buf = cv2.imencode(ext, cv2.cvtColor(to_rgb_uint8(image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputError(f"cannot encode an image as {ext}")
    write_atomically(path, buf.tofile)
