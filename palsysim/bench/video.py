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
