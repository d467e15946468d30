"""The patient dataset: DIR/<patient>/<expression>/*.png|jpg -> face crops and their condition images.

Every photo is checked before anything trains: unknown folder names, unreadable files and photos
without a face are gathered and reported in one message, so a user fixes them all in one go.
Crops and conditions are made once, with the core's own preprocessing (the same landmark crop and
Canny that inference uses), and kept in memory: nothing derived from a patient photo is written.
"""
import os
from dataclasses import dataclass

import numpy as np

from palsysim.base.errors import InputError
from palsysim.base.layout import is_photo
from palsysim.base.photos import read_image
from palsysim.base.vocabulary import ITEMS
from palsysim.condition.codc import codc_condition
from palsysim.condition.facecrop import crop_face, face_crop, pf_condition
from palsysim.face.landmarks import face_landmarks

EXPRESSIONS = ITEMS  # the 10 Yanagihara grading items, as folder names
CONDITIONS = ("pf", "codc")


class DatasetError(InputError):
    """Everything wrong with a dataset folder, one problem per line."""


@dataclass
class Dataset:
    """N face crops and their conditions, all (N, S, S, 3) uint8 at the training resolution."""
    images: np.ndarray
    conditions: np.ndarray
    patients: int
    expressions: dict  # expression -> number of photos
    warnings: list     # what the user should know but need not fix, one line each (terminal only)

    def __len__(self):
        return len(self.images)


def _hidden(name):
    return name.startswith(".") or name in ("Thumbs.db", "desktop.ini")


def find_photos(data_dir):
    """(photos, problems): photos as (patient index, expression, path) in a stable order.

    Problems name paths relative to data_dir; they reach the user's terminal only.
    """
    if not os.path.isdir(data_dir):
        raise DatasetError(f"the dataset folder does not exist: {data_dir}")
    photos, problems = [], []
    root = os.path.realpath(data_dir)

    def leaves_dataset(path, rel):
        # a link out of DATA would train on (and pass for) photos the user never put in the dataset
        if os.path.commonpath([root, os.path.realpath(path)]) != root:
            problems.append(f"{rel}: a link to outside the dataset folder, not followed (copy the photos in instead)")
            return True
        return False
    patients = sorted(n for n in os.listdir(data_dir) if not _hidden(n))
    for p, patient in enumerate(patients):
        patient_dir = os.path.join(data_dir, patient)
        if leaves_dataset(patient_dir, patient):
            continue
        if not os.path.isdir(patient_dir):
            problems.append(f"{patient}: a file where a patient folder belongs (layout: DIR/<patient>/<expression>/*.png)")
            continue
        for expression in sorted(n for n in os.listdir(patient_dir) if not _hidden(n)):
            folder = os.path.join(patient_dir, expression)
            rel = os.path.join(patient, expression)
            if leaves_dataset(folder, rel):
                continue
            if not os.path.isdir(folder):
                problems.append(f"{rel}: a file where an expression folder belongs")
                continue
            if expression not in EXPRESSIONS:
                problems.append(f"{rel}: unknown expression folder {expression!r} (use one of: {', '.join(EXPRESSIONS)})")
                continue
            for name in sorted(n for n in os.listdir(folder) if not _hidden(n)):
                if leaves_dataset(os.path.join(folder, name), os.path.join(rel, name)):
                    continue
                if is_photo(name):
                    photos.append((p, expression, os.path.join(folder, name)))
                else:
                    problems.append(f"{os.path.join(rel, name)}: not a PNG or JPEG photo")
    if not photos and not problems:
        problems.append("no photos found (layout: DIR/<patient>/<expression>/*.png|jpg)")
    return photos, problems


def _landmarked(path, what):
    image = read_image(path)
    return image, face_landmarks(image, max_faces=2, what=what)  # 2: to tell a photo with more than one face


def load_dataset(data_dir, resolution=512, condition="pf", donors_dir=None):
    """Crops and conditions of every photo, or one DatasetError listing every problem found.

    condition "pf": Canny of the patient's face crop. "codc": the patient's organs on a donor's
    face contour (donor photos from donors_dir, assigned to patients in turn).
    """
    if condition not in CONDITIONS:
        raise DatasetError(f"unknown condition {condition!r}: use pf or codc")
    photos, problems = find_photos(data_dir)
    donors = []
    if condition == "codc":
        donors, donor_problems = _load_donors(donors_dir, resolution)
        problems += donor_problems
    images, conditions, counts, warnings = [], [], {}, []
    for patient, expression, path in photos:
        rel = os.path.relpath(path, data_dir)
        try:
            image, face = _landmarked(path, what=rel)
            if face.faces_found > 1:
                warnings.append(f"{rel}: more than one face; trained on the largest (crop the photo to the patient "
                                "to be sure)")
            crop, matrix = face_crop(image, face.xy, resolution)
            if condition == "pf":
                cond = pf_condition(image, face.xy, resolution)
            elif donors:  # without donors the problem is already listed; the photos are still checked
                donor_crop, donor_face = donors[patient % len(donors)]
                cond, _ = codc_condition(crop, crop_face(face, matrix, resolution).xy, donor_crop, donor_face.xy)
            else:
                continue
        except (InputError, OSError) as e:  # OSError: a file that vanished or cannot be opened meanwhile
            problems.append(f"{rel}: {e}")
            continue
        images.append(crop)
        conditions.append(np.repeat(cond[..., None], 3, axis=2))
        counts[expression] = counts.get(expression, 0) + 1
    if problems:
        raise DatasetError(f"the dataset in {data_dir} has {len(problems)} problem(s); fix them and run again:\n  "
                           + "\n  ".join(problems))
    return Dataset(np.stack(images), np.stack(conditions), len({p for p, _, _ in photos}), counts, warnings)


def _load_donors(donors_dir, resolution):
    """[(crop, Face in crop pixels)] of every donor photo, and the problems met."""
    if not donors_dir or not os.path.isdir(donors_dir):
        return [], [f"--condition codc needs --donors DIR, a folder of non-patient face photos (got {donors_dir})"]
    donors, problems = [], []
    for name in sorted(n for n in os.listdir(donors_dir) if not _hidden(n)):
        path = os.path.join(donors_dir, name)
        if not is_photo(name):
            problems.append(f"donor {name}: not a PNG or JPEG photo")
            continue
        try:
            image, face = _landmarked(path, what=f"donor {name}")
        except InputError as e:
            problems.append(str(e))
            continue
        crop, matrix = face_crop(image, face.xy, resolution)
        donors.append((crop, crop_face(face, matrix, resolution)))
    if not donors and not problems:
        problems.append(f"no donor photos in {donors_dir}")
    return donors, problems
