"""python count_reads.py COUNTS -m palsysim ARGS: the command as `python -m palsysim ARGS`, counting in this
process, per file, how often the one photo reader decodes it, how often the one video decoder decodes it to
frames and how often it decodes it only to check it (keeping no frame), and, per image (by its pixels), how
often landmarks run on it; COUNTS gets {"decoded": {path: n}, "video_decoded": {path: n}, "video_checked":
{path: n}, "landmarked": {sha1 of pixels: n}} at exit.

The functions are wrapped before any other palsysim module imports them, so every caller is counted."""
import atexit
import hashlib
import json
import runpy
import sys
from collections import Counter

import numpy as np

import palsysim.base.photos as photos
import palsysim.base.video_files as video_files
import palsysim.face.landmarks as landmarks

decoded, video_decoded, video_checked, landmarked = Counter(), Counter(), Counter(), Counter()
read_image, decode_video, face_landmarks = photos.read_image, video_files._decode, landmarks.face_landmarks


def counted_read_image(path, *args, **kw):
    decoded[str(path)] += 1
    return read_image(path, *args, **kw)


def counted_decode_video(path, *args, **kw):
    (video_checked if kw.get("keep") is False else video_decoded)[str(path)] += 1
    return decode_video(path, *args, **kw)


def counted_face_landmarks(image, *args, **kw):
    landmarked[pixels_key(image)] += 1
    return face_landmarks(image, *args, **kw)


def pixels_key(image):
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


photos.read_image, landmarks.face_landmarks = counted_read_image, counted_face_landmarks
video_files._decode = counted_decode_video  # read_video calls it through the module: every video read is counted
counts_path = sys.argv[1]
atexit.register(lambda: open(counts_path, "w").write(json.dumps(
    {"decoded": decoded, "video_decoded": video_decoded, "video_checked": video_checked, "landmarked": landmarked})))

if __name__ == "__main__":
    assert sys.argv[2] == "-m", "usage: count_reads.py COUNTS -m MODULE ARGS"
    sys.argv = [sys.argv[3]] + sys.argv[4:]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
