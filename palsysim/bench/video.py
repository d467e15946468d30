"""`python -m palsysim bench video`: a synthetic 30-frame palsy grin (rest -> grin -> rest, warped from a real
photo) through the video pipeline: seconds per frame for landmarks + smoothing, PF and CODC conditions and
flicker, and what the One-Euro filter does to jitter and lag against the detector's raw landmarks."""
import time


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


def generation(models_dir, checkpoint, controlnet, frames=8, size=512, steps=20, repeats=3, server=None, log=print):
    """The shipped video workflow (privacy gate bypassed: random or tiny models make no face) on one embedded
    host, or the server at URL `server` (which must have the models): seconds per generated frame for a
    `frames`-frame synthetic grin, `size` px, `steps` steps. Each run gets the clip under a new name, so the
    whole graph runs (landmarks to the saved mp4) with the models a warm-up loaded; median of `repeats`.
    Returns the figures as a dict."""
    import json

    import cv2
    import numpy as np

    from ..base.video_files import video_bytes
    from ..base.workflows import api_path
    from ..comfy import host
    from ..comfy import workflow as wf
    from ..comfy.client import Client, execution_error
    from ..face.landmarks import face_landmarks
    from ..face.synth import synth_expression_video
    from .pipeline import sample_photos
    donor, patient = sample_photos()
    seq = synth_expression_video(patient, face_landmarks(patient), "grin", frames)
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

        def run(k):
            wf.set_input(graph, "patient video", "file", client.upload(clip, f"bench_grin_{k}.mp4"))
            start = time.perf_counter()
            entry = client.wait(client.queue(graph))
            problem = execution_error(entry, graph)
            if problem:
                raise RuntimeError(f"the video workflow failed: {problem}")
            return (time.perf_counter() - start) / frames

        try:
            run(0)  # warm-up: loads the models
            per_frame = float(np.median([run(k) for k in range(1, repeats + 1)]))
        finally:
            client.close()
    log(f"shipped video workflow, {frames} frames at {size}x{size}, {steps} step(s), one host (median of {repeats}):"
        f"\n  {per_frame:8.3f} s per generated frame ({per_frame * frames:.2f} s per video)")
    return {"s_per_frame": per_frame, "frames": frames, "size": size, "steps": steps}
