"""Training on ComfyUI's own model code: windowed timesteps, what changes, loss, and the output file.

Tiny SD1.5-shaped models (tests/support/tiny_models.py) and a one-photo dataset (a real face with a
synthetic palsy) at 64x64 keep every run to seconds on a CPU.
"""
import json
import os

import numpy as np
import pytest
import torch
from real_faces import photos
from safetensors.torch import load_file
from tiny_models import UNET_CONFIG, write_tiny_checkpoint, write_tiny_controlnet
from training_helpers import read_log
from training_helpers import training_config as config

from training.dataset import DatasetError, load_dataset
from training.host import load_models, use_comfyui
from training.modes import MODES, freeze_trainable, innermost_block_indices
from training.recipe import Config, TrainingStopped, draws, run_dir, train


@pytest.fixture(scope="module")
def files(module_tmp):
    """Tiny checkpoint and ControlNet files, and a one-photo dataset DIR/<patient>/rest/."""
    from palsysim.base.photos import write_image
    from palsysim.face.landmarks import face_landmarks
    from palsysim.face.synth import synth_palsy
    root = module_tmp("training")
    photo = photos()["astronaut"]
    patient, _ = synth_palsy(photo, face_landmarks(photo), "left", 0.7)
    write_image(str(root / "data" / "patient_a" / "rest" / "photo_001.png"), patient)
    return {"checkpoint": write_tiny_checkpoint(str(root / "tiny_sd15.safetensors")),
            "controlnet": write_tiny_controlnet(str(root / "tiny_cn.safetensors")),
            "data": str(root / "data"), "root": root}


def bit_identical(a, b):
    """Same bits (NaN == NaN: ComfyUI leaves weights a checkpoint lacks, e.g. CLIP's text_projection, unset)."""
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(
        a.detach().cpu().reshape(-1).view(torch.uint8), b.detach().cpu().reshape(-1).view(torch.uint8))


def test_partial_draws_only_window_timesteps_with_both_ends():
    seen = torch.cat([draws(0, step, 4, 1, 500, 700)[1] for step in range(3000)])
    assert seen.min() == 500 and seen.max() == 700
    assert set(seen.tolist()) == set(range(500, 701))


def test_full_draws_cover_every_timestep():
    seen = torch.cat([draws(0, step, 4, 1, 0, 999)[1] for step in range(3000)])
    assert set(seen.tolist()) == set(range(1000))


def test_default_windows_per_mode():
    windows = {m: Config("c", "n", "d", "o.safetensors", mode=m).window() for m in MODES}
    assert windows == {"partial": (500, 700), "full": (0, 999), "freeze": (0, 999), "lora": (0, 999)}
    assert Config("c", "n", "d", "o.safetensors", mode="full", t_min=100, t_max=300).window() == (100, 300)
    with pytest.raises(ValueError, match="t_lo=701 is above t_hi=700"):
        Config("c", "n", "d", "o.safetensors", t_min=701).window()


def test_batches_cycle_through_the_dataset_in_shuffled_epochs():
    order = torch.cat([draws(3, step, 4, 6, 500, 700)[0] for step in range(3)])  # 12 = two epochs of 6
    assert sorted(order[:6].tolist()) == list(range(6)) and sorted(order[6:].tolist()) == list(range(6))


def test_partial_training_changes_only_the_controlnet_and_lowers_the_loss(files):
    use_comfyui()
    models = load_models(files["checkpoint"], files["controlnet"])
    frozen = {name: {k: v.clone() for k, v in module.state_dict().items()} for name, module in
              (("unet", models.unet), ("clip", models.clip.cond_stage_model), ("vae", models.vae.first_stage_model))}
    before = {k: v.clone() for k, v in models.control_model.state_dict().items()}
    cfg = config(files, "partial.safetensors", steps=30)
    train(cfg, models=models)

    for name, module in (("unet", models.unet), ("clip", models.clip.cond_stage_model),
                         ("vae", models.vae.first_stage_model)):
        after = module.state_dict()
        assert after.keys() == frozen[name].keys()
        changed = [k for k in after if not bit_identical(after[k], frozen[name][k])]
        assert not changed, f"{name} changed: {changed[:5]}"
    after = models.control_model.state_dict()
    assert all(not bit_identical(after[k], before[k]) for k in before), "a ControlNet weight did not train"

    log = read_log(cfg)
    timesteps = [t for s in log["steps"] for t in s["timesteps"]]
    assert len(timesteps) == 30 * 4 and all(500 <= t <= 700 for t in timesteps)
    losses = [s["loss"] for s in log["steps"]]
    assert np.mean(losses[-8:]) < 0.75 * np.mean(losses[:8]), losses
    assert log["status"] == "finished" and log["dataset"] == {"photos": 1, "patients": 1, "expressions": {"rest": 1}}
    assert os.path.getsize(os.path.join(run_dir(cfg.out), "loss.png")) > 1000


