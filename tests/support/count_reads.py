"""python count_reads.py COUNTS -m palsysim ARGS: the command as `python -m palsysim ARGS`, counting in this
process, per file, how often the one photo reader decodes it and, per image (by its pixels), how often
landmarks run on it; COUNTS gets {"decoded": {path: n}, "landmarked": {sha1 of pixels: n}} at exit.

The two functions are wrapped before any other palsysim module imports them, so every caller is counted."""
import atexit
import hashlib
import json
import runpy
import sys
from collections import Counter

import numpy as np

import palsysim.base.photos as photos
import palsysim.face.landmarks as landmarks

decoded, landmarked = Counter(), Counter()
read_image, face_landmarks = photos.read_image, landmarks.face_landmarks


def counted_read_image(path, *args, **kw):
    decoded[str(path)] += 1
    return read_image(path, *args, **kw)


def counted_face_landmarks(image, *args, **kw):
    landmarked[pixels_key(image)] += 1
    return face_landmarks(image, *args, **kw)


def pixels_key(image):
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


photos.read_image, landmarks.face_landmarks = counted_read_image, counted_face_landmarks
counts_path = sys.argv[1]
atexit.register(lambda: open(counts_path, "w").write(json.dumps({"decoded": decoded, "landmarked": landmarked})))

if __name__ == "__main__":
    assert sys.argv[2] == "-m", "usage: count_reads.py COUNTS -m MODULE ARGS"
    sys.argv = [sys.argv[3]] + sys.argv[4:]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
