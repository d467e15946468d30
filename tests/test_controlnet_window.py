"""Window ControlNet files (palsysim.controlnet.file) and PalsyTimestepWindowControlNetLoader in a real host.

How the host tests count ControlNet forward calls: this module starts its own ComfyUI server
(host.start_host) with one extra custom-node folder holding PROBE_SOURCE, a test-only module that
wraps comfy.cldm.cldm.ControlNet.forward, i.e. the control model of every ControlNet the server
runs, and appends one line per call: which net (the first weight of its hint block, which the
test knows per file) and the timestep the model was given. The pack's code is untouched by it,
so the count is what the sampler really ran. The folder is added by a second
--extra-model-paths-config file (a `custom_nodes:` entry) through a two-line interpreter
wrapper, because start_host takes no extra arguments.
"""
import json
import os
import pickle
import sys

import numpy as np
import pytest
import torch
from host import start_host
from safetensors.torch import save_file
from tiny_models import import_comfy, tiny_checkpoint_state_dict, tiny_controlnet_state_dict
from window_nets import (BASE_NET, META, PLAIN_NET, WINDOW_NET, apply_advanced, rings_hint, sampling_graph,
                         window_loader, write_window_models)

from palsysim.base.errors import InputError
from palsysim.controlnet import schedule
from palsysim.controlnet.file import load_controlnet_weights, read_window, resolve_window, save_controlnet

import_comfy()
import comfy.controlnet  # noqa: E402
import comfy.samplers  # noqa: E402
from comfy.cldm.cldm import ControlNet as CldmControlNet  # noqa: E402
from comfy.model_sampling import ModelSamplingDiscrete  # noqa: E402


@pytest.fixture(scope="module")
def control_sd():
    return tiny_controlnet_state_dict(seed=0)


@pytest.fixture(scope="module")
def checkpoint_sd():
    """A tiny SD1.5 checkpoint's UNet and VAE with the first CLIP layer (all of CLIP adds only write time)."""
    return {k: v for k, v in tiny_checkpoint_state_dict().items()
            if not k.startswith("cond_stage_model.") or ".layers." not in k or ".layers.0." in k}


# --- the file format -------------------------------------------------------------------------------

def test_round_trip_window_and_mode_come_back_and_comfyui_loads_it(tmp_path, control_sd):
    path = str(tmp_path / "palsy_partial.safetensors")
    save_controlnet(path, control_sd, **META, extra={"epochs": 2, "condition": "codc"})
    meta = read_window(path)
    assert {k: meta[k] for k in META} == META
    assert meta["schedule"] == schedule.SCHEDULE_NAME and meta["format"] == "1"
    assert (meta["epochs"], meta["condition"]) == ("2", "codc")
    assert resolve_window(path)[:2] == (500, 700)
    assert resolve_window(path, t_lo=450)[:2] == (450, 700)
    net = comfy.controlnet.load_controlnet(path)  # ComfyUI's own loader, as ControlNetLoader calls it
    loaded = net.control_model.state_dict()
    assert set(loaded) == {k[len("control_model."):] for k in control_sd}
    assert all(torch.equal(loaded[k[len("control_model."):]], v) for k, v in control_sd.items())
    assert os.listdir(tmp_path) == ["palsy_partial.safetensors"]  # no temp file left behind


def test_bare_module_keys_are_written_as_control_model_keys(tmp_path, control_sd):
    path = str(tmp_path / "bare.safetensors")
    save_controlnet(path, {k[len("control_model."):]: v for k, v in control_sd.items()}, **META)
    assert set(load_controlnet_weights(path)) == set(control_sd)


@pytest.mark.parametrize("field, value", [("base_model", "/data/patients/ab12/v1-5.ckpt"),
                                          ("base_model", "C:\\models\\v1-5.ckpt"), ("base_model", "models/v1-5.ckpt"),
                                          ("extra", {"data": "/home/clinic/patients"}),
                                          ("extra", {"files": ["ok.png", "sub/x.png"]})])
