"""Which alignment agrees better with dlib's reference pipeline? `python tests/bench_dlib_alignment.py`

dlib's reference pipeline for its ResNet (dlib's dnn_face_recognition_ex.cpp and
python_examples/face_recognition.py): HOG detector, the 5-point predictor, dlib's face chip. A second
reference, face_recognition's default, uses the 68-point predictor instead; that file is read here
only to measure, never by the pack. Candidate: MediaPipe's landmarks mapped onto dlib's five points
(same chip). Prints, per photo, each descriptor's distance to the references', and how far the
pairwise distances and same-person decisions are from the references'.
"""
import itertools
import os
import sys
import time

import dlib
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "support"))
from real_faces import photos  # noqa: E402

from palsysim.face.landmarks import face_landmarks  # noqa: E402
from palsysim.face.synth import synth_palsy  # noqa: E402
from palsysim.identity import dlib_face as D  # noqa: E402

# dlib's 5-point order: image-left eye's outer/inner corner... measured nearest MediaPipe points (< 2 px)
MEDIAPIPE_FOR_DLIB5 = [263, 362, 33, 133, 2]


def main():
    det, pred5, rec = D.models()
    pred68 = dlib.shape_predictor(os.path.join(D.model_dir(), "shape_predictor_68_face_landmarks.dat"))
    ims = photos()
    for name in ("astronaut", "grace_hopper"):
        ims[f"{name}_palsy_0.8"] = synth_palsy(ims[name], face_landmarks(ims[name]), "left", 0.8)[0]
        ims[f"{name}_mirror"] = np.ascontiguousarray(ims[name][:, ::-1])
    desc = {"reference_68": {}, "dlib_5": {}, "mediapipe_5": {}}
    t = {"dlib_5": 0.0, "mediapipe_5": 0.0}
    for name, im in ims.items():
        box = max(det(im, 1), key=lambda r: r.area())
        desc["reference_68"][name] = np.array(rec.compute_face_descriptor(im, pred68(im, box)))
        t0 = time.perf_counter()
        desc["dlib_5"][name] = D.descriptors([im])[0]
        t["dlib_5"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        xy = face_landmarks(im).xy[:, :2]
        pts = [dlib.point(int(round(x)), int(round(y))) for x, y in xy[MEDIAPIPE_FOR_DLIB5]]
        shape = dlib.full_object_detection(box, pts)
        desc["mediapipe_5"][name] = np.array(rec.compute_face_descriptor(im, shape))
        t["mediapipe_5"] += time.perf_counter() - t0
    pairs = list(itertools.combinations(ims, 2))
    ref = desc["reference_68"]
    print(f"{'photo':24s} {'mediapipe_5 to dlib_5':>22s} {'dlib_5 to 68':>13s} {'mediapipe_5 to 68':>18s}")
    for n in ims:
        d = {k: v[n] for k, v in desc.items()}
        print(f"{n:24s} {np.linalg.norm(d['mediapipe_5'] - d['dlib_5']):22.4f} "
              f"{np.linalg.norm(d['dlib_5'] - ref[n]):13.4f} {np.linalg.norm(d['mediapipe_5'] - ref[n]):18.4f}")
    for cand, refname in (("mediapipe_5", "dlib_5"), ("dlib_5", "reference_68"), ("mediapipe_5", "reference_68")):
        c, ref = desc[cand], desc[refname]
        err = [abs(np.linalg.norm(c[a] - c[b]) - np.linalg.norm(ref[a] - ref[b])) for a, b in pairs]
        same = [(np.linalg.norm(c[a] - c[b]) < D.THRESHOLD) == (np.linalg.norm(ref[a] - ref[b]) < D.THRESHOLD)
                for a, b in pairs]
        own = np.mean([np.linalg.norm(c[n] - ref[n]) for n in ims])
        print(f"{cand} vs {refname}: mean distance to the reference descriptor {own:.4f}; pairwise distance error mean "
              f"{np.mean(err):.4f}, max {np.max(err):.4f}; same-person decision agrees on {sum(same)}/{len(pairs)} "
              f"pairs; {1000 * t[cand] / len(ims):.0f} ms per photo")


if __name__ == "__main__":
    main()
