"""Pseudo-palsy expression videos (issue 26), the core: a real face warped through rest -> grin -> rest with a
left-sided palsy (30 frames, the landmark warp's own landmarks as ground truth), its landmarks smoothed,
its PF and CODC conditions, the measures over time, and the video files written and read back."""
import os

import numpy as np
import pytest
from real_faces import photo_paths

from palsysim.base import video_files
from palsysim.base.errors import InputError
from palsysim.base.photos import read_image
from palsysim.base.video_files import check_video, frames_digest, read_video, write_video
from palsysim.condition.facecrop import face_crop, transform_points
from palsysim.condition.sequence import sequence_conditions, sequence_landmarks
from palsysim.face import regions as R
from palsysim.face.landmarks import face_landmarks
from palsysim.face.smoothing import jitter, one_euro
from palsysim.face.synth import synth_expression_video
from palsysim.measure.video import asymmetry_curves, dynamics, flicker

FPS = 30.0
MOVING = ("commissure_height", "commissure_excursion", "smile_angle")  # what a grin moves


@pytest.fixture(scope="module")
def grin():
    """(frames, ground-truth landmarks (30, 478, 2)) of Grace Hopper grinning with a left palsy."""
    photo = read_image(photo_paths()["grace_hopper"])
    seq = synth_expression_video(photo, face_landmarks(photo), "grin", frames=30, side="left", severity=0.6)
    return [f for f, _ in seq], np.stack([xy for _, xy in seq]).astype(np.float64)


@pytest.fixture(scope="module")
def detected(grin):
    return sequence_landmarks(grin[0], FPS)


@pytest.fixture(scope="module")
def donor():
    photo = read_image(photo_paths()["astronaut"])
    return photo, face_landmarks(photo).xy


def test_the_synthetic_video_goes_from_rest_to_the_grin_and_back(grin):
    frames, truth = grin
    curves = asymmetry_curves(truth)
    excursion = curves["commissure_excursion"]
    assert abs(excursion[0] - excursion[-1]) < 1e-3  # back at rest
    assert excursion[15] > excursion[0] + 0.05  # the healthy corner reaches further at the apex
    assert np.array_equal(frames[0], frames[0]) and not np.array_equal(frames[0], frames[15])


def test_smoothing_removes_jitter_without_lagging_the_motion(detected):
    raw, smooth = detected
    assert jitter(smooth) < 0.5 * jitter(raw), (jitter(smooth), jitter(raw))
    d = dynamics(smooth, raw)
    for m in MOVING:
        assert d[m]["lag"] == 0, (m, d[m])
        assert d[m]["r"] >= 0.9, (m, d[m])
    with pytest.raises(InputError, match="min_cutoff=nan"):
        one_euro(raw, FPS, min_cutoff=float("nan"))


def _organ_steps(organs, xys, donor_xy):
    """Per organ and frame step: (the largest move of its placed landmarks, read in the donor's face frame,
    the largest move of its landmarks in the patient's own face frame), both (T - 1,) in IPD units.

    Face frames (pupil axis, IPD units) because CODC anchors each organ on the donor's face: a head that
    turns or a pupil that shifts moves the patient's pixels, and the organ follows only what moved in the face.
    """
    out = {}
    step = lambda a: np.linalg.norm(np.diff(a, axis=0), axis=2).max(1)  # noqa: E731
    for name in ("right_eye", "left_eye", "nose", "mouth"):
        idx = list(R.ORGANS[name])
        placed = np.stack([_in_frame(transform_points(xy[idx], o[name].matrix), donor_xy) for o, xy in zip(organs, xys)])
        source = np.stack([_in_frame(xy[idx], xy) for xy in xys])
        out[name] = (step(placed), step(source))
    return out


def _in_frame(points, xy):
    """points (K, 2) pixels -> the face frame of landmarks xy (478, 2): origin mid-pupils, IPD units."""
    right, left = xy[R.PUPIL["right"]], xy[R.PUPIL["left"]]
    ipd = np.hypot(*(left - right))
    ex = (left - right) / ipd
    rel = points - (right + left) / 2
    return np.stack([rel @ ex, rel @ np.array([-ex[1], ex[0]])], axis=1) / ipd