def test_paths_in_metadata_are_refused_and_nothing_is_written(tmp_path, control_sd, field, value):
    args = dict(META, **{field: value})
    with pytest.raises(ValueError, match="path"):
        save_controlnet(str(tmp_path / "x.safetensors"), control_sd, **args)
    assert os.listdir(tmp_path) == []


def test_a_failed_save_keeps_the_previous_file(tmp_path, control_sd):
    path = str(tmp_path / "net.safetensors")
    save_controlnet(path, control_sd, **META)
    before = open(path, "rb").read()
    with pytest.raises(ValueError, match="not a tensor"):
        save_controlnet(path, {**control_sd, "control_model.bad": [1, 2]}, **dict(META, t_lo=100))
    with pytest.raises(ValueError, match="no ControlNet weights"):
        save_controlnet(path, {"model.diffusion_model.x": torch.zeros(1)}, **META)
    assert open(path, "rb").read() == before and os.listdir(tmp_path) == ["net.safetensors"]


def test_no_metadata_and_no_override_names_the_file_and_the_fix(tmp_path, control_sd):
    path = str(tmp_path / "control_sd15_canny.safetensors")
    save_file(control_sd, path)
    assert read_window(path) is None
    with pytest.raises(InputError, match=r"control_sd15_canny.safetensors: has no training-window.*set t_lo and t_hi"):
        resolve_window(path)
    with pytest.raises(InputError, match="control_sd15_canny"):
        resolve_window(path, t_lo=500)
    assert resolve_window(path, 500, 700) == (500, 700, None)


def test_damaged_window_metadata_is_reported(tmp_path, control_sd):
    path = str(tmp_path / "odd.safetensors")
    save_file(control_sd, path, metadata={"palsysim.t_lo": "800", "palsysim.t_hi": "700"})
    with pytest.raises(InputError, match="odd.safetensors: its window metadata is damaged.*swap"):
        read_window(path)


def test_full_controlldm_ckpt_loads_weights_only(tmp_path, control_sd, checkpoint_sd):
    """The original control_sd15_*.pth layout: UNet, VAE, CLIP and control_model.* in one pickle."""
    full = {**checkpoint_sd, **control_sd}
    path = str(tmp_path / "control_sd15_canny.pth")
    torch.save({"state_dict": full}, path)
    sd = load_controlnet_weights(path)
    assert set(sd) == set(control_sd) and all(torch.equal(sd[k], v) for k, v in control_sd.items())
    net = comfy.controlnet.load_controlnet_state_dict(sd)
    assert isinstance(net, comfy.controlnet.ControlNet)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # creates the marker file if ever unpickled


def test_a_pickle_that_would_run_code_is_refused(tmp_path, control_sd):
    marker = str(tmp_path / "code_ran")
    path = str(tmp_path / "evil.ckpt")
    torch.save({"state_dict": {**control_sd, "x": _RunsCode(marker)}}, path)
    with pytest.raises(InputError, match=r"evil.ckpt: refused: loading it could run code.*GLOBAL.*open"):
        load_controlnet_weights(path)
    assert not os.path.exists(marker)
    with open(path, "rb") as f:  # the check is real: the same file does run code when unpickled unsafely
        torch.load(f, weights_only=False, pickle_module=pickle)
    assert os.path.exists(marker)


@pytest.mark.parametrize("ext", ["safetensors", "ckpt"])
def test_a_truncated_file_is_reported(tmp_path, control_sd, ext):
    path = str(tmp_path / f"cut.{ext}")
    save_file(control_sd, path) if ext == "safetensors" else torch.save(control_sd, path)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) * 2 // 3])
    with pytest.raises(InputError, match=f"cut.{ext}: .*(corrupt or truncated|truncated or corrupt)"):
        load_controlnet_weights(path)


def test_a_checkpoint_without_controlnet_is_reported(tmp_path, checkpoint_sd):
    path = str(tmp_path / "v1-5-pruned-emaonly.safetensors")
    save_file(checkpoint_sd, path)
    with pytest.raises(InputError, match="v1-5-pruned-emaonly.safetensors: is a Stable Diffusion checkpoint with no "
                                         "ControlNet inside.*models/checkpoints"):
        load_controlnet_weights(path)


