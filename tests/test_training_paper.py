"""Training as the paper and the reference code (issue 11, point 6): the exact prompt, latents drawn from
the VAE posterior at every step, a learning rate per mode, --resume only on the same model files, and
the CODC training condition marked experimental."""

import pytest
import torch
from real_faces import photos
from tiny_models import _init_weights, import_comfy, write_tiny_checkpoint, write_tiny_controlnet
from training_helpers import read_log, training_config

from training import checkpointing as ckpt
from training.__main__ import parse_args
from training.host import load_models, use_comfyui
from training.latents import NO_POSTERIOR, POSTERIOR, draw_latents, encode_posterior
from training.recipe import Config, train

PAPER = ("ID photo of person wearing light-blue surgical cap and top, frontal headshot centered, even lighting, "
         "light-blue background, ultra-realistic, sharp focus")
# An SD-style AutoencoderKL (the real VAE's class and regulariser), small enough for a test.
TINY_KL = {"double_z": True, "z_channels": 4, "resolution": 64, "in_channels": 3, "out_ch": 3, "ch": 32,
           "ch_mult": [1, 1, 1, 1], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}


@pytest.fixture(scope="module")
def files(module_tmp):
    from palsysim.base.photos import write_image
    root = module_tmp("paper")
    write_image(str(root / "data" / "p1" / "rest" / "a.png"), photos()["astronaut"])
    write_image(str(root / "data" / "p2" / "rest" / "b.png"), photos()["grace_hopper"])
    return {"checkpoint": write_tiny_checkpoint(str(root / "sd.safetensors")),
            "controlnet": write_tiny_controlnet(str(root / "cn.safetensors")),
            "other_controlnet": write_tiny_controlnet(str(root / "other_cn.safetensors"), seed=7),
            "data": str(root / "data"), "root": root}


def config(files, out, **kw):
    return training_config(files, out, **{"batch_size": 2, "steps": 2, **kw})


def tiny_kl_vae():
    import_comfy()
    import comfy.sd
    from comfy.ldm.models.autoencoder import AutoencoderKL
    model = _init_weights(AutoencoderKL(ddconfig=TINY_KL, embed_dim=4), seed=3)
    return comfy.sd.VAE(sd=model.state_dict(), config={"params": {"ddconfig": TINY_KL, "embed_dim": 4}})


def models_with_kl_vae(files):
    use_comfyui()
    models = load_models(files["checkpoint"], files["controlnet"])
    models.vae = tiny_kl_vae()
    return models


def test_the_prompt_is_the_papers_word_for_word(files):
    assert Config("c", "n", "d", "o.safetensors").prompt == PAPER
    assert parse_args(["--checkpoint", "c", "--controlnet", "n", "--data", "d", "--out", "o.safetensors"]).prompt == PAPER


def test_posterior_moments_of_comfyuis_vae_and_a_draw_per_step(files):
    from palsysim.condition.facecrop import face_crop
    from palsysim.face.landmarks import face_landmarks
    vae = tiny_kl_vae()
    face = photos()["astronaut"]
    crop, _ = face_crop(face, face_landmarks(face).xy, 64)
    pixels = torch.from_numpy(crop[None]).float() / 255.0
    mean, std, note = encode_posterior(vae, pixels)
    assert note == POSTERIOR and mean.shape == std.shape == (1, 4, 8, 8)
    assert torch.allclose(mean, vae.encode(pixels), atol=1e-6)  # ComfyUI's own encode is the posterior's mode
    with torch.no_grad():  # the encoder's moments as LDM splits them: mean, then log-variance
        moments = vae.first_stage_model.quant_conv(vae.first_stage_model.encoder(pixels.movedim(-1, 1) * 2 - 1))
    assert torch.allclose(std, torch.exp(0.5 * moments[:, 4:].clamp(-30, 20)), rtol=1e-5)
    assert (std > 0).all()
    # each step draws anew, and the same step draws the same (resume stays exact)
    a, b = (draw_latents(mean, std, ckpt.step_generator(0, "posterior", s)) for s in (0, 1))
    assert not torch.equal(a, b) and not torch.equal(a, mean)
    assert torch.equal(a, draw_latents(mean, std, ckpt.step_generator(0, "posterior", 0)))
    assert mean.std() > 0 and (a - mean).abs().mean() > 0.1 * std.mean()


