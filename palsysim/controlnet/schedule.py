"""SD1.5's diffusion schedule: timestep <-> sigma <-> sampling percent, and which steps hit a window.

SD1.5 was trained on the 1000-step "scaled linear" DDPM schedule (betas from 0.00085 to 0.012,
linear in sqrt(beta)). ComfyUI samples in sigma space and maps a percent p of sampling to
sigma(timestep = (1 - p) * 999); a ControlNet runs on a step when the step's sigma lies within
its percent range, both ends included. This module does the same arithmetic, in the same
precision, without importing ComfyUI, so a training window [t_lo, t_hi] (inclusive timesteps)
converts to the percent pair ComfyUI understands:

    start_percent = 1 - t_hi / 999,  end_percent = 1 - t_lo / 999      (500..700 -> 0.29930..0.49950)

A step is "in the window" exactly when ComfyUI would run a ControlNet whose percent range is that
pair: sigma(t_lo) <= sigma_step <= sigma(t_hi), i.e. its continuous timestep lies in [t_lo, t_hi].
"""
from functools import lru_cache

import torch

NUM_TIMESTEPS = 1000
BETA_START, BETA_END = 0.00085, 0.012
SCHEDULE_NAME = "sd15-scaled-linear-1000"  # what training writes into a file's metadata


def check_window(t_lo, t_hi, what="timestep window"):
    """Refuse a window that is not 0 <= t_lo <= t_hi <= 999 (whole timesteps), with the fix in the message."""
    for name, t in (("t_lo", t_lo), ("t_hi", t_hi)):
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < NUM_TIMESTEPS:
            raise ValueError(f"{what}: {name}={t!r} is not a whole timestep in 0..{NUM_TIMESTEPS - 1}")
    if t_lo > t_hi:
        raise ValueError(f"{what}: t_lo={t_lo} is above t_hi={t_hi}; swap them (the paper's window is 500..700)")


@lru_cache(maxsize=1)
def _schedule():
    """(sigmas, log_sigmas): float32 [1000] each, built exactly as ComfyUI's ModelSamplingDiscrete does."""
    betas = torch.linspace(BETA_START ** 0.5, BETA_END ** 0.5, NUM_TIMESTEPS, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
    return sigmas.float(), sigmas.log().float()


def sigmas():
    """float32 [1000]: sigma of each discrete timestep 0..999 (0.0292 .. 14.61)."""
    return _schedule()[0].clone()


def timestep_to_sigma(timestep):
    """Continuous timestep(s) -> sigma(s), float32, interpolating log-sigma as ComfyUI does.

    timestep: float or tensor of any shape (clamped to 0..999); returns a tensor of that shape.
    """
    log_sigmas = _schedule()[1]
    t = torch.clamp(torch.as_tensor(timestep).float(), min=0, max=NUM_TIMESTEPS - 1)
    low, high, w = t.floor().long(), t.ceil().long(), t.frac()
    return ((1 - w) * log_sigmas[low] + w * log_sigmas[high]).exp()


def sigma_to_timestep(sigma):
    """Sigma(s) -> the nearest discrete timestep(s) in log-sigma (what the UNet is given), long tensor."""
    sigma = torch.as_tensor(sigma).float()
    dists = sigma.log().reshape(-1) - _schedule()[1][:, None]
    return dists.abs().argmin(dim=0).view(sigma.shape)


def percent_to_sigma(percent):
    """Sampling percent -> sigma, as ComfyUI's ModelSamplingDiscrete.percent_to_sigma (a Python float).

    0 means "before the first step" (a huge sigma), 1 "after the last" (0.0).
    """
    if percent <= 0.0:
        return 999999999.9
    if percent >= 1.0:
        return 0.0
    return timestep_to_sigma(torch.tensor((1.0 - percent) * 999.0)).item()


def window_percents(t_lo, t_hi):
    """Inclusive timestep window -> (start_percent, end_percent) of sampling; 500, 700 -> (0.29930, 0.49950)."""
    check_window(t_lo, t_hi)
    last = NUM_TIMESTEPS - 1
    return 1.0 - t_hi / last, 1.0 - t_lo / last


def window_sigmas(t_lo, t_hi):
    """(sigma_high, sigma_low): the sigma range ComfyUI derives from window_percents (its timestep_range)."""
    start, end = window_percents(t_lo, t_hi)
    return percent_to_sigma(start), percent_to_sigma(end)


def steps_in_window(step_sigmas, t_lo, t_hi):
    """Indices of the sampling steps whose sigma lies in the window.

    step_sigmas: 1-D sequence of a scheduler's M + 1 sigmas (the last one the end point, usually 0);
    step i samples at step_sigmas[i], so the result is a sorted list of indices in 0..M-1.
    """
    s = torch.as_tensor(step_sigmas).float().reshape(-1)
    if s.numel() < 2:
        raise ValueError("a sigma schedule needs at least two values (one step and its end point)")
    high, low = window_sigmas(t_lo, t_hi)
    # ComfyUI's own test, negated as it is written there (so even a NaN sigma is judged the same way).
    return [i for i in range(s.numel() - 1) if not (s[i].item() > high or s[i].item() < low)]


def describe_window(t_lo, t_hi, step_sigmas=None, setting=""):
    """One line for a user: the window, its percent pair and, given a scheduler's sigmas, which steps fall in it.

    e.g. "t 500..700 = percent 0.29930..0.49950; normal, 20 steps: 4 of 20 steps in window
    (steps 7-10, t 684..526)". Step numbers are 1-based, as a progress bar counts them; t is the
    discrete timestep the UNet sees at that step.
    """
    start, end = window_percents(t_lo, t_hi)
    text = f"t {t_lo}..{t_hi} = percent {start:.5f}..{end:.5f}"
    if step_sigmas is None:
        return text
    steps = steps_in_window(step_sigmas, t_lo, t_hi)
    text += f"; {setting + ': ' if setting else ''}{len(steps)} of {len(step_sigmas) - 1} steps in window"
    if steps:
        ts = sigma_to_timestep(torch.as_tensor(step_sigmas).float()[[steps[0], steps[-1]]]).tolist()
        text += f" (steps {steps[0] + 1}-{steps[-1] + 1}, t {ts[0]}..{ts[1]})"
    return text