def test_freeze_trains_only_innermost_middle_and_cross_attention(files):
    cfg = config(files, "freeze.safetensors", mode="freeze")
    train(cfg)
    base = {k[len("control_model."):]: v for k, v in load_file(files["controlnet"]).items()}
    out = {k[len("control_model."):]: v for k, v in load_file(cfg.out).items()}
    assert out.keys() == base.keys()
    changed = {k for k in base if not torch.equal(out[k], base[k])}
    innermost = innermost_block_indices(type("Layout", (), {"num_res_blocks": UNET_CONFIG["num_res_blocks"]}))
    assert innermost == [1]  # the tiny net has one level: input_blocks.1 after the input conv
    allowed = {k for k in base if freeze_trainable(k, innermost)}
    assert changed == allowed
    assert any(k.startswith("input_hint_block.") for k in base.keys() - allowed)
    assert any(".attn2." in k for k in allowed) and any(k.startswith("middle_block.") for k in allowed)
    assert read_log(cfg)["trainable_parameters"] == sum(base[k].numel() for k in allowed)


def test_innermost_blocks_of_an_sd15_layout():
    class SD15Layout:
        num_res_blocks = [2, 2, 2, 2]  # input_blocks: 0 conv, 1-2, 3 down, 4-5, 6 down, 7-8, 9 down, 10-11
    assert innermost_block_indices(SD15Layout) == [10, 11]
    assert freeze_trainable("input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight", [10, 11])
    assert not freeze_trainable("input_blocks.4.1.transformer_blocks.0.attn1.to_k.weight", [10, 11])
    assert freeze_trainable("zero_convs.11.0.weight", [10, 11]) and not freeze_trainable("zero_convs.9.0.weight", [10, 11])
    assert freeze_trainable("middle_block_out.0.bias", [10, 11]) and not freeze_trainable("time_embed.0.weight", [10, 11])


def test_lora_is_written_merged_and_keeps_biases(files):
    cfg = config(files, "lora.safetensors", mode="lora", lora_rank=4)
    train(cfg)
    base, out = load_file(files["controlnet"]), load_file(cfg.out)
    assert out.keys() == base.keys()
    weights = [k for k in base if k.endswith(".weight") and base[k].ndim in (2, 4)]
    others = [k for k in base if k not in weights]
    assert all(not torch.equal(out[k], base[k]) for k in weights)
    assert all(torch.equal(out[k], base[k]) for k in others)
    delta = out["control_model.input_blocks.1.1.proj_in.weight"] - base["control_model.input_blocks.1.1.proj_in.weight"]
    assert torch.linalg.matrix_rank(delta.flatten(1)) <= 4
    assert read_log(cfg)["settings"]["t_min"] == 0


def test_lora_format_lora_writes_only_the_factors_relative_to_the_base(files):
    from palsysim.controlnet.file import base_fingerprint, is_lora, load_controlnet_weights, merge_lora, read_window
    from training.__main__ import parse_args
    cfg = config(files, "lora_only.safetensors", mode="lora", lora_rank=2, lora_format="lora", steps=2, lr=1e-2)
    train(cfg)
    assert not os.path.exists(str(files["root"] / "lora_only_lora.safetensors"))
    meta, factors = read_window(cfg.out), load_file(cfg.out)
    assert is_lora(meta) and meta["base_controlnet"] == "tiny_cn.safetensors" and meta["lora_rank"] == "2"
    assert not any(k.startswith("control_model.") for k in factors)
    base = load_controlnet_weights(files["controlnet"])
    half = {k: v.half() for k, v in base.items()}  # an fp16 copy of the same base passes the check
    assert meta["base_fingerprint"] == base_fingerprint(base) == base_fingerprint(half)
    assert base_fingerprint({k: v + 1e-2 for k, v in base.items()}) != meta["base_fingerprint"]
    down = factors["lora.control_model.input_blocks.1.1.proj_in.weight.down"]
    assert down.shape[0] == 2 and factors["lora.control_model.input_blocks.1.1.proj_in.weight.alpha"] == 2.0
    merged = merge_lora(base, factors)
    key = "control_model.input_blocks.1.1.proj_in.weight"
    assert not torch.equal(merged[key], base[key]) and torch.equal(merged[key.replace("weight", "bias")],
                                                                   base[key.replace("weight", "bias")])
    args = ["--checkpoint", "c", "--controlnet", "n", "--data", "d", "--out", "o.safetensors"]
    assert parse_args(args + ["--mode", "lora", "--lora-format", "both"]).lora_format == "both"
    with pytest.raises(SystemExit):
        parse_args(args + ["--lora-format", "lora"])  # partial mode has no factors


