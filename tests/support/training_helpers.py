"""Shared by the training tests: test_training.py's tiny-model run settings and its log, and the
one-photo dataset with tiny models that test_training_safety.py and test_reid_resume.py train on."""
import json
import os

from real_faces import photos
from tiny_models import write_tiny_checkpoint, write_tiny_controlnet

from training.recipe import Config, run_dir


def training_config(files, out, **kw):
    """A Config for files (a dict: checkpoint, controlnet, data, root) writing to files["root"] / out:
    64x64, batch 4, 3 steps unless kw says otherwise."""
    kw = {"resolution": 64, "batch_size": 4, "steps": 3, "lr": 1e-4, "progress": False, **kw}
    return Config(checkpoint=files["checkpoint"], controlnet=files["controlnet"], data=files["data"],
                  out=str(files["root"] / out), **kw)


def read_log(cfg):
    """The run's train.json."""
    with open(os.path.join(run_dir(cfg.out), "train.json")) as f:
        return json.load(f)


def one_photo_files(root):
    """Tiny checkpoint and ControlNet files and a one-photo dataset root/data/p1/rest/ (the astronaut)
    under root (a pathlib.Path) -> {checkpoint, controlnet, data, root}."""
    from palsysim.base.photos import write_image
    write_image(str(root / "data" / "p1" / "rest" / "a.png"), photos()["astronaut"])
    return {"checkpoint": write_tiny_checkpoint(str(root / "sd.safetensors")),
            "controlnet": write_tiny_controlnet(str(root / "cn.safetensors")), "data": str(root / "data"), "root": root}
