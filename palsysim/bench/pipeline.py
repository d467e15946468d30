"""`python -m palsysim bench preprocess`: CODC preprocessing speed against landmark detection alone.

Both timings run on the same two 512x512 faces (patient and donor, real photographs shipped in
installed packages) with one reused MediaPipe detector: "detect" is the two detections, "codc"
is the two detections plus everything else that makes the condition. The ratio codc/detect is
the preprocessing's overhead; the target is at most 1.2, for a donor never seen before (cold). The same
again for a donor whose contour is kept from the call before (warm), and for a patient's ten Yanagihara
photos against one donor, whose landmarks, boxes and contour are made once.
"""
import os
import time

import numpy as np


def sample_photos():
    """Patient and donor photos as read (astronaut, Grace Hopper: real photographs shipped in installed packages)."""
    import matplotlib
    import skimage

    from ..base.photos import read_image
    return [read_image(os.path.join(os.path.dirname(skimage.__file__), "data", "astronaut.png")),
            read_image(os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg"))]


def sample_faces(size=512):
    """Patient and donor photos as (size, size, 3) uint8 face crops (astronaut, Grace Hopper)."""
    from ..condition.facecrop import face_crop
    from ..face.landmarks import face_landmarks
    return [face_crop(image, face_landmarks(image).xy, size)[0] for image in sample_photos()]


def _interleaved_s(fns, repeats):
    """Median seconds of each fn, run in turns so that load from other processes hits all alike: wall-clock
    medians, and medians of the process's CPU time (all its threads), which other processes' load moves less."""
    wall, cpu = [[] for _ in fns], [[] for _ in fns]
    for _ in range(repeats):
        for fn, w, c in zip(fns, wall, cpu):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            w.append(time.perf_counter() - start)
            c.append(time.process_time() - start_cpu)
    return [float(np.median(t)) for t in wall], [float(np.median(t)) for t in cpu]


def preprocess(repeats=30, size=512, log=print):
    """Time landmark detection alone and the whole CODC preprocessing, for one condition and for a
    patient's ten Yanagihara photos against one donor; returns the figures as a dict.

    Cold: the kept donor contours (condition/reuse.py) are dropped before each call, so every call
    makes its donor's contour as a user's first run with that donor does; the ratio against the
    target is this one. Warm: the same donor as the call before, its contour kept, as for every
    later patient against that donor.
    """
    from ..condition.codc import CONTOURS_KEPT, codc_condition, codc_conditions
    from ..face.landmarks import face_landmarks
    patient, donor = sample_faces(size)
    photos = list(expression_photos(size)[2].values())

    def detect():
        return face_landmarks(patient).xy, face_landmarks(donor).xy

    def condition():
        p, d = detect()
        return codc_condition(patient, p, donor, d)

    def detect_batch():
        return [face_landmarks(photo).xy for photo, _ in photos], face_landmarks(donor).xy

    def condition_batch():
        xys, d = detect_batch()  # the first photo is the rest one: its landmarks give the organ scales
        return codc_conditions(zip((photo for photo, _ in photos), xys), donor, d, rest_xy=xys[0])

    def cold(fn):
        def run():
            CONTOURS_KEPT.clear()
            return fn()
        return run

    fns = (detect, cold(condition), condition, detect_batch, cold(condition_batch), condition_batch)
    for fn in fns:  # warm up: detector built, caches filled
        fn()
    wall, cpu = _interleaved_s(fns, repeats)
    names = ("detect", "cold", "warm", "detect_batch", "batch_cold", "batch_warm")
    t, c = dict(zip(names, wall)), dict(zip(names, cpu))
    n = len(photos)

    def figures(codc_s, detect_s, photos=1):
        return {"codc_ms": 1e3 * codc_s, "ratio": codc_s / detect_s, "beyond_detection_ms": 1e3 * (codc_s - detect_s),
                "ms_per_condition": 1e3 * codc_s / photos}

    res = {"size": size, "repeats": repeats, "detect_ms": 1e3 * t["detect"], "detections_per_s": 1.0 / t["detect"],
           **figures(t["cold"], t["detect"]), "conditions_per_s": 1.0 / t["cold"],
           "warm": figures(t["warm"], t["detect"]),
           "batch": {"photos": n, "detect_ms": 1e3 * t["detect_batch"],
                     **figures(t["batch_cold"], t["detect_batch"], n),
                     "warm": figures(t["batch_warm"], t["detect_batch"], n)},
           "cpu_ms": {k: 1e3 * v for k, v in c.items()}}
    b = res["batch"]
    log(f"{size}x{size}, patient + donor, median of {repeats}; cold: the donor's contour made in the call (a donor "
        f"never seen), warm: kept from the call before (the same donor again):")
    log(f"  landmark detection alone (2 faces): {res['detect_ms']:7.2f} ms  ({res['detections_per_s']:.1f} pairs/s)")
    for name, r in (("cold", res), ("warm", res["warm"])):
        log(f"  whole CODC preprocessing, {name}  : {r['codc_ms']:7.2f} ms  ({r['beyond_detection_ms']:.2f} ms "
            f"beyond detection)  ratio {r['ratio']:.3f}x" + ("  (target <= 1.2x)" if name == "cold" else ""))
    log(f"  CPU time, same calls: detection {1e3 * c['detect']:.2f} ms, cold {1e3 * c['cold']:.2f} ms "
        f"({c['cold'] / c['detect']:.3f}x), warm {1e3 * c['warm']:.2f} ms ({c['warm'] / c['detect']:.3f}x)")
    log(f"a patient's {n} Yanagihara photos against one donor (its landmarks, boxes and contour made once):")
    log(f"  landmark detection alone ({n} + 1 faces)      : {b['detect_ms']:7.2f} ms")
    for name, r in (("cold", b), ("warm", b["warm"])):
        log(f"  whole CODC preprocessing ({n} conditions), {name}: {r['codc_ms']:7.2f} ms  "
            f"({r['ms_per_condition']:.2f} ms per condition)  ratio {r['ratio']:.3f}x")
    log(f"  CPU time, same calls: detection {1e3 * c['detect_batch']:.2f} ms, cold {1e3 * c['batch_cold']:.2f} ms "
        f"({c['batch_cold'] / c['detect_batch']:.3f}x), warm {1e3 * c['batch_warm']:.2f} ms "
        f"({c['batch_warm'] / c['detect_batch']:.3f}x)")
    return res


def expression_photos(size=512, severity=0.6, side="left"):
    """A synthetic patient's ten Yanagihara photos (astronaut + palsy) and a donor (Grace Hopper), cropped as in
    training -> (donor crop, donor (478, 2), {item: (crop (size, size, 3) uint8, (478, 2))}), rest first."""
    from ..condition.facecrop import face_crop, transform_points
    from ..face.landmarks import face_landmarks
    from ..face.synth import EXPRESSIONS, synth_expression
    astronaut, donor = sample_photos()
    d_img, m = face_crop(donor, face_landmarks(donor).xy, size)
    d_xy = transform_points(face_landmarks(donor).xy, m)
    healthy = face_landmarks(astronaut)
    photos = {}
    for item in EXPRESSIONS:
        image, xy = synth_expression(astronaut, healthy, item, side, severity)
        crop, m = face_crop(image, xy, size)
        photos[item] = crop, transform_points(xy, m)
    return d_img, d_xy, photos


def organ_aspect(xy, name):
    """Width over height of one organ's landmarks (478, 2) -> float."""
    from ..face import regions as R
    pts = np.asarray(xy)[list(R.ORGANS[name]), :2]
    w, h = pts.max(0) - pts.min(0)
    return float(w / h)


def codc_expressions(severity=0.6, side="left", size=512):
    """CODC on the ten Yanagihara items of one synthetic patient (astronaut + palsy), Grace Hopper as donor.

    Each item's photo and its rest photo are warped from the astronaut (synth_expression), both
    faces cropped as in training; the rest photo's landmarks give the organ scales. Returns one row
    per item: {"item", "aspect": {organ: (patient, condition)} (aspect ratio relative to rest),
    "asymmetry": {measure: (patient percent, condition percent)}, "own_edges_iou"}.
    """
    from ..condition.codc import ORGAN_NAMES, codc_condition
    from ..condition.facecrop import pf_condition
    from ..face.asymmetry import MEASURES, measure
    d_img, d_xy, photos = expression_photos(size, severity, side)
    rest_img, rest_xy = photos["rest"]
    rest_mapped = codc_condition(rest_img, rest_xy, d_img, d_xy, rest_xy=rest_xy)[1].map_landmarks(rest_xy)
    rows = []
    for item, (img, xy) in photos.items():
        cond, organs = codc_condition(img, xy, d_img, d_xy, rest_xy=rest_xy)
        mapped = organs.map_landmarks(xy)
        own, kept = measure(xy)["asymmetry"], measure(mapped)["asymmetry"]
        own_edges = pf_condition(img, xy, size) > 0
        iou = float((own_edges & (cond > 0)).sum() / (own_edges | (cond > 0)).sum())
        rows.append({"item": item,
                     "aspect": {n: (organ_aspect(xy, n) / organ_aspect(rest_xy, n), organ_aspect(mapped, n) / organ_aspect(rest_mapped, n))
                                for n in ORGAN_NAMES},
                     "asymmetry": {k: (own[k]["percent"], kept[k]["percent"]) for k in MEASURES},
                     "own_edges_iou": iou})
    return rows


def codc_measures(log=print, **kw):
    """Print codc_expressions as a Markdown table (the one in BENCHMARKS.md); returns the rows."""
    from ..face.asymmetry import MEASURES
    rows = codc_expressions(**kw)
    short = {"brow_height": "brow", "palpebral_fissure_height": "fissure", "commissure_height": "comm. height",
             "commissure_excursion": "excursion", "smile_angle": "smile angle"}
    log("| item | mouth aspect / rest (patient, CODC) | eyes aspect / rest | worst aspect error | "
        + " | ".join(f"{short[m]} asym. %" for m in MEASURES) + " | IoU with own edges |")
    log("|" + "---|" * (5 + len(MEASURES)))
    for r in rows:
        eyes = [np.mean([r["aspect"][n][k] for n in ("right_eye", "left_eye")]) for k in (0, 1)]
        worst = max(abs(c / p - 1) for p, c in r["aspect"].values())
        log(f"| {r['item']} | {r['aspect']['mouth'][0]:.3f}, {r['aspect']['mouth'][1]:.3f} | {eyes[0]:.3f}, "
            f"{eyes[1]:.3f} | {100 * worst:.1f}% | "
            + " | ".join(f"{p:.1f} -> {c:.1f}" for p, c in (r["asymmetry"][m] for m in MEASURES))
            + f" | {r['own_edges_iou']:.2f} |")
    return rows


# What `bench generate` times, as --set/--bypass of the PF workflow: "none" leaves the ControlNet out.
CONTROLNET_MODES = {
    "none": ([], ["apply controlnet"]),
    "everywhere": (["controlnet.apply=everywhere"], []),
    "window_only": (["controlnet.apply=window_only", "controlnet.t_lo=500", "controlnet.t_hi=700"], []),
    "window_then_base": (["controlnet.apply=window_then_base", "controlnet.t_lo=500", "controlnet.t_hi=700",
                          "controlnet.base_control_net_name={controlnet}"], []),
}


def generate(models_dir, checkpoint, controlnet, servers=(1, 2, 3), jobs=12, size=64, steps=1, then=None, log=print):
    """Generation through real embedded ComfyUI hosts (the shipped PF workflow, privacy gate bypassed):
    seconds per image for each ControlNet mode on one host, then images/s with each number of hosts
    sharing one batch. Every host is warmed up (models loaded) before it is timed. then: a function of the
    first host's URL, run on it after the modes (another bench that need not start a host of its own); its
    result goes in the figures as "then". Returns the figures."""
    import tempfile

    from ..base.layout import find_patients
    from ..base.photos import write_image
    from ..base.vocabulary import ITEMS
    from ..base.workflows import api_path
    from ..comfy import host
    from ..comfy.generate import generate
    workflow = api_path("palsy_pf")
    common = [f"checkpoint.ckpt_name={checkpoint}", f"controlnet.control_net_name={controlnet}",
              f"EmptyLatentImage.width={size}", f"EmptyLatentImage.height={size}", f"KSampler.steps={steps}"]
    res = {"size": size, "steps": steps, "jobs": jobs, "modes": {}, "servers": {}}
    with tempfile.TemporaryDirectory() as tmp:
        patients = os.path.join(tmp, "patients")
        write_image(os.path.join(patients, "sample", f"{ITEMS[0]}.png"), sample_faces(256)[0])
        found = find_patients(patients)

        def batch(urls, overrides, bypasses, seeds):
            start = time.perf_counter()
            summary = generate(urls, workflow, found, tempfile.mkdtemp(dir=tmp), common + overrides,
                               ["privacy gate"] + bypasses, seeds=seeds, progress=False)
            if summary["failed"] or summary["done"] != len(seeds):
                raise RuntimeError("generation failed: " + "; ".join(summary["failed"]))
            return time.perf_counter() - start

        with host.servers(embedded=1, models_dir=models_dir) as urls:
            for mode, (overrides, bypasses) in CONTROLNET_MODES.items():
                overrides = [o.format(controlnet=controlnet) for o in overrides]
                batch(urls, overrides, bypasses, [0])
                res["modes"][mode] = batch(urls, overrides, bypasses, list(range(1, jobs + 1))) / jobs
            if then:
                res["then"] = then(urls[0])
        log(f"{size}x{size}, {steps} step(s), {jobs} images per figure, one host:")
        for mode, s in res["modes"].items():
            log(f"  {mode:16s} {s:8.3f} s/image  ({s / res['modes']['everywhere']:.2f}x everywhere)")
        for n in servers:
            with host.servers(embedded=n, models_dir=models_dir) as urls:
                for k, url in enumerate(urls):
                    batch([url], [], [], [k])
                res["servers"][n] = jobs / batch(urls, [], [], list(range(1, jobs + 1)))
        log("images/s with N hosts sharing one batch (ControlNet everywhere):")
        for n, rate in res["servers"].items():
            log(f"  {n} host(s): {rate:7.3f} images/s  ({rate / res['servers'][servers[0]]:.2f}x {servers[0]} host(s))")
    return res
