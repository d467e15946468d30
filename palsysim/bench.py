"""`python -m palsysim bench preprocess`: CODC preprocessing speed against landmark detection alone.

Both timings run on the same two 512x512 faces (patient and donor, real photographs shipped in
installed packages) with one reused MediaPipe detector: "detect" is the two detections, "codc"
is the two detections plus everything else that makes the condition. The ratio codc/detect is
the preprocessing's overhead; the target is at most 1.3.
"""
import os
import time

import numpy as np


def sample_faces(size=512):
    """Patient and donor photos as (size, size, 3) uint8 face crops (astronaut, Grace Hopper)."""
    import matplotlib
    import skimage

    from .codc import face_crop
    from .images import read_image
    from .landmarks import face_landmarks
    out = []
    for path in (os.path.join(os.path.dirname(skimage.__file__), "data", "astronaut.png"),
                 os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")):
        image = read_image(path)
        out.append(face_crop(image, face_landmarks(image).xy, size)[0])
    return out


def _interleaved_s(fns, repeats):
    """Median seconds of each fn, run in turns so that load from other processes hits all alike."""
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, t in zip(fns, times):
            start = time.perf_counter()
            fn()
            t.append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


def preprocess(repeats=30, size=512, log=print):
    """Time landmark detection alone and the whole CODC preprocessing; returns the figures as a dict."""
    from .codc import codc_condition
    from .landmarks import face_landmarks
    patient, donor = sample_faces(size)

    def detect():
        return face_landmarks(patient).xy, face_landmarks(donor).xy

    def condition():
        p, d = detect()
        return codc_condition(patient, p, donor, d)

    for fn in (detect, condition):  # warm up: detector built, caches filled
        fn()
    t_detect, t_codc = _interleaved_s((detect, condition), repeats)
    res = {"size": size, "repeats": repeats, "detect_ms": 1e3 * t_detect, "codc_ms": 1e3 * t_codc,
           "conditions_per_s": 1.0 / t_codc, "detections_per_s": 1.0 / t_detect, "ratio": t_codc / t_detect}
    log(f"{size}x{size}, patient + donor, median of {repeats}:")
    log(f"  landmark detection alone (2 faces): {res['detect_ms']:7.2f} ms  ({res['detections_per_s']:.1f} pairs/s)")
    log(f"  whole CODC preprocessing          : {res['codc_ms']:7.2f} ms  ({res['conditions_per_s']:.1f} conditions/s)")
    log(f"  ratio (preprocessing / detection) : {res['ratio']:.3f}x  (target <= 1.3x)")
    return res
