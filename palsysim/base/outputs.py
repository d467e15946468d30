"""Where a command may write: never onto or into its inputs, never two results under one name."""
import os

from .errors import InputError
from .layout import PHOTO_EXTS


def _inside(path, folder):
    return os.path.commonpath([path, folder]) == folder


def overlap(path, other):
    """"same", "inside" (path lies in the folder other), "holds" (the folder path holds other) or None,
    compared after resolving symlinks, so a link to a file is the file."""
    a, b = os.path.realpath(path), os.path.realpath(other)
    return "same" if a == b else "inside" if _inside(a, b) else "holds" if _inside(b, a) else None


def refuse_overlap(out, inputs, flag="--out"):
    """InputError if `out` is an input, or a folder tree that holds one or lies inside one."""
    for given in inputs:
        where = overlap(out, given)
        if where == "same":
            raise InputError(f"{flag} {out} is the input {given}: write the results somewhere else")
        if where == "inside":
            raise InputError(f"{flag} {out} lies inside the input folder {given}: write the results outside it")
        if where == "holds":
            raise InputError(f"{flag} {out} holds the input {given}: write the results to a new folder")


def image_file_out(out, flag="--out"):
    """Check an output image path before any work: a PNG or JPEG name, not a folder."""
    if os.path.splitext(out)[1].lower() not in PHOTO_EXTS:
        raise InputError(f"{flag} {out}: name a .png or .jpg file")
    if os.path.isdir(out):
        raise InputError(f"{flag} {out} is a folder; name the image file to write")


def folder_out(out, flag="--out"):
    """Check an output folder before any work: it is a folder or can become one."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise InputError(f"{flag} {out} is an existing file; give a folder for the results")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise InputError(f"{flag} {out}: cannot create the folder ({e.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {out} is not writable; give a folder you can write to")


def unique_names(names):
    """Relative output names -> the same names, each made unique: a name that repeats another
    (ignoring case, as macOS and Windows do) gets _2, _3 ... before its extension.

    Deterministic in the order given, and a collision is impossible, not just unlikely.
    """
    taken, out = set(), []
    for name in names:
        stem, ext = os.path.splitext(name)
        candidate, k = name, 1
        while candidate.casefold() in taken:
            k += 1
            candidate = f"{stem}_{k}{ext}"
        taken.add(candidate.casefold())
        out.append(candidate)
    return out