def test_an_sdxl_controlnet_is_reported(tmp_path):
    """A real (tiny) SDXL-shaped ControlNet from ComfyUI's class: context 2048 and label_emb."""
    net = CldmControlNet(image_size=32, in_channels=4, model_channels=32, hint_channels=3, num_res_blocks=[1],
                         channel_mult=[1], num_heads=-1, num_head_channels=8, use_spatial_transformer=True,
                         transformer_depth=[1], transformer_depth_middle=1, context_dim=2048,
                         use_linear_in_transformer=True, adm_in_channels=2816, num_classes="sequential",
                         legacy=False, device="cpu")
    path = str(tmp_path / "controlnet-canny-sdxl.safetensors")
    save_file({f"control_model.{k}": v.contiguous() for k, v in net.state_dict().items()}, path)
    with pytest.raises(InputError, match=r"controlnet-canny-sdxl.safetensors: is a ControlNet for SDXL, not for "
                                         r"SD1.5 \(cross-attention width 2048"):
        load_controlnet_weights(path)


def test_a_diffusers_controlnet_is_passed_on_for_comfyui_to_convert(tmp_path, control_sd):
    """diffusers keys are left for comfy.controlnet.load_controlnet_state_dict, which converts them.

    (ComfyUI converts only diffusers ControlNets of the real model sizes, so this file cannot be
    tiny and loaded too: what is checked is that the reader hands such a file on untouched.)
    """
    diffusers = {"controlnet_cond_embedding.conv_in.weight": torch.zeros(16, 3, 3, 3),
                 "controlnet_down_blocks.0.weight": torch.zeros(320, 320, 1, 1),
                 "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight": torch.zeros(320, 768)}
    path = str(tmp_path / "diffusion_pytorch_model.safetensors")
    save_file(diffusers, path)
    assert set(load_controlnet_weights(path)) == set(diffusers)
    save_file({**diffusers, "add_embedding.linear_1.weight": torch.zeros(1280, 2816)}, path)
    with pytest.raises(InputError, match="for SDXL"):
        load_controlnet_weights(path)


# --- through the real host -------------------------------------------------------------------------

PROBE_SOURCE = '''"""Test-only (tests/test_controlnet_window.py): log every ControlNet forward call of this server."""
import json
import os

import comfy.cldm.cldm

LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "control_calls.jsonl")
_forward = comfy.cldm.cldm.ControlNet.forward


def forward(self, *args, **kwargs):
    with open(LOG, "a") as f:
        f.write(json.dumps({"net": self.input_hint_block[0].weight.flatten()[0].item(),
                            "t": kwargs["timesteps"].tolist()}) + "\\n")
    return _forward(self, *args, **kwargs)


comfy.cldm.cldm.ControlNet.forward = forward
NODE_CLASS_MAPPINGS = {}
'''
STEPS = 20


@pytest.fixture(scope="module")
def probe_host(module_tmp):
    work = module_tmp("window_host")
    probe_dir = work / "probe_nodes"
    probe_dir.mkdir()
    (probe_dir / "palsysim_control_probe.py").write_text(PROBE_SOURCE)
    (work / "probe_paths.yaml").write_text(f"palsysim_probe:\n    custom_nodes: {json.dumps(str(probe_dir))}\n")
    wrapper = work / "python_with_probe"
    python = os.environ.get("COMFYUI_PYTHON") or sys.executable
    wrapper.write_text(f'#!/bin/sh\nexec "{python}" "$@" --extra-model-paths-config "{work / "probe_paths.yaml"}"\n')
    wrapper.chmod(0o755)
    write_window_models(str(work / "server" / "models"))
    server = start_host(str(work / "server"), python=str(wrapper))
    server.probe_log = str(probe_dir / "control_calls.jsonl")
    server.hint = server.upload_image(rings_hint())
    yield server
    server.stop()


def _fingerprint(seed):
    return tiny_controlnet_state_dict(seed)["control_model.input_hint_block.0.weight"].flatten()[0].item()


