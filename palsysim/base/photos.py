"""Image plumbing shared by the CLI, the nodes and training: one RGB uint8 convention."""
import os
import re
import warnings

import cv2
import numpy as np

from .errors import InputError
from .files import write_atomically

MIN_SIDE = 64  # smaller crops give MediaPipe nothing to find
# 80 megapixels (e.g. 10000x8000): more than any camera's face photo, less than Pillow's decompression-bomb
# warning (89 MP); a header claiming more would make the decoder allocate gigabytes before any check.
MAX_PIXELS = 80_000_000


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


def letterbox(image, height, width, fill=0):
    """(H, W, C) uint8 -> (height, width, C): scaled to fit whole (aspect kept), centred on `fill`."""
    s = min(height / image.shape[0], width / image.shape[1])
    small = cv2.resize(image, (max(1, round(image.shape[1] * s)), max(1, round(image.shape[0] * s))),
                       interpolation=cv2.INTER_AREA)
    out = np.full((height, width, image.shape[2]), fill, image.dtype)
    y0, x0 = (height - small.shape[0]) // 2, (width - small.shape[1]) // 2
    out[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
    return out


def check_size(image, what="image", min_side=MIN_SIDE):
    """Refuse photos too small to hold a detectable face."""
    h, w = image.shape[:2]
    if min(h, w) < min_side:
        raise InputError(f"{what} is {w}x{h} pixels; a face photo needs at least {min_side}x{min_side} (use a larger photo)")


def read_image(path):
    """A photo file -> (H, W, 3) uint8 RGB, upright, with a message that names the file when it cannot be read.

    The one photo reader of the CLI, training, evaluate and the runner's uploads. It decodes with
    Pillow and applies the EXIF orientation as ComfyUI's LoadImage does (ImageOps.exif_transpose),
    so a phone JPEG tagged "rotate 90" gives the same pixels here as in a workflow. Transparency is
    composited on white (to_rgb_uint8); 16-bit images are scaled to 8 bits.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError
    if not os.path.isfile(path):
        raise InputError(f"no such image file: {path}")
    try:
        with warnings.catch_warnings():  # Pillow's bomb warning: the size check below gives the message
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            if im.width * im.height > MAX_PIXELS:  # checked before decoding: the header alone is read
                raise too_large(path, f"{im.width}x{im.height} = {im.width * im.height:,} pixels")
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                a = np.clip(np.asarray(im, dtype=np.float64) / 257.0 + 0.5, 0, 255).astype(np.uint8)
            else:
                has_alpha = "A" in im.getbands() or (im.mode == "P" and "transparency" in im.info)
                a = np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
    except InputError:
        raise
    except Image.DecompressionBombError as e:  # Pillow refuses at open, before its size is known to the caller
        pixels = re.search(r"\((\d+) pixels\)", str(e))
        raise too_large(path, f"{int(pixels[1]):,} pixels" if pixels else str(e)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise InputError(f"{path} is not a readable image (PNG or JPEG expected)") from None
    return to_rgb_uint8(a, what=os.path.basename(path))


def too_large(path, size):
    return InputError(f"{path} is {size}, over the {MAX_PIXELS:,} pixels a photo may have here: downscale it "
                      f"(a face needs about 1000x1000 pixels) and give the smaller copy")


def refuse_unreadable(paths, read=None, what="photo"):
    """Read every photo once, before any work: one InputError listing each that cannot be read, and why.

    read: what reading means (default read_image); e.g. the runner's cached PNG re-encoding, or read_video
    (what: "video", as the message calls them).
    """
    problems = []
    for path in paths:
        try:
            (read or read_image)(path)
        except InputError as e:
            problems.append(str(e))
    refuse_problems(problems, what)


def refuse_problems(problems, what="photo"):
    """refuse_unreadable's one message for the read errors (messages) a caller gathered itself."""
    if problems:
        raise InputError(f"{len(problems)} {what}(s) cannot be read: move them away or replace them:\n  "
                         + "\n  ".join(problems))


def write_image(path, image):
    """(H, W, 3) uint8 RGB -> PNG/JPEG file, written whole or not at all, without metadata."""
    ext = os.path.splitext(path)[1] or ".png"
    ok, buf = cv2.imencode(ext, cv2.cvtColor(to_rgb_uint8(image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputError(f"cannot encode an image as {ext}")
    write_atomically(path, buf.tofile)
