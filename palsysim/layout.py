"""The one list of photo file types, which files of a folder are photos, and where a patient's rest photo is.

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


REST_NAMES = tuple("rest" + ext for ext in PHOTO_EXTS)


def find_rest_photo(patient_dir):
    """The patient's rest photo in a dataset folder, or None: patient_dir/rest.png|jpg|jpeg (the runner's
    layout), else the first photo in patient_dir/rest/ (the training layout)."""
    for name in REST_NAMES:
        if os.path.isfile(os.path.join(patient_dir, name)):
            return os.path.join(patient_dir, name)
    folder = os.path.join(patient_dir, "rest")
    if os.path.isdir(folder):
        found = photos_in(folder)
        if found:
            return found[0]
    return None