def _graph(apply="window_only", start=0.0, end=1.0, name=WINDOW_NET, t_lo=-1, t_hi=-1, base="(none)",
           steps=STEPS, sampler="euler", scheduler="normal", denoise=1.0):
    control = {"4": window_loader(name, apply, t_lo, t_hi, base),
               "6": apply_advanced(["4", 0], ["2", 0], ["3", 0], start, end)}
    return {
        **sampling_graph("HINT", control, ["6", 0], ["6", 1], steps, sampler, scheduler, denoise),
        "10": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": f"window_{apply}"}},
        "11": {"class_type": "PreviewAny", "inputs": {"source": ["4", 1]}},
        # Which steps fell in the window, learnt from the run: it follows the sampler's output.
        "12": {"class_type": "PalsyWindowSteps", "inputs": {"control_net": ["4", 0], "samples": ["8", 0]}},
        "13": {"class_type": "PreviewAny", "inputs": {"source": ["12", 0]}},
    }


def _sample(host, **kw):
    """Run the graph; returns (calls [(net seed, timestep)], image, the loader's report, the steps report)."""
    graph = _graph(**kw)
    graph["5"]["inputs"]["image"] = host.hint
    open(host.probe_log, "w").close()
    result = host.run(graph)
    assert result.ok, result.error
    seeds = {_fingerprint(s): s for s in (0, 1, 2)}
    with open(host.probe_log) as f:
        calls = [(seeds[c["net"]], int(t)) for c in map(json.loads, f) for t in c["t"]]
    return calls, host.images(result, "10")[0], result.outputs["11"]["text"][0], result.outputs["13"]["text"][0]


def _step_timesteps(start=0.0, end=1.0):
    """[(timestep, in window, in user range)] per step of euler/normal/20, by ComfyUI's own sigma tests."""
    ms = ModelSamplingDiscrete()
    sigmas = comfy.samplers.calculate_sigmas(ms, "normal", STEPS)[:-1]
    w_hi, w_lo = ms.percent_to_sigma(schedule.window_percents(500, 700)[0]), ms.percent_to_sigma(schedule.window_percents(500, 700)[1])
    u_hi, u_lo = ms.percent_to_sigma(start), ms.percent_to_sigma(end)
    return [(int(ms.timestep(s)), not (s > w_hi or s < w_lo), not (s > u_hi or s < u_lo)) for s in sigmas]


def test_node_is_listed_with_its_inputs(probe_host):
    info = probe_host.object_info("PalsyTimestepWindowControlNetLoader")
    assert info["output"] == ["CONTROL_NET", "STRING", "STRING"] and info["output_name"][2] == "summary"
    required = info["input"]["required"]
    assert WINDOW_NET in required["control_net_name"][1]["options"]
    assert required["apply"][1]["options"] == ["everywhere", "window_only", "window_then_base"]


def test_forward_calls_per_mode_and_images(probe_host):
    steps = _step_timesteps()
    window_ts = [t for t, inside, _ in steps if inside]
    assert len(window_ts) == 4

    calls, everywhere_img, _, report = _sample(probe_host, apply="everywhere")
    assert calls == [(0, t) for t, _, _ in steps]
    assert report == (f"{WINDOW_NET}: t 500..700 = percent 0.29930..0.49950; this run: 4 of 20 steps in window "
                      f"(steps 7-10, t 684..526); apply: everywhere, the net ran at every step; trained: partial")

    calls, window_img, _, _ = _sample(probe_host, apply="window_only")
    assert calls == [(0, t) for t in window_ts]

    calls, _, _, _ = _sample(probe_host, apply="window_then_base", base=BASE_NET)
    assert calls == [(0 if inside else 1, t) for t, inside, _ in steps]

    assert np.abs(window_img.astype(int) - everywhere_img.astype(int)).mean() > 1.0


def _run_sigmas(sampler, scheduler, steps, denoise):
    """The sigmas ComfyUI's KSampler samples at for this setting (comfy.samplers.KSampler.set_steps)."""
    ms = ModelSamplingDiscrete()
    total = steps if denoise >= 0.9999 else int(steps / denoise)
    discard = sampler in comfy.samplers.KSampler.DISCARD_PENULTIMATE_SIGMA_SAMPLERS
    sigmas = comfy.samplers.calculate_sigmas(ms, scheduler, total + 1 if discard else total)
    if discard:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    return sigmas[-(steps + 1):]


