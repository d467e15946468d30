"""`python -m palsysim bench video`: a synthetic 30-frame palsy grin (rest -> grin -> rest, warped from a real
photo) through the video pipeline: seconds per frame for landmarks + smoothing, PF and CODC conditions and
flicker, and what the One-Euro filter does to jitter and lag against the detector's raw landmarks."""
import time

import numpy as np


def video(frames=30, item="grin", log=print):
    """Time each stage per frame and measure the filter; returns the figures as a dict."""
    from ..condition.sequence import sequence_conditions, sequence_landmarks
    from ..face.landmarks import face_landmarks
    from ..face.smoothing import jitter
    from ..face.synth import synth_expression_video
    from ..measure.video import dynamics, flicker
    from .pipeline import sample_photos
    donor, patient = sample_photos()
    seq = synth_expression_video(patient, face_landmarks(patient), item, frames)
    video_frames = [f for f, _ in seq]
    donor_xy = face_landmarks(donor).xy
    out = {}

    def timed(name, fn):
        start = time.perf_counter()
        result = fn()
        out[name] = (time.perf_counter() - start) / frames
        return result

    raw, smooth = timed("landmarks_s_per_frame", lambda: sequence_landmarks(video_frames, 30.0))
    timed("pf_s_per_frame", lambda: sequence_conditions(video_frames, smooth, "pf"))
    timed("codc_s_per_frame", lambda: sequence_conditions(video_frames, smooth, "codc", donor, donor_xy))
    timed("flicker_s_per_frame", lambda: flicker(video_frames))
    d = dynamics(smooth, raw)
    out.update(jitter_raw=jitter(raw), jitter_smoothed=jitter(smooth),
               lag_frames={m: v["lag"] for m, v in d.items() if v["r"] is not None},
               r_smoothed_vs_raw={m: round(v["r"], 3) for m, v in d.items() if v["r"] is not None})
    log(f"{frames} frames of a synthetic {item}, 512 px faces, one CPU process:")
    for k in ("landmarks_s_per_frame", "pf_s_per_frame", "codc_s_per_frame", "flicker_s_per_frame"):
        log(f"  {k:<22} {out[k] * 1000:7.1f} ms")
    log(f"  landmark jitter (IPD): raw {out['jitter_raw']:.4f}, smoothed {out['jitter_smoothed']:.4f} "
        f"({out['jitter_smoothed'] / out['jitter_raw']:.2f}x)")
    log(f"  smoothed vs raw asymmetry curves: r {out['r_smoothed_vs_raw']}, lag {out['lag_frames']}")
    return out


def _saved_frames(client, entry, graph):
    """The frames of the video the workflow's output node saved, read back from the server."""
    import os
    import tempfile

    from ..base.video_files import read_video
    from ..comfy import workflow as wf
    (save,) = wf.find(graph, "output")
    (ref,) = entry["outputs"][save]["palsysim_video"]
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, ref["filename"])
        with open(path, "wb") as f:
            f.write(client.download(ref))
        return read_video(path)[0]


def _through_mp4(frames, fps):
    """frames as the workflow's mp4 gives them back: the source's flicker is measured through the same codec."""
    import os
    import tempfile

    from ..base.video_files import read_video, write_video
    with tempfile.TemporaryDirectory() as folder:
        write_video(os.path.join(folder, "source.mp4"), frames, fps)
        return read_video(os.path.join(folder, "source.mp4"))[0]


def _change(frames):
    """Mean |frame t+1 - frame t| in grey levels: a frozen video has no flicker, and this says it is frozen."""
    return float(np.mean([np.abs(b.astype(np.float32) - a.astype(np.float32)).mean()
                          for a, b in zip(frames[:-1], frames[1:])])) if len(frames) > 1 else 0.0


def _stability(generated, source_xys, fps):
    """Flicker and change of the generated frames, and their dynamics against the source's landmarks (None: no
    face found in some generated frame, as with random or tiny weights)."""
    from ..base.errors import InputError
    from ..condition.sequence import sequence_landmarks
    from ..measure.video import dynamics, flicker
    try:
        moved = {m: v for m, v in dynamics(sequence_landmarks(generated, fps)[1], source_xys).items()
                 if v["r"] is not None}
    except InputError:
        moved = None
    return {"flicker": flicker(generated), "change": _change(generated), "dynamics": moved}


