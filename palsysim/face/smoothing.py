"""Landmark sequences smoothed over time with the One-Euro filter (Casiez, Roussel and Vogel, CHI 2012).

A detector's landmarks jitter from frame to frame by a pixel or so; a low-pass filter removes that,
but a fixed cutoff either leaves jitter or lags a fast expression. The One-Euro filter adapts its
cutoff to the speed: still points get min_cutoff (strong smoothing), fast ones min_cutoff + beta *
speed (little lag). Speeds are measured in inter-pupil distances per second, so one set of
parameters serves photos of any size.
"""
import math

import numpy as np

from ..base.errors import InputError
from .asymmetry import face_frame

MIN_CUTOFF = 1.0  # Hz: the cutoff of a still landmark
BETA = 50.0  # Hz of cutoff per IPD/s of speed: a grin (about 0.3 IPD/s) is followed without lag
D_CUTOFF = 1.0  # Hz: the cutoff of the speed estimate itself


def _alpha(cutoff, dt):
    """Smoothing factor of a first-order low-pass filter at cutoff (Hz, scalar or array) for a step of dt s."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


def check_filter(fps, min_cutoff, beta, d_cutoff):
    """Refuse settings the filter cannot use, naming each (NaN passes every comparison, so finite first)."""
    for name, value, lo in (("fps", fps, 1e-3), ("min_cutoff", min_cutoff, 1e-6), ("beta", beta, 0.0),
                            ("d_cutoff", d_cutoff, 1e-6)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < lo:
            raise InputError(f"{name}={value!r}: give a finite number of at least {lo}")


def one_euro(xys, fps, min_cutoff=MIN_CUTOFF, beta=BETA, d_cutoff=D_CUTOFF):
    """One-Euro filter along time: (T, N, 2) pixels -> (T, N, 2) float64 pixels; frame 0 is kept as it is.

    fps: frames per second of the sequence; min_cutoff, d_cutoff in Hz; beta in Hz per IPD/s (speeds
    are divided by the sequence's median inter-pupil distance, so the parameters do not depend on
    the photo's size).
    """
    check_filter(fps, min_cutoff, beta, d_cutoff)
    xys = np.asarray(xys, dtype=np.float64)[..., :2]
    if xys.ndim != 3 or len(xys) == 0:
        raise InputError(f"landmark sequence has shape {xys.shape}: give (frames, points, 2)")
    unit = float(np.median([face_frame(xy)[1] for xy in xys])) if xys.shape[1] == 478 else 1.0
    dt = 1.0 / fps
    out = np.empty_like(xys)
    out[0] = xys[0]
    speed = np.zeros(xys.shape[1:])
    for t in range(1, len(xys)):
        raw_speed = (xys[t] - out[t - 1]) / dt / unit
        speed = speed + _alpha(d_cutoff, dt) * (raw_speed - speed)
        # One cutoff per point from its speed, so both coordinates of a point are filtered alike.
        cutoff = min_cutoff + beta * np.hypot(speed[:, 0], speed[:, 1])[:, None]
        out[t] = out[t - 1] + _alpha(cutoff, dt) * (xys[t] - out[t - 1])
    return out


def jitter(xys):
    """Frame-to-frame jitter of a landmark sequence (T, N, 2) pixels -> float, in inter-pupil distances.

    The mean length of the second difference x[t+1] - 2 x[t] + x[t-1] over points and frames: zero
    for still or steadily moving points, large for points that shake. 0 for fewer than 3 frames.
    """
    xys = np.asarray(xys, dtype=np.float64)[..., :2]
    if len(xys) < 3:
        return 0.0
    unit = float(np.median([face_frame(xy)[1] for xy in xys])) if xys.shape[1] == 478 else 1.0
    accel = xys[2:] - 2.0 * xys[1:-1] + xys[:-2]
    return float(np.hypot(accel[..., 0], accel[..., 1]).mean() / unit)
