"""The one list of photo file types, and which files of a folder are photos.

Every command that reads patients, donors, frames or generated images asks here, so that no command
sees a photo another refuses. Hidden files (editors' and macOS's "._" copies, our own atomic-write
temporaries) are never photos.
"""
import os

PHOTO_EXTS = (".png", ".jpg", ".jpeg")


def is_photo(name):
    """True for a file name with a photo extension (any case) that is not hidden."""
    return name.lower().endswith(PHOTO_EXTS) and not name.startswith(".")


def photos_in(folder):
    """Sorted paths of the photo files directly in folder."""
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if is_photo(f) and os.path.isfile(os.path.join(folder, f)))