def generation(models_dir, checkpoint, controlnet, frames=8, size=512, steps=20, repeats=3, server=None,
               attend_to=None, log=print):
    """The shipped video workflow (privacy gate bypassed: random or tiny models make no face) on one embedded
    host, or the server at URL `server` (which must have the models): seconds per generated frame for a
    `frames`-frame synthetic grin, `size` px, `steps` steps. Each run gets the clip under a new name, so the
    whole graph runs (landmarks to the saved mp4) with the models a warm-up loaded; median of `repeats`.
    attend_to: cross-frame attention modes to compare, each on the same video and seed (the last run's saved
    frames give its flicker, beside the source face crops' own, and its dynamics against the source).
    Returns the figures as a dict."""
    import itertools
    import json

    import cv2

    from ..base.errors import InputError
    from ..base.video_files import video_bytes
    from ..base.workflows import api_path
    from ..comfy import host
    from ..comfy import workflow as wf
    from ..comfy.client import Client, execution_error
    from ..condition.facecrop import face_crop, transform_points
    from ..controlnet.crossframe import MODES
    from ..face.landmarks import face_landmarks
    from ..face.synth import synth_expression_video
    from ..measure.video import flicker
    from .pipeline import sample_photos
    unknown = sorted(set(attend_to or ()) - set(MODES))
    if unknown:
        raise InputError(f"unknown cross-frame attention {', '.join(unknown)}: use {', '.join(MODES)}")
    donor, patient = sample_photos()
    seq = synth_expression_video(patient, face_landmarks(patient), "grin", frames)
    crops = [face_crop(f, seq[0][1], size) for f, _ in seq]  # frame 0's box, as the video's conditions use
    source_xys = np.stack([transform_points(xy, m) for (_, xy), (_, m) in zip(seq, crops)])
    servers = host.servers([server] if server else None, embedded=1, models_dir=models_dir)
    with servers as urls:
        clip = video_bytes([f for f, _ in seq], 30.0)
        donor_png = cv2.imencode(".png", cv2.cvtColor(donor, cv2.COLOR_RGB2BGR))[1].tobytes()
        client = Client(urls[0])
        graph = json.load(open(api_path("palsy_video"), encoding="utf-8"))
        for ref, key, value in (("donor", "image", client.upload(donor_png)),
                                ("checkpoint", "ckpt_name", checkpoint), ("controlnet", "control_net_name", controlnet),
                                ("KSampler", "steps", steps),
                                ("video conditions", "size", size)):
            wf.set_input(graph, ref, key, value, client.object_info)
        wf.bypass(graph, "privacy gate", client.object_info)
        runs = itertools.count()

        def run():
            wf.set_input(graph, "patient video", "file", client.upload(clip, f"bench_grin_{next(runs)}.mp4"))
            start = time.perf_counter()
            entry = client.wait(client.queue(graph))
            problem = execution_error(entry, graph)
            if problem:
                raise RuntimeError(f"the video workflow failed: {problem}")
            return (time.perf_counter() - start) / frames, entry

        def timed():  # the median seconds per frame, and the last run's /history entry
            results = [run() for _ in range(repeats)]
            return float(np.median([seconds for seconds, _ in results])), results[-1][1]

        modes = {}
        try:
            run()  # warm-up: loads the models
            per_frame = timed()[0]
            for mode in attend_to or ():
                wf.set_input(graph, "cross-frame attention", "attend_to", mode, client.object_info)
                seconds, entry = timed()
                modes[mode] = {"s_per_frame": seconds, **_stability(_saved_frames(client, entry, graph), source_xys,
                                                                    30.0)}
        finally:
            client.close()
    log(f"shipped video workflow, {frames} frames at {size}x{size}, {steps} step(s), one host (median of {repeats}):"
        f"\n  {per_frame:8.3f} s per generated frame ({per_frame * frames:.2f} s per video)")
    out = {"s_per_frame": per_frame, "frames": frames, "size": size, "steps": steps, "attend_to": modes}
    if modes:
        source = _through_mp4([c for c, _ in crops], 30.0)
        out.update(source_flicker=flicker(source), source_change=_change(source))
        log(_attention_table(modes, out["source_flicker"], out["source_change"]))
    return out


def _attention_table(modes, source_flicker, source_change):
    lines = [f"cross-frame attention, same video and seed (flicker: warping error in grey levels, the source face "
             f"crops' own {source_flicker:.2f}; change: mean |frame t+1 - frame t|, the source's {source_change:.2f}; "
             f"dynamics: asymmetry curves against the source's):",
             f"  {'attend_to':<20} {'flicker':>8} {'change':>8} {'dynamics r (mean)':>18} {'max |lag|':>10} "
             f"{'s/frame':>9}"]
    for mode, m in modes.items():
        d = m["dynamics"]
        r = f"{np.mean([v['r'] for v in d.values()]):.3f}" if d else "no face"
        lag = str(max(abs(v["lag"]) for v in d.values())) if d else "-"
        lines.append(f"  {mode:<20} {m['flicker']:8.2f} {m['change']:8.2f} {r:>18} {lag:>10} {m['s_per_frame']:9.3f}")
    return "\n".join(lines)