@pytest.mark.parametrize("sampler, scheduler, steps, denoise", [
    ("euler", "karras", 13, 1.0), ("dpmpp_2m", "sgm_uniform", 30, 1.0), ("euler", "normal", 20, 0.6),
    ("uni_pc", "normal", 9, 1.0),  # a sampler that drops the penultimate sigma
])
def test_the_window_needs_no_sampler_setting_and_the_run_says_its_steps(probe_host, sampler, scheduler, steps, denoise):
    # The loader has no sampler inputs: the window is a percent pair, which ComfyUI maps to sigmas the
    # same way whatever samples them. The steps report is learnt from the sigmas of the run itself.
    info = probe_host.object_info("PalsyTimestepWindowControlNetLoader")["input"]
    assert not {"steps", "sampler_name", "scheduler"} & {*info["required"], *info.get("optional", {})}
    calls, _, loaded, report = _sample(probe_host, apply="window_only", steps=steps, sampler=sampler,
                                       scheduler=scheduler, denoise=denoise)
    assert loaded == f"{WINDOW_NET}: t 500..700 = percent 0.29930..0.49950; apply: window_only; trained: partial"
    sigmas = _run_sigmas(sampler, scheduler, steps, denoise)
    inside = schedule.steps_in_window(sigmas, 500, 700)
    assert report == (f"{WINDOW_NET}: {schedule.describe_window(500, 700, sigmas, 'this run')}; apply: window_only, "
                      f"the net ran on those steps only; trained: partial")
    assert f"of {steps} steps in window" in report and inside
    # Exact: the net ran on the steps the report names, and on no other.
    ms = ModelSamplingDiscrete()
    assert sorted({t for _, t in calls}, reverse=True) == [int(ms.timestep(sigmas[i])) for i in inside]


def test_apply_advanced_percents_still_narrow_both_nets(probe_host):
    start, end = 0.4, 0.9  # cuts the window (0.2993..0.4995) and the base's steps on both sides
    steps = _step_timesteps(start, end)
    calls, _, _, _ = _sample(probe_host, apply="window_then_base", base=BASE_NET, start=start, end=end)
    assert calls == [(0 if inside else 1, t) for t, inside, user in steps if user]
    window_calls, base_calls = sum(net == 0 for net, _ in calls), sum(net == 1 for net, _ in calls)
    assert 0 < window_calls < 4 and 0 < base_calls < 16  # both cut, from 4 and 16 over the full range


def test_overrides_set_the_window_of_a_plain_controlnet(probe_host):
    calls, _, report, _ = _sample(probe_host, name=PLAIN_NET, apply="window_only", t_lo=0, t_hi=400)
    assert report.startswith(f"{PLAIN_NET}: t 0..400 = percent 0.59960..1.00000")
    ms = ModelSamplingDiscrete()
    sigmas = comfy.samplers.calculate_sigmas(ms, "normal", STEPS)
    expected = [int(ms.timestep(sigmas[i])) for i in schedule.steps_in_window(sigmas, 0, 400)]
    assert calls == [(2, t) for t in expected] and len(expected) == 8


def test_user_errors_get_clear_messages(probe_host):
    def run_loader(**inputs):
        graph = _graph(**inputs)
        return probe_host.run({"4": graph["4"], "11": graph["11"]})

    r = run_loader(name=PLAIN_NET)
    assert r.status == "error" and f"{PLAIN_NET}: has no training-window metadata" in r.error and "t_lo" in r.error
    r = run_loader(apply="window_then_base")
    assert r.status == "error" and "needs base_control_net_name" in r.error
    r = run_loader(t_lo=700, t_hi=500)
    assert r.status == "invalid" and "swap them" in r.error
    r = run_loader(apply="window")
    assert r.status == "invalid" and "apply='window' is not one of its choices (everywhere, window_only" in r.error
    r = run_loader(name="tiny_sd15.safetensors")  # a file from another folder (ComfyUI does not check V3 combos)
    assert r.status == "invalid" and "tiny_sd15.safetensors" in r.error and "models/controlnet/" in r.error, r.error
