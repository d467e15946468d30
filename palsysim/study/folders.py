"""The folders the study commands write, and the rule that keeps them from deleting or overwriting what they
did not write: every folder they make carries MARK, and only a marked folder's contents are theirs to replace."""
import os
import re
import shutil

from ..base.errors import InputError
from ..base.outputs import folder_out, refuse_overlap

DB = "study.sqlite"
IMAGES = "images"
IMAGE_ID = re.compile(r"^[0-9a-f]{32}$")
MARK = ".palsysim-study"
# What a killed `study create` leaves in its .partial folder: the database (with SQLite's side files) and
# image and video copies (media.py), whole or as write_atomically's temporary files.
LEFTOVERS = {MARK, IMAGES, DB, DB + "-journal", DB + "-wal", DB + "-shm"}
LEFTOVER_IMAGE = re.compile(r"^(\.[0-9a-f]{32}\.(png|mp4|webm)\.[a-z0-9_]+\.tmp|[0-9a-f]{32}\.(png|mp4|webm))$")


def _mark(folder):
    open(os.path.join(folder, MARK), "a").close()


def _marked(folder):
    return os.path.isfile(os.path.join(folder, MARK))


def _killed_create(folder):
    """True if folder holds nothing but what an interrupted `study create` writes."""
    if os.path.islink(folder) or not os.path.isdir(folder) or not _marked(folder):
        return False
    if not set(os.listdir(folder)) <= LEFTOVERS:
        return False
    images = os.path.join(folder, IMAGES)
    if not os.path.lexists(images):
        return True
    return (os.path.isdir(images) and not os.path.islink(images)
            and all(LEFTOVER_IMAGE.match(n) and os.path.isfile(os.path.join(images, n)) for n in os.listdir(images)))


def new_study_folder(out, inputs):
    """Check `out` (a new study folder) against the inputs; returns its build folder out + ".partial", made
    new and marked. A .partial that an interrupted create left (marked, nothing else in it) is removed first;
    one that holds anything else is refused, never deleted."""
    if os.path.lexists(out):
        raise InputError(f"{out} already exists: give a new folder for the study (a study is never overwritten)")
    refuse_overlap(out, [i for i in inputs if i])
    tmp = out.rstrip("/\\") + ".partial"
    if os.path.lexists(tmp):
        if not _killed_create(tmp):
            raise InputError(f"{tmp} already exists and holds files `study create` did not write: move them away "
                             "or give another --out")
        shutil.rmtree(tmp)
    os.makedirs(os.path.join(tmp, IMAGES))
    _mark(tmp)
    return tmp


def results_folder(out, study_folder):
    """Check and make `study results --out`: a new or empty folder, or one an earlier `study results` wrote."""
    refuse_overlap(out, [study_folder])
    if os.path.isdir(out) and not _marked(out) and os.listdir(out):
        held = sorted(os.listdir(out))
        raise InputError(f"--out {out} holds files `study results` did not write ({', '.join(held[:3])}"
                         f"{' ...' if len(held) > 3 else ''}): give a new or empty folder")
    folder_out(out)
    _mark(out)
