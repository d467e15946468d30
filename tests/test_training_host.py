"""A trained ControlNet loads in the real ComfyUI host, through its own loader and the window loader, and steers sampling."""
import numpy as np
import pytest
from host import TINY_CHECKPOINT, TINY_CONTROLNET
from real_faces import photos

from training.recipe import Config, train

TRAINED = "palsy_trained_partial.safetensors"


@pytest.fixture(scope="module")
def trained(host, module_tmp):
    from palsysim.base.photos import write_image
    data = module_tmp("host_training") / "data"
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
    from palsysim.controlnet.file import read_window
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


# --- lora mode written as a LoRA file (--lora-format both): base + LoRA loads as the merged file ----------

LORA_BASE = "my_canny_base.safetensors"  # the base ControlNet under a name the host does not have at first
LORA_MERGED, LORA_FILE = "palsy_lora.safetensors", "palsy_lora_lora.safetensors"


@pytest.fixture(scope="module")
def lora_files(host, module_tmp):
    import shutil

    from palsysim.base.photos import write_image
    root = module_tmp("host_lora")
    write_image(str(root / "data" / "p1" / "rest" / "a.png"), photos()["astronaut"])
    base = str(root / LORA_BASE)
    shutil.copy(host.model_path("controlnet", TINY_CONTROLNET), base)
    train(Config(checkpoint=host.model_path("checkpoints", TINY_CHECKPOINT), controlnet=base, data=str(root / "data"),
                 out=host.model_path("controlnet", LORA_MERGED), mode="lora", lora_rank=4, lora_format="both",
                 resolution=64, batch_size=2, steps=3, lr=3e-2, progress=False))
    host.refresh_models()
    return {"base": base, "merged": host.model_path("controlnet", LORA_MERGED),
            "lora": host.model_path("controlnet", LORA_FILE)}


def window_loader(name, base="(none)", apply="everywhere"):
    return {"class_type": "PalsyTimestepWindowControlNetLoader",
            "inputs": {"control_net_name": name, "apply": apply, "t_lo": -1, "t_hi": -1,
                       "base_control_net_name": base, "steps": 20, "sampler_name": "euler", "scheduler": "normal"}}


def test_lora_file_metadata_and_weights_equal_the_merged_file(lora_files):
    import torch
    from safetensors.torch import load_file

    from palsysim.controlnet.file import is_lora, load_controlnet_weights, merge_lora, read_window
    meta = read_window(lora_files["lora"])
    assert is_lora(meta) and not is_lora(read_window(lora_files["merged"]))
    assert (meta["t_lo"], meta["t_hi"], meta["mode"], meta["lora_rank"]) == (0, 999, "lora", "4")
    assert (meta["base_controlnet"], meta["base_model"]) == (LORA_BASE, TINY_CHECKPOINT)  # names, never paths
    factors = load_file(lora_files["lora"])
    assert all(k.startswith("lora.control_model.") and k.endswith((".down", ".up", ".alpha")) for k in factors)
    assert "lora.control_model.input_blocks.1.1.proj_in.weight.down" in factors
    merged_file = load_file(lora_files["merged"])
    merged = merge_lora(load_controlnet_weights(lora_files["base"]), factors)
    assert merged.keys() == merged_file.keys()
    assert all(torch.equal(merged[k], merged_file[k]) for k in merged)  # one merge, bit for bit


def test_lora_file_loads_with_its_base_and_samples_as_the_merged_file(host, lora_files):
    import shutil

    # no base chosen and the recorded base is not in models/controlnet: the message names it
    r = host.run({"4": window_loader(LORA_FILE), "11": {"class_type": "PreviewAny", "inputs": {"source": ["4", 1]}}})
    assert r.status == "error" and f"'{LORA_BASE}'" in r.error and "models/controlnet" in r.error, r.error
    assert str(lora_files["base"]) not in r.error  # the file name, not where it lived

    base_only, _ = sample(host, {"class_type": "ControlNetLoader", "inputs": {"control_net_name": TINY_CONTROLNET}}, 1.0)
    merged, _ = sample(host, window_loader(LORA_MERGED), 1.0)
    report = {"11": {"class_type": "PreviewAny", "inputs": {"source": ["4", 1]}}}
    chosen, result = sample(host, window_loader(LORA_FILE, base=TINY_CONTROLNET), 1.0, report)  # same weights, other name
    assert np.array_equal(merged, chosen)
    assert np.abs(merged - base_only).mean() > 0.5  # the LoRA changed the net
    assert f"LoRA merged into {TINY_CONTROLNET}" in str(result.outputs["11"])

    from tiny_models import write_tiny_controlnet
    write_tiny_controlnet(host.model_path("controlnet", "other_canny.safetensors"), seed=1)  # same shapes, other net
    host.refresh_models()
    r = host.run({"4": window_loader(LORA_FILE, base="other_canny.safetensors"),
                  "11": {"class_type": "PreviewAny", "inputs": {"source": ["4", 1]}}})
    assert r.status == "error" and "other_canny.safetensors holds other weights" in r.error, r.error

    shutil.copy(lora_files["base"], host.model_path("controlnet", LORA_BASE))  # now the recorded base is there
    host.refresh_models()
    found, _ = sample(host, window_loader(LORA_FILE), 1.0)
    assert np.array_equal(merged, found)
    assert "control could not be applied" not in host.log()
