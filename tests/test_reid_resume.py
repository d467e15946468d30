"""--resume checks whole-file digests of the base models (issue 24, part 5): a ControlNet of the same
size with one tensor changed by 1% is refused, whether it sits in another folder under the same name or
replaced the file in place; an unchanged file is not read again on resume."""
import json
import os
import shutil
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from test_training import config as training_config
from test_training_safety import files  # noqa: F401 (the fixture: tiny models and one real photo)
from training import checkpointing as ckpt
from training.recipe import train


def config(files, out, **kw):
    return training_config(files, out, **{"batch_size": 1, "steps": 1, **kw})


def unsampled_tensor(path, weights, blocks=64, block=1 << 16):
    """A tensor whose bytes lie wholly between the 64 evenly spaced 64 KiB blocks the old sampled
    fingerprint read, so only a whole-file digest can see it change."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    starts = [max(0, size - block) * i // (blocks - 1) for i in range(blocks)]
    for name, info in header.items():
        if name == "__metadata__":
            continue
        lo, hi = (8 + n + o for o in info["data_offsets"])
        if weights[name].any() and not any(s < hi and lo < s + block for s in starts):
            return name
    raise AssertionError("every tensor overlaps a sampled block")


def scale_one_tensor(src, dst):
    """dst: src with one tensor scaled by 1.01, same size in bytes."""
    weights = load_file(src)
    name = unsampled_tensor(src, weights)
    weights[name] = weights[name] * 1.01
    save_file(weights, dst)
    assert os.path.getsize(dst) == os.path.getsize(src) and not torch.equal(load_file(dst)[name], load_file(src)[name])


def saved_controlnet(cfg):
    state, _, _ = ckpt.load_latest(os.path.join(os.path.splitext(cfg.out)[0] + "_training", ckpt.STATE_FILE))
    return state["base_files"]["controlnet"]


def test_a_same_size_controlnet_with_one_tensor_changed_is_refused_and_named(files, tmp_path):
    first = config(files, "digest.safetensors")
    train(first)
    before = saved_controlnet(first)
    other = tmp_path / "cn.safetensors"  # the same name in another folder
    scale_one_tensor(files["controlnet"], str(other))
    again = config(files, "digest.safetensors", steps=2, resume=True, overwrite=True)
    again.controlnet = str(other)
    with pytest.raises(ValueError, match=r"--controlnet cn\.safetensors is not the controlnet this run was trained from"):
        train(again)
    assert saved_controlnet(first) == before  # the state still names the file it was trained from


def test_a_controlnet_changed_in_place_is_refused(files, tmp_path):
    own = str(tmp_path / "mine.safetensors")
    shutil.copyfile(files["controlnet"], own)
    first = config(files, "in_place.safetensors")
    first.controlnet = own
    train(first)
    scale_one_tensor(files["controlnet"], own)
    again = config(files, "in_place.safetensors", steps=2, resume=True, overwrite=True)
    again.controlnet = own
    with pytest.raises(ValueError, match=r"--controlnet mine\.safetensors is not the controlnet"):
        train(again)


def test_an_unchanged_model_file_is_not_hashed_again_on_resume(files, monkeypatch):
    first = config(files, "rehash.safetensors")
    train(first)
    hashed = []
    real = ckpt.sha256_of
    monkeypatch.setattr(ckpt, "sha256_of", lambda path: hashed.append(path) or real(path))
    train(config(files, "rehash.safetensors", steps=2, resume=True, overwrite=True))
    assert hashed == []
    assert saved_controlnet(first)["sha256"] == real(files["controlnet"])