def test_merge_lora_scales_by_alpha_and_names_a_base_that_does_not_fit():
    from palsysim.controlnet.file import merge_lora
    base = {"control_model.a.weight": torch.ones(3, 2, 1, 1), "control_model.a.bias": torch.zeros(3)}
    down, up = torch.ones(1, 2), torch.full((3, 1), 2.0)
    lora = {"lora.control_model.a.weight.down": down, "lora.control_model.a.weight.up": up}
    assert torch.equal(merge_lora(base, lora)["control_model.a.weight"], torch.full((3, 2, 1, 1), 3.0))
    half = merge_lora(base, {**lora, "lora.control_model.a.weight.alpha": torch.tensor(0.5)})
    assert torch.equal(half["control_model.a.weight"], torch.full((3, 2, 1, 1), 2.0))
    with pytest.raises(ValueError, match="not the ControlNet this LoRA was trained from"):
        merge_lora({"control_model.a.weight": torch.ones(4, 2, 1, 1)}, lora)
    with pytest.raises(ValueError, match="not in the base ControlNet"):
        merge_lora({"control_model.b.weight": torch.ones(3, 2, 1, 1)}, lora)


def test_dataset_problems_are_listed_together_before_models_load(files, tmp_path):
    from palsysim.base.photos import write_image
    data = tmp_path / "data"
    write_image(str(data / "p1" / "rest" / "ok.png"), photos()["astronaut"])
    write_image(str(data / "p1" / "smile" / "a.png"), photos()["astronaut"])
    (data / "p1" / "grin").mkdir()
    (data / "p1" / "grin" / "broken.png").write_bytes(b"not a png")
    (data / "p1" / "grin" / "notes.txt").write_text("x")
    write_image(str(data / "p2" / "wink" / "blank.png"), np.full((128, 128, 3), 200, np.uint8))
    cfg = Config(checkpoint=str(tmp_path / "missing.safetensors"), controlnet=str(tmp_path / "missing_cn.safetensors"),
                 data=str(data), out=str(tmp_path / "o.safetensors"), resolution=64, progress=False)
    with pytest.raises(DatasetError) as e:
        train(cfg)  # the model files do not exist: the dataset is checked first
    message = str(e.value)
    assert "4 problem(s)" in message
    for part in ("p1/smile: unknown expression folder 'smile'", "p1/grin/broken.png", "not a readable image",
                 "p1/grin/notes.txt: not a PNG or JPEG", "p2/wink/blank.png: no face found"):
        assert part in message, message


def test_codc_needs_donors(files):
    with pytest.raises(DatasetError, match="--condition codc needs --donors"):
        load_dataset(files["data"], 64, "codc", None)


def test_codc_conditions_from_a_donor(files, tmp_path):
    from palsysim.base.photos import write_image
    write_image(str(tmp_path / "donor.jpg"), photos()["grace_hopper"])
    pf = load_dataset(files["data"], 64, "pf")
    codc = load_dataset(files["data"], 64, "codc", str(tmp_path))
    assert codc.conditions.shape == pf.conditions.shape == (1, 64, 64, 3)
    assert np.array_equal(codc.images, pf.images) and not np.array_equal(codc.conditions, pf.conditions)
    assert set(np.unique(codc.conditions)) <= {0, 255} and codc.conditions.any()


def test_nan_loss_stops_and_keeps_the_last_good_state(files):
    cfg = config(files, "nan.safetensors", lr=1e30, steps=6, checkpoint_every=1)
    with pytest.raises(TrainingStopped, match="loss became (nan|inf)") as e:
        train(cfg)
    assert e.value.exit_code == 1
    assert not os.path.exists(cfg.out)
    state = torch.load(os.path.join(run_dir(cfg.out), "training_state.torch"), weights_only=True)
    log = read_log(cfg)
    assert log["status"].startswith("stopped: loss")
    assert state["step"] == len(log["steps"]) >= 1
    assert all(np.isfinite(s["loss"]) for s in log["steps"])


def test_files_hold_no_patient_names_or_paths(files):
    cfg = config(files, "privacy.safetensors", checkpoint_every=2)
    train(cfg)
    work = run_dir(cfg.out)
    blobs = [open(os.path.join(work, n), "rb").read() for n in os.listdir(work)]
    from safetensors import safe_open
    with safe_open(cfg.out, "pt") as f:
        blobs.append(json.dumps(f.metadata()).encode())
    for blob in blobs:
        for secret in (b"patient_a", b"photo_001", files["data"].encode(), str(files["root"]).encode()):
            assert secret not in blob


def test_resume_may_lower_the_learning_rate_but_not_change_the_run(files):
    cfg = config(files, "relr.safetensors", steps=2, checkpoint_every=1)
    train(cfg)
    log = train(config(files, "relr.safetensors", steps=3, lr=1e-5, resume=True, overwrite=True))
    assert [s["lr"] for s in log["steps"]] == [1e-4, 1e-4, 1e-5]
    with pytest.raises(ValueError, match="t_min, t_max differ"):
        train(config(files, "relr.safetensors", steps=4, resume=True, overwrite=True, t_min=400, t_max=600))


def test_swapped_model_files_are_named_in_the_message(files):
    from palsysim.base.errors import InputError
    use_comfyui()
    with pytest.raises(InputError, match="tiny_sd15.safetensors: is a Stable Diffusion checkpoint with no ControlNet"):
        load_models(files["checkpoint"], files["checkpoint"])
