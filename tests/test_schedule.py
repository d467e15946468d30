"""palsysim.controlnet.schedule against ComfyUI's own schedule code (imported in-process, CPU)."""
import pytest
import torch
from tiny_models import import_comfy

from palsysim.controlnet import schedule

import_comfy()
import comfy.samplers  # noqa: E402
from comfy.model_sampling import ModelSamplingDiscrete  # noqa: E402

MS = ModelSamplingDiscrete()  # SD1.5's sampling settings are ComfyUI's defaults
WINDOWS = [(lo, hi) for lo in range(0, 1000, 37) for hi in range(lo, 1000, 41)] + [(500, 700), (0, 999), (999, 999), (0, 0)]


def test_sigma_table_is_comfyuis():
    assert torch.equal(schedule.sigmas(), MS.sigmas)
    assert torch.equal(schedule._schedule()[1], MS.log_sigmas)


def test_paper_window_percents():
    start, end = schedule.window_percents(500, 700)
    assert (round(start, 5), round(end, 5)) == (0.29930, 0.49950)


def test_percent_to_sigma_matches_comfyui_exactly_for_many_windows():
    checked = 0
    for lo, hi in WINDOWS:
        for p in schedule.window_percents(lo, hi):
            assert schedule.percent_to_sigma(p) == MS.percent_to_sigma(p), (lo, hi, p)
            checked += 1
    for p in torch.linspace(0, 1, 257).tolist():
        assert schedule.percent_to_sigma(p) == MS.percent_to_sigma(p), p
    assert checked > 500


def test_window_ends_map_back_to_their_timesteps():
    for lo, hi in WINDOWS:
        high, low = schedule.window_sigmas(lo, hi)
        assert schedule.sigma_to_timestep(high).item() == hi
        assert schedule.sigma_to_timestep(low).item() == lo


def test_timestep_sigma_conversions_match_comfyui():
    ts = torch.cat([torch.arange(1000).float(), torch.rand(500, generator=torch.Generator().manual_seed(0)) * 999])
    assert torch.equal(schedule.timestep_to_sigma(ts), MS.sigma(ts))
    sig = MS.sigma(ts)
    assert torch.equal(schedule.sigma_to_timestep(sig), MS.timestep(sig))


@pytest.mark.parametrize("scheduler", comfy.samplers.SCHEDULER_NAMES)
@pytest.mark.parametrize("steps", [1, 7, 20, 50])
def test_steps_in_window_is_comfyuis_range_test(scheduler, steps):
    sigmas = comfy.samplers.calculate_sigmas(MS, scheduler, steps)
    for lo, hi in [(500, 700), (0, 999), (250, 260), (900, 999), (0, 100)]:
        start, end = schedule.window_percents(lo, hi)
        # ControlNet.get_control skips a step when t > sigma(start) or t < sigma(end): the rest run.
        high, low = MS.percent_to_sigma(start), MS.percent_to_sigma(end)
        expected = [i for i in range(len(sigmas) - 1) if not (sigmas[i] > high or sigmas[i] < low)]
        assert schedule.steps_in_window(sigmas, lo, hi) == expected


def test_paper_window_takes_4_of_20_normal_steps():
    sigmas = comfy.samplers.calculate_sigmas(MS, "normal", 20)
    assert schedule.steps_in_window(sigmas, 500, 700) == [6, 7, 8, 9]
    assert schedule.describe_window(500, 700, sigmas, "euler/normal, 20 steps") == (
        "t 500..700 = percent 0.29930..0.49950; euler/normal, 20 steps: 4 of 20 steps in window (steps 7-10, t 684..526)")
    assert schedule.steps_in_window(sigmas, 0, 999) == list(range(20))


@pytest.mark.parametrize("lo, hi, words", [(700, 500, "swap"), (-1, 500, "t_lo=-1"), (500, 1000, "t_hi=1000"),
                                           (500.0, 700, "t_lo=500.0"), (True, 700, "t_lo=True")])
def test_bad_windows_are_refused_with_the_fix(lo, hi, words):
    with pytest.raises(ValueError, match=words):
        schedule.window_percents(lo, hi)
