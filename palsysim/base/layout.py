"""The one list of photo file types and of video file types, which files of a folder are photos, and the
patients layout.

Every command that reads patients, donors, frames or generated images asks here, so that no command
sees a photo another refuses. Hidden files (editors' and macOS's "._" copies, our own atomic-write
temporaries) are never photos.

A patient folder holds one photo per item, <item>.png, or many, <item>/*.png (the paper's 60 frames
per expression), or both forms for different items. Each photo is a *source*: "<item>" for the
one-photo form, "<item>/photo<k>" for the k-th photo of a folder (file-name order, k zero-padded to
the folder's count). Generated images are written under <patient>/<source>/ and paired with their
source by it; the index, not the user's file name, names the folder, so no file name reaches an output.
The headless runner's video workflows also take <item>.mp4|webm|mov, a video, as one source (videos=True).
"""
import os

from .errors import InputError
from .vocabulary import ITEMS

PHOTO_EXTS = (".png", ".jpg", ".jpeg")
VIDEO_EXTS = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v")  # what base/video_files.py decodes


def is_photo(path):
    """True for a file name or path whose name has a photo extension (any case) and is not hidden."""
    name = os.path.basename(path)
    return name.lower().endswith(PHOTO_EXTS) and not name.startswith(".")


def is_video(path):
    """True for a file name or path whose name has a video extension (any case) and is not hidden."""
    name = os.path.basename(path)
    return name.lower().endswith(VIDEO_EXTS) and not name.startswith(".")


def photos_in(folder, videos=False):
    """Sorted paths of the photo files directly in folder; videos: the video files too."""
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if (is_photo(f) or videos and is_video(f)) and os.path.isfile(os.path.join(folder, f)))


def find_rest_photo(patient_dir):
    """The patient's rest photo in a patients folder, or None: rest.png|jpg|jpeg, else the first photo in rest/."""
    return first_photo(sources_in(patient_dir), "rest")


def sources_in(patient_dir, videos=False):
    """{source: photo path} of one patient folder, sorted by source (see the module docstring); videos:
    <item>.mp4 etc. are sources too. An item given in both forms is refused by the caller (items_in_both)."""
    out = {}
    for name in sorted(os.listdir(patient_dir)):
        path = os.path.join(patient_dir, name)
        if os.path.isfile(path) and (is_photo(name) or videos and is_video(name)):
            out[os.path.splitext(name)[0]] = path
        elif os.path.isdir(path) and not name.startswith("."):
            photos = photos_in(path)
            width = len(str(len(photos)))
            out.update({f"{name}/photo{k:0{width}d}": p for k, p in enumerate(photos, 1)})
    return dict(sorted(out.items()))


def items_in_both(sources):
    """The items a patient gives as a file and as a folder (one form per item, so that a source is one photo)."""
    files = {s for s in sources if "/" not in s}
    return sorted(files & {source_item(s) for s in sources if "/" in s})


def source_item(source):
    """The Yanagihara item (or other name) a source is a photo of: "grin/photo07" -> "grin"."""
    return source.split("/", 1)[0]


def first_photo(sources, item):
    """The item's photo where one photo stands for the item (CODC's rest photo, a grid's tile): the
    one-photo form, else the folder's first (never a video); None without one."""
    return next((p for s, p in sources.items() if source_item(s) == item and is_photo(p)), None)


def generated_sources(patient_dir, videos=False):
    """[(source, image path)] under one patient's folder of a generated tree: <patient>/<item>/*.png and
    <patient>/<item>/photo<k>/*.png, the runner's output layout; videos: its video jobs' <item>/*.mp4 too."""
    out = []
    for item in sorted(d for d in os.listdir(patient_dir) if os.path.isdir(os.path.join(patient_dir, d))
                       and not d.startswith(".")):
        folder = os.path.join(patient_dir, item)
        out += [(item, p) for p in photos_in(folder, videos)]
        for sub in sorted(d for d in os.listdir(folder) if d.startswith("photo") and os.path.isdir(os.path.join(folder, d))):
            out += [(f"{item}/{sub}", p) for p in photos_in(os.path.join(folder, sub), videos)]
    return out


def find_patients(root, expressions=None, videos=False):
    """{patient: {source: photo path}} from root/<patient>/<item>.<ext> or <item>/*.<ext> (layout.py's
    sources): every photo of each patient who has one of `expressions` (all patients if None); Plan
    picks the jobs' photos. videos: <item>.mp4|webm|mov are sources too (the runner's video jobs)."""
    if not root or not os.path.isdir(root):
        raise InputError(f"--patients {root!r} is not a folder (expected PATIENTS/<patient>/<expression>.png "
                         f"or PATIENTS/<patient>/<expression>/*.png)")
    for e in expressions or ():
        if e not in ITEMS:
            raise InputError(f"unknown expression {e!r}: use the Yanagihara items {', '.join(ITEMS)}")
    patients = {}
    for name in sorted(os.listdir(root)):
        folder = os.path.join(root, name)
        if not os.path.isdir(folder) or name.startswith("."):
            continue
        stems = [os.path.splitext(f)[0] for f in os.listdir(folder) if is_photo(f) or videos and is_video(f)]
        twice = sorted({s for s in stems if stems.count(s) > 1})
        if twice:
            raise InputError(f"{name}: two {'files' if videos else 'photos'} for {twice[0]}: keep one, or put photos "
                             f"in a {twice[0]}/ folder")
        photos = sources_in(folder, videos)
        strange = sorted({source_item(s) for s in photos} - set(ITEMS))
        if strange:
            raise InputError(f"{name}/{strange[0]}: name each photo (or folder of photos) after its Yanagihara item "
                             f"({', '.join(ITEMS)})")
        both = items_in_both(photos)
        if both:
            raise InputError(f"{name}: {both[0]} is both a photo and a folder of photos: keep one of the two")
        if expressions is None and photos or {source_item(s) for s in photos} & set(expressions or ()):
            patients[name] = photos
    if not patients:
        raise InputError(f"no patient photos under {root} (expected {root}/<patient>/<expression>.png or "
                         f"{root}/<patient>/<expression>/*.png)")
    return patients
