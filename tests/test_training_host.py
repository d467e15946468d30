"""A trained ControlNet loads in the real ComfyUI host, through its own loader and the window loader, and steers sampling."""
import numpy as np
import pytest

from conftest import TINY_CHECKPOINT, TINY_CONTROLNET
from real_faces import photos
from training.recipe import Config, train

TRAINED = "palsy_trained_partial.safetensors"


@pytest.fixture(scope="module")
def trained(host, tmp_path_factory):
    from palsysim.images import write_image
    data = tmp_path_factory.mktemp("host_training") / "data"
    write_image(str(data / "p1" / "rest" / "a.png"), photos()["astronaut"])
    out = host.model_path("controlnet", TRAINED)
    train(Config(checkpoint=host.model_path("checkpoints", TINY_CHECKPOINT),
                 controlnet=host.model_path("controlnet", TINY_CONTROLNET), data=str(data), out=out,
                 resolution=64, batch_size=2, steps=2, lr=1e-4, progress=False))
    host.refresh_models()
    return out


def graph(loader, strength, hint):
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": TINY_CHECKPOINT}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "ID photo of a person"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        "4": loader,
        "5": {"class_type": "LoadImage", "inputs": {"image": hint}},
        "6": {"class_type": "ControlNetApplyAdvanced",
              "inputs": {"positive": ["2", 0], "negative": ["3", 0], "control_net": ["4", 0], "image": ["5", 0],
                         "strength": strength, "start_percent": 0.0, "end_percent": 1.0}},
        "7": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "8": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": ["6", 0], "negative": ["6", 1],
                                                   "latent_image": ["7", 0], "seed": 3, "steps": 2, "cfg": 1.0,
                                                   "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        "9": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["1", 2]}},
        "10": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "trained"}},
    }


CORE_LOADER = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": TRAINED}}
WINDOW_LOADER = {"class_type": "PalsyTimestepWindowControlNetLoader",
                 "inputs": {"control_net_name": TRAINED, "apply": "everywhere", "t_lo": -1, "t_hi": -1,
                            "base_control_net_name": "(none)", "steps": 20, "sampler_name": "euler",
                            "scheduler": "normal"}}


def sample(host, loader, strength, extra=None):
    hint = host.upload_image((np.random.default_rng(0).random((64, 64)) > 0.9).astype(np.uint8) * 255)
    prompt = graph(loader, strength, hint)
    prompt.update(extra or {})
    result = host.run(prompt)
    assert result.ok, result.error
    return host.images(result, "10")[0].astype(int), result


def test_trained_controlnet_loads_and_steers_sampling_through_both_loaders(host, trained):
    from palsysim.controlnet_file import read_window
    meta = read_window(trained)
    assert (meta["t_lo"], meta["t_hi"], meta["mode"]) == (500, 700, "partial")
    assert meta["base_model"] == TINY_CHECKPOINT

    without, _ = sample(host, CORE_LOADER, 0.0)
    with_core, _ = sample(host, CORE_LOADER, 1.0)
    report = {"11": {"class_type": "PreviewAny", "inputs": {"source": ["4", 1]}}}
    with_window, result = sample(host, WINDOW_LOADER, 1.0, report)
    assert np.abs(with_core - without).mean() > 1.0  # the trained net changes what is sampled
    assert np.array_equal(with_core, with_window)  # "everywhere" is the plain ControlNet
    text = str(result.outputs["11"])
    assert "500" in text and "700" in text and "trained: partial" in text, text
    assert "control could not be applied" not in host.log()