@pytest.mark.parametrize("mode", ["codc", "pf"])
def test_sequence_conditions_move_only_as_the_face_moves(grin, detected, donor, mode):
    frames, _ = grin
    smooth = detected[1]
    conditions, organs = sequence_conditions(frames, smooth, mode, *donor)
    assert len(conditions) == 30 and all(c.shape == (512, 512) for c in conditions)
    # Frame 0 is the still-photo condition of the rest frame: the sequence adds nothing at rest.
    crop, m = face_crop(frames[0], smooth[0], 512)
    if mode == "pf":
        from palsysim.condition.edges import canny
        assert np.array_equal(conditions[0], canny(crop))
        return
    xys = np.stack([transform_points(xy, m) for xy in smooth])  # every frame in frame 0's crop
    donor_xy = transform_points(donor[1], face_crop(*donor, 512)[1])
    for name, (jump, moved) in _organ_steps(organs, xys, donor_xy).items():
        assert (jump <= moved + 1e-3).all(), (name, (jump - moved).max())
        assert moved.max() > 0.005  # the test sees motion: the grin moves every organ a little
    # The expression's dynamics survive: the condition's landmarks move as the source's.
    placed = np.stack([o.map_landmarks(xy) for o, xy in zip(organs, xys)])
    d = dynamics(placed, xys)
    for m_ in MOVING:
        assert d[m_]["r"] >= 0.95, (m_, d[m_])
        assert d[m_]["lag"] == 0


def test_flicker_is_low_for_a_smooth_video_and_high_for_noise(grin):
    frames = grin[0][:8]
    rng = np.random.default_rng(0)
    noisy = [np.clip(f.astype(np.int16) + rng.integers(-40, 41, f.shape), 0, 255).astype(np.uint8) for f in frames]
    assert flicker(frames) * 3 < flicker(noisy), (flicker(frames), flicker(noisy))


@pytest.mark.parametrize("ext", [".mp4", ".webm"])
def test_a_saved_video_decodes_to_its_frames_and_names_nobody(tmp_path, grin, ext):
    frames = [f[:301, :401] for f in grin[0][:12]]  # odd sides: padded to even for 4:2:0
    path = str(tmp_path / f"KOBAYASHI_1987{ext}")
    write_video(path, frames, 24.0)
    back, fps = read_video(path)
    assert len(back) == 12 and fps == pytest.approx(24.0)
    assert back[0].shape == (302, 402, 3)
    err = np.abs(back[5][:301, :401].astype(float) - frames[5]).mean()
    assert err < 6, err  # lossy, but the same picture
    data = open(path, "rb").read()
    assert b"KOBAYASHI" not in data and b"1987" not in data
    assert [f for f in os.listdir(tmp_path) if f.startswith(".")] == []  # no temporary file left


def test_a_folder_of_frames_is_read_in_natural_order(tmp_path, grin):
    from palsysim.base.photos import write_image
    for t in (0, 1, 2, 10):
        write_image(str(tmp_path / f"frame_{t}.png"), grin[0][t])
    frames, fps = read_video(str(tmp_path))
    assert [np.array_equal(a, grin[0][t]) for a, t in zip(frames, (0, 1, 2, 10))] == [True] * 4
    assert fps == 30.0


def test_bad_videos_get_a_message(tmp_path):
    empty = tmp_path / "cut.mp4"
    empty.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 50)
    with pytest.raises(InputError, match="not a readable video"):
        read_video(str(empty))
    with pytest.raises(InputError, match="holds no frames"):
        read_video(str(tmp_path.joinpath("none").mkdir() or tmp_path / "none"))
    with pytest.raises(InputError, match="fps=nan"):
        write_video(str(tmp_path / "x.mp4"), [np.zeros((64, 64, 3), np.uint8)], float("nan"))
    with pytest.raises(InputError, match=r"\.mp4 or \.webm"):
        write_video(str(tmp_path / "x.gif"), [np.zeros((64, 64, 3), np.uint8)], 30)