def test_training_on_posterior_draws_resumes_exactly(files):
    unbroken = train(config(files, "kl.safetensors", steps=3), models=models_with_kl_vae(files))
    assert unbroken["settings"]["latents"] == POSTERIOR
    train(config(files, "kl_resumed.safetensors", steps=2, checkpoint_every=1), models=models_with_kl_vae(files))
    resumed = train(config(files, "kl_resumed.safetensors", steps=3, resume=True, overwrite=True), models=models_with_kl_vae(files))
    assert [s["loss"] for s in resumed["steps"]] == [s["loss"] for s in unbroken["steps"]]
    from safetensors.torch import load_file
    a, b = load_file(str(files["root"] / "kl.safetensors")), load_file(str(files["root"] / "kl_resumed.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_vae_without_a_posterior_is_said_to_give_fixed_latents(files):
    cfg = config(files, "taesd.safetensors", steps=1)
    log = train(cfg)
    assert log["settings"]["latents"] == NO_POSTERIOR.format("TAESD") == read_log(cfg)["settings"]["latents"]
    assert "no posterior" in log["settings"]["latents"]


def test_default_learning_rate_per_mode_is_recorded(files):
    lora = train(config(files, "lr_lora.safetensors", mode="lora", lora_rank=2, lr=None, steps=1))
    partial = train(config(files, "lr_partial.safetensors", lr=None, steps=1))
    assert (lora["settings"]["lr"], lora["settings"]["lr_source"]) == (1e-4, "lora default")
    assert (partial["settings"]["lr"], partial["settings"]["lr_source"]) == (1e-5, "partial default")
    assert [s["lr"] for s in lora["steps"]] == [1e-4]
    # a resumed run without --lr keeps the rate it was saved with, whatever the mode's default
    train(config(files, "lr_kept.safetensors", lr=3e-4, steps=1))
    kept = train(config(files, "lr_kept.safetensors", lr=None, steps=2, resume=True, overwrite=True))
    assert [s["lr"] for s in kept["steps"]] == [3e-4, 3e-4] and kept["settings"]["lr_source"] == "saved run"


def test_resume_refuses_other_model_files_and_names_both(files):
    train(config(files, "same_models.safetensors", steps=1))
    other = config(files, "same_models.safetensors", steps=2, resume=True, overwrite=True)
    other.controlnet = files["other_controlnet"]
    with pytest.raises(ValueError) as e:
        train(other)
    assert "--controlnet other_cn.safetensors is not the controlnet this run was trained from (cn.safetensors" in str(e.value)
    other = config(files, "same_models.safetensors", steps=2, resume=True, overwrite=True)
    other.checkpoint = files["other_controlnet"]
    with pytest.raises(ValueError, match="--checkpoint other_cn.safetensors is not the checkpoint .*sd.safetensors"):
        train(other)
    assert read_log(config(files, "same_models.safetensors"))["status"] == "finished"  # nothing was mixed in


def test_codc_training_is_marked_experimental_with_the_reason(files, tmp_path, capsys):
    from palsysim.base.photos import write_image
    write_image(str(tmp_path / "donor.png"), photos()["grace_hopper"])
    log = train(config(files, "codc.safetensors", steps=1, condition="codc", donors=str(tmp_path)))
    note = log["settings"]["condition_note"]
    assert "experimental" in note and "misaligned" in note and "Method 2" in note
    assert note in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    helptext = capsys.readouterr().out
    assert "EXPERIMENTAL" in helptext and "Method 2" in helptext
