"""Pseudo-palsy videos in the real host (issue 26) with the tiny models: the cross-frame attention patch is
exact, every frame starts from one noise, and the anonymized video save writes a clean mp4 or holds the
video back when the privacy gate held back one frame."""
import os

import numpy as np
import pytest
from host import TINY_CHECKPOINT, TINY_CONTROLNET
from real_faces import photo_paths

from palsysim.base.errors import InputError
from palsysim.base.photos import read_image
from palsysim.base.video_files import read_video
from palsysim.identity import dlib_face as identity_dlib

needs_dlib = pytest.mark.skipif(identity_dlib.unavailable() is not None, reason=str(identity_dlib.unavailable()))


def _hint(seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:64, :64]
    r = np.hypot(y - rng.integers(20, 44), x - rng.integers(20, 44))
    return (((r % rng.integers(8, 16)) < 2) * 255).astype(np.uint8)[..., None].repeat(3, axis=2)


@pytest.fixture(scope="module")
def hints(host):
    return [host.upload_image(_hint(s), f"video_hint_{s}.png") for s in range(4)]


MODES = ("first_frame", "first_and_previous", "flow_guided")


def _graph(frames, patch="first_frame", first_noise=0):
    """Three 64x64 frames, one condition each (uploaded names), through the timestep-window ControlNet at cfg 2
    (positive and negative chunks both in the batch), 4 steps. first_noise: None draws each frame's own
    noise; k gives frames 1 and 2 the shared noise (batch_index 0) and frame 0 noise number k (0: the same).
    patch: the cross-frame attention's attend_to, None for none."""
    g = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny_sd15.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "ID photo of a person"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        "4": {"class_type": "PalsyTimestepWindowControlNetLoader",
              "inputs": {"control_net_name": TINY_CONTROLNET, "apply": "everywhere", "t_lo": 500, "t_hi": 700,
                         "base_control_net_name": "(none)", "steps": 4, "sampler_name": "euler",
                         "scheduler": "normal"}},
        "5": {"class_type": "LoadImage", "inputs": {"image": frames[0]}},
        "6": {"class_type": "LoadImage", "inputs": {"image": frames[1]}},
        "7": {"class_type": "LoadImage", "inputs": {"image": frames[2]}},
        "8": {"class_type": "ImageBatch", "inputs": {"image1": ["5", 0], "image2": ["6", 0]}},
        "9": {"class_type": "ImageBatch", "inputs": {"image1": ["8", 0], "image2": ["7", 0]}},
        "10": {"class_type": "ControlNetApplyAdvanced",
               "inputs": {"positive": ["2", 0], "negative": ["3", 0], "control_net": ["4", 0], "image": ["9", 0],
                          "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0}},
        "11": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 3}},
        "12": {"class_type": "PalsySameNoise", "inputs": {"latent": ["11", 0]}},
        # frame 0 alone: batch_index k (LatentFromBatch keeps the index), then frames 1, 2 at index 0
        "17": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 8}},
        "18": {"class_type": "LatentFromBatch", "inputs": {"samples": ["17", 0], "batch_index": first_noise or 0,
                                                          "length": 1}},
        "19": {"class_type": "LatentFromBatch", "inputs": {"samples": ["12", 0], "batch_index": 1, "length": 2}},
        "20": {"class_type": "LatentBatch", "inputs": {"samples1": ["18", 0], "samples2": ["19", 0]}},
        "13": {"class_type": "PalsyCrossFrameAttention", "inputs": {"model": ["1", 0], "attend_to": patch or MODES[0],
                                                                   "conditions": ["9", 0]}},
        "14": {"class_type": "KSampler", "inputs": {
            "model": ["13" if patch else "1", 0], "positive": ["10", 0], "negative": ["10", 1],
            "latent_image": ["11" if first_noise is None else "20", 0], "seed": 3, "steps": 4, "cfg": 2.0,
            "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        "15": {"class_type": "VAEDecode", "inputs": {"samples": ["14", 0], "vae": ["1", 2]}},
        "16": {"class_type": "SaveImage", "inputs": {"images": ["15", 0], "filename_prefix": "video_frames"}},
    }
    return g


def _frames(host, frames, **kw):
    result = host.run(_graph(frames, **kw))
    assert result.ok, result.error
    out = host.images(result, "16")
    assert len(out) == 3
    return out


@pytest.mark.parametrize("mode", MODES)
def test_frame_0_is_the_frame_a_run_without_the_patch_makes(host, hints, mode):
    a, b, c = hints[:3]
    # Each frame from its own noise: with one shared noise the tiny ControlNet leaves the three frames
    # within a few grey levels of each other, so other frames' keys and values would change little.
    patched = _frames(host, [a, b, c], patch=mode, first_noise=None)
    plain = _frames(host, [a, b, c], patch=None, first_noise=None)
    if mode == "first_and_previous":  # frame 0's own keys twice: the same softmax, rounded differently
        assert _diff(patched[0], plain[0]).max() <= 2 and _diff(patched[0], plain[0]).mean() < 0.05
    else:
        assert np.array_equal(patched[0], plain[0])
    assert not np.array_equal(patched[1], plain[1]) and not np.array_equal(patched[2], plain[2])


def _diff(a, b):
    return np.abs(a.astype(int) - b.astype(int))


@pytest.mark.parametrize("mode", MODES)
def test_identical_inputs_give_identical_frames(host, hints, mode):
    same = _frames(host, [hints[0]] * 3, patch=mode)
    # Equal up to rounding: the CPU's batched matmuls round each batch row a little differently.
    for k in (1, 2):
        diff = _diff(same[0], same[k])
        assert diff.max() <= 2 and diff.mean() < 0.05, (diff.max(), diff.mean())


def test_without_the_shared_noise_the_same_conditions_make_different_frames(host, hints):
    drawn = _frames(host, [hints[0]] * 3, first_noise=None)
    assert _diff(drawn[0], drawn[1]).mean() > 2


@pytest.mark.parametrize("mode", MODES)
def test_changing_frame_0_changes_the_other_frames_through_the_patch(host, hints, mode):
    # Frame 0 starts from other noise; frames 1 and 2 keep theirs (the tiny ControlNet barely moves a frame,
    # the start noise decides it). Without the patch frames 1 and 2 stay byte for byte (the next test): a mean
    # change of a few tenths of a grey level is the patch's. flow_guided reaches frame 2 only through frame 1
    # (0.1 of a grey level here).
    a, b, c = hints[:3]
    before, after = _frames(host, [a, b, c], patch=mode), _frames(host, [a, b, c], patch=mode, first_noise=5)
    assert _diff(before[0], after[0]).mean() > 2
    assert _diff(before[1], after[1]).mean() > 0.2 and not np.array_equal(before[2], after[2])


def test_without_the_patch_frame_0_leaves_the_other_frames_alone(host, hints):
    a, b, c = hints[:3]
    before, after = _frames(host, [a, b, c], patch=None), _frames(host, [a, b, c], patch=None, first_noise=5)
    assert _diff(before[0], after[0]).mean() > 2
    assert np.array_equal(before[1], after[1]) and np.array_equal(before[2], after[2])


@pytest.fixture(scope="module")
def people(host):
    paths = photo_paths()
    return {k: host.upload_image(read_image(p)[:512, :512], f"KOBAYASHI_1987_{k}.png") for k, p in paths.items()
            if k in ("astronaut", "grace_hopper")}


def _video_graph(people, frames, fmt="mp4"):
    """'Generated' frames (real photos) -> privacy gate (dlib, against Grace Hopper) -> anonymized video save."""
    g = {str(i + 1): {"class_type": "LoadImage", "inputs": {"image": people[k]}} for i, k in enumerate(frames)}
    batch = ["1", 0]
    for i in range(1, len(frames)):
        nid = str(len(g) + 1)
        g[nid] = {"class_type": "ImageBatch", "inputs": {"image1": batch, "image2": [str(i + 1), 0]}}
        batch = [nid, 0]
    g["ref"] = {"class_type": "LoadImage", "inputs": {"image": people["grace_hopper"]}}
    g["gate"] = {"class_type": "PalsyPrivacyGate", "inputs": {"image": batch, "reference": ["ref", 0],
                                                             "model_name": "none", "threshold": 0.28,
                                                             "backend": "dlib", "dlib_threshold": 0.6}}
    g["save"] = {"class_type": "PalsySaveAnonymizedVideo", "inputs": {
        "frames": ["gate", 0], "fps": 12.0, "filename_prefix": "palsysim/video", "format": fmt,
        "held_back": ["gate", 1], "gate_report": ["gate", 2]}}
    return g


@needs_dlib
@pytest.mark.parametrize("fmt", ["mp4", "webm"])
def test_a_video_whose_frames_all_pass_is_saved_clean(host, people, fmt):
    result = host.run(_video_graph(people, ["astronaut"] * 3, fmt))
    assert result.ok, result.error
    (saved,) = result.outputs["save"]["palsysim_video"]
    path = os.path.join(host.output_dir, saved["subfolder"], saved["filename"])
    frames, fps = read_video(path)
    assert len(frames) == 3 and fps == pytest.approx(12.0)
    data = open(path, "rb").read()
    assert b"KOBAYASHI" not in data and b"grace" not in data.lower() and b"astronaut" not in data.lower()
    assert "saved 3 frames" in result.outputs["save"]["text"][0]


@needs_dlib
def test_one_held_back_frame_holds_back_the_video_with_its_reason(host, people):
    before = sorted(os.listdir(os.path.join(host.output_dir, "palsysim"))) \
        if os.path.isdir(os.path.join(host.output_dir, "palsysim")) else []
    result = host.run(_video_graph(people, ["astronaut", "grace_hopper", "astronaut"]))
    assert result.ok, result.error
    text = result.outputs["save"]["text"][0]
    assert text.startswith("video held back: 1 of 3 frames"), text
    assert "dlib" in text  # the gate's own report follows: which frame, which distance
    assert "palsysim_video" not in result.outputs["save"]
    after = sorted(os.listdir(os.path.join(host.output_dir, "palsysim"))) \
        if os.path.isdir(os.path.join(host.output_dir, "palsysim")) else []
    assert after == before


def test_bench_video_times_the_shipped_workflow_per_frame_and_compares_the_attention_modes(host):
    from palsysim.bench.video import generation
    lines = []
    figures = generation(None, TINY_CHECKPOINT, TINY_CONTROLNET, frames=3, size=64, steps=1, repeats=1,
                         server=host.url, attend_to=list(MODES), log=lines.append)
    assert figures["s_per_frame"] > 0 and figures["frames"] == 3
    assert lines[0].startswith("shipped video workflow, 3 frames at 64x64, 1 step(s)")
    assert "s per generated frame" in lines[0]
    assert set(figures["attend_to"]) == set(MODES) and figures["source_flicker"] > 0 and figures["source_change"] > 0
    table = lines[1].splitlines()
    for mode, m in figures["attend_to"].items():
        assert m["s_per_frame"] > 0 and m["flicker"] >= 0 and m["change"] >= 0, (mode, m)
        (row,) = [line for line in table if line.split()[0] == mode]
        assert row.split()[1:3] == [f"{m['flicker']:.2f}", f"{m['change']:.2f}"] and f"{m['s_per_frame']:.3f}" in row
    with pytest.raises(InputError, match="unknown cross-frame attention sideways"):
        generation(None, TINY_CHECKPOINT, TINY_CONTROLNET, server=host.url, attend_to=["sideways"])