def test_a_video_is_checked_with_the_message_reading_it_gives(tmp_path, grin, monkeypatch):
    """check_video (every input checked before any work, keeping no frame) refuses what read_video refuses, alike."""
    good = write_video(str(tmp_path / "good.mp4"), grin[0][:6], 12.0)
    assert check_video(good) is None
    data = open(good, "rb").read()
    (tmp_path / "cut.mp4").write_bytes(data[:len(data) // 2])
    (tmp_path / "header.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 50)
    (tmp_path / "video.gif").write_bytes(data)
    bad = [str(tmp_path / n) for n in ("cut.mp4", "header.mp4", "video.gif", "missing.mp4")]
    monkeypatch.setattr(video_files, "MAX_FRAMES", 5)  # the good video is now one frame too long
    for path in bad + [good]:
        with pytest.raises(InputError) as read:
            read_video(path, max_frames=5)
        with pytest.raises(InputError) as checked:
            check_video(path)
        assert str(checked.value) == str(read.value), path


def test_the_frames_digest_is_the_one_earlier_runs_named_uploads_by():
    """The runner names a video's upload by frames_digest and a rerun's manifest compares the name: pinned, so
    that a change of format (which would redo every finished video job) fails here first."""
    frames = [np.full((4, 6, 3), k, np.uint8) for k in range(3)]
    assert frames_digest(frames, 12.0) == "9d5bdced6f4ba802bd8eb451c6946f0a8a8a5a6d65f05062aede8b853a75fba2"
    others = [frames_digest(frames, 24.0), frames_digest(frames[::-1], 12.0), frames_digest(frames[:2], 12.0),
              frames_digest([f.reshape(6, 4, 3) for f in frames], 12.0), frames_digest(frames)]
    assert len(set(others + [frames_digest(frames, 12.0)])) == 6  # rate, order, count and shape all count


def test_bench_video_prints_per_frame_figures():
    from palsysim.bench.video import video
    lines = []
    figures = video(frames=8, log=lines.append)
    assert all(figures[k] > 0 for k in ("landmarks_s_per_frame", "pf_s_per_frame", "codc_s_per_frame"))
    assert figures["jitter_smoothed"] < figures["jitter_raw"]
    assert lines[0].startswith("8 frames of a synthetic grin") and "ms" in lines[1]


def test_flow_guided_attention_gathers_each_frames_tokens_from_where_they_were_in_the_previous_frame():
    import cv2
    import torch

    from palsysim.condition.edges import canny
    from palsysim.controlnet.crossframe import attention_patch
    photo = cv2.resize(read_image(photo_paths()["grace_hopper"])[:512, :512], (256, 256), interpolation=cv2.INTER_AREA)
    # The face moves 4, then 8 px right and 4 down per frame (at 256 px): 1 and 2 tokens a frame on a 64-token map.
    frames = [cv2.warpAffine(photo, np.float32([[1, 0, dx], [0, 1, dy]]), (256, 256), borderMode=cv2.BORDER_REFLECT)
              for dx, dy in ((0, 0), (4, 0), (12, 4))]
    conditions = [canny(f) for f in frames]
    tokens = torch.tensor(np.stack([cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA) for f in frames]),
                          dtype=torch.float32).reshape(3, 64 * 64, 3)
    x = torch.cat([tokens, tokens + 1])  # positive and negative chunks
    extra = {"cond_or_uncond": [0, 1], "original_shape": [6, 4, 64, 64]}
    _, keys, values = attention_patch("flow_guided", conditions)(x, x, x, extra)
    assert torch.equal(keys, values) and torch.equal(keys[0], x[0]) and torch.equal(keys[3], x[3])
    inner = (slice(8, 56), slice(8, 56))  # away from the border, where the flow has nothing to follow

    def error(a, b):
        return (a.reshape(64, 64, 3) - b.reshape(64, 64, 3))[inner].abs().mean().item()
    for t in (1, 2):
        gathered, unmoved = error(keys[t], x[t]), error(x[t - 1], x[t])
        assert gathered < 0.1 * unmoved, (t, gathered, unmoved)
        assert torch.allclose(keys[3 + t], keys[t] + 1, atol=1e-4)  # the negative chunk follows the same flow
    with pytest.raises(InputError, match="flow of 3 conditions but the batch holds 2 frames"):
        attention_patch("flow_guided", conditions)(x[:4], x[:4], x[:4], extra)
    with pytest.raises(InputError, match="connect them"):
        attention_patch("flow_guided")
