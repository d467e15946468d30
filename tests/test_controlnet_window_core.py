"""Each apply mode of PalsyTimestepWindowControlNetLoader against ComfyUI's core nodes alone (ControlNetLoader
and Apply ControlNet (Advanced)), on the tiny models at 20 steps, for the four windows of the paper's Fig. 8:
the saved PNG files (PalsySaveAnonymized: pixels only, no metadata) must be the same bytes.

- everywhere: core Apply at 0..1.
- window_only: core Apply at the window's percents (schedule.window_percents).
- window_then_base: three core Applies chained, the base net at 0..start, the window net at start..end, the
  base net again at end..1. Core's range test includes both ends, so a step whose sigma were exactly a
  window edge would run both nets there (summed); the loader gives such a step to the window net alone.
  No step of the Fig. 8 runs lands on an edge, so the images are the same; a run whose step does is the
  last test here.
"""
import pytest
from host import start_host
from window_nets import (BASE_NET, WINDOW_NET, apply_advanced, rings_hint, sampling_graph, window_loader,
                         write_window_models)

from palsysim.controlnet.schedule import window_percents

FIG8_WINDOWS = [(0, 200), (500, 700), (800, 999), (0, 999)]
POS, NEG = ["2", 0], ["3", 0]


@pytest.fixture(scope="module")
def host(module_tmp):
    work = module_tmp("window_core")
    server = start_host(str(work), wait=False)
    try:
        write_window_models(str(work / "models"))
        server.wait_ready()
        server.hint = server.upload_image(rings_hint())
    except BaseException:
        server.stop()
        raise
    yield server
    server.stop()


def saved_bytes(host, control, last, scheduler):
    """Sample with `control` ending in node `last`; the bytes of the one PNG PalsySaveAnonymized wrote."""
    graph = sampling_graph(host.hint, control, [last, 0], [last, 1], scheduler=scheduler)
    graph["10"] = {"class_type": "PalsySaveAnonymized",
                   "inputs": {"images": ["9", 0], "filename_prefix": "core_check", "method_summary": ""}}
    result = host.run(graph)
    assert result.ok, result.error
    [path] = host.image_paths(result, "10")
    with open(path, "rb") as f:
        return f.read()


def ours(host, apply, t_lo=-1, t_hi=-1, scheduler="normal"):
    base = BASE_NET if apply == "window_then_base" else "(none)"
    return saved_bytes(host, {"4": window_loader(WINDOW_NET, apply, t_lo, t_hi, base),
                              "6": apply_advanced(["4", 0], POS, NEG)}, "6", scheduler)


def core(host, *ranges, scheduler="normal"):
    """Core loaders and chained core Applies: ranges [(net file, start, end)], applied in that order."""
    control = {"20": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": WINDOW_NET}},
               "21": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": BASE_NET}}}
    positive, negative = POS, NEG
    for i, (net, start, end) in enumerate(ranges):
        node = str(30 + i)
        control[node] = apply_advanced(["20" if net == WINDOW_NET else "21", 0], positive, negative, start, end)
        positive, negative = [node, 0], [node, 1]
    return saved_bytes(host, control, node, scheduler)


@pytest.fixture(scope="module")
def everywhere(host):
    return ours(host, "everywhere")


def test_everywhere_is_core_apply_at_0_to_1(host, everywhere):
    assert everywhere == core(host, (WINDOW_NET, 0.0, 1.0))
    assert everywhere != core(host, (BASE_NET, 0.0, 1.0))  # the bytes do depend on the net that ran


@pytest.mark.parametrize("t_lo, t_hi", FIG8_WINDOWS)
def test_window_only_is_core_apply_at_the_window_percents(host, everywhere, t_lo, t_hi):
    start, end = window_percents(t_lo, t_hi)
    image = ours(host, "window_only", t_lo, t_hi)
    assert image == core(host, (WINDOW_NET, start, end))
    assert (image == everywhere) == ((t_lo, t_hi) == (0, 999))  # a narrower window is another image


@pytest.mark.parametrize("t_lo, t_hi", FIG8_WINDOWS)
def test_window_then_base_is_three_chained_core_applies(host, everywhere, t_lo, t_hi):
    start, end = window_percents(t_lo, t_hi)
    image = ours(host, "window_then_base", t_lo, t_hi)
    assert image == core(host, (BASE_NET, 0.0, start), (WINDOW_NET, start, end), (BASE_NET, end, 1.0))
    assert (image == everywhere) == ((t_lo, t_hi) == (0, 999))


def test_a_step_on_the_window_edge_runs_both_nets_in_the_core_chain(host):
    # scheduler simple at 20 steps samples at whole timesteps 999, 949, ..., 699 (step 7), ...: window 500..699
    # puts step 7's sigma exactly on the window's start, which core's inclusive test gives to both the window
    # net and the base net before it. Moving that base range's end off the edge by 1e-6 gives the loader's image.
    start, end = window_percents(500, 699)
    image = ours(host, "window_then_base", 500, 699, scheduler="simple")
    assert image != core(host, (BASE_NET, 0.0, start), (WINDOW_NET, start, end), (BASE_NET, end, 1.0),
                         scheduler="simple")
    assert image == core(host, (BASE_NET, 0.0, start - 1e-6), (WINDOW_NET, start, end), (BASE_NET, end, 1.0),
                         scheduler="simple")
    assert ours(host, "window_only", 500, 699, scheduler="simple") == core(host, (WINDOW_NET, start, end),
                                                                             scheduler="simple")
