"""Issue 28, speed: the exact faster annotator Canny, conditions made once per donor for a batch, the
preprocessing bench's batch figure, real-size random SD1.5 files, and scripts/gpu_bench.sh --tiny end to end."""
import json
import math
import os
import struct
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from machine_lock import machine_lock
from real_faces import photos as real_photos

from palsysim.bench import pipeline as bench
from palsysim.condition import codc, edges
from training import bench as training_bench
from training.host import use_comfyui
from training.sd15_files import MODEL_FILES, build_sd15

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Published layout of the real files: v1-5-pruned-emaonly-fp16.safetensors (UNet 859.52 M, CLIP-L text
# model 123.06 M, VAE 83.65 M parameters) and control_v11p_sd15_canny_fp16.safetensors (361.28 M).
PARAMETERS = {"model.diffusion_model.": 859_520_964, "cond_stage_model.": 123_060_480,
              "first_stage_model.": 83_653_863, "control_model.": 361_279_120}
SHAPES = {"model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
          "model.diffusion_model.input_blocks.1.1.proj_in.weight": (320, 320, 1, 1),
          "model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight": (1280, 768),
          "model.diffusion_model.out.2.weight": (4, 320, 3, 3),
          "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (49408, 768),
          "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.weight": (768, 3072),
          "first_stage_model.encoder.conv_in.weight": (128, 3, 3, 3),
          "first_stage_model.quant_conv.weight": (8, 8, 1, 1),
          "first_stage_model.decoder.conv_out.weight": (3, 128, 3, 3),
          "control_model.input_hint_block.0.weight": (16, 3, 3, 3),
          "control_model.input_hint_block.14.weight": (320, 256, 3, 3),
          "control_model.zero_convs.11.0.weight": (1280, 1280, 1, 1),
          "control_model.middle_block_out.0.weight": (1280, 1280, 1, 1)}


@pytest.fixture(scope="module")
def expression_photos():
    return bench.expression_photos(512)


def _organ_crops(expression_photos):
    """Patient organ boxes of the ten expression photos, each shrunk and grown as CODC scales organs."""
    out = []
    for image, xy in expression_photos[2].values():
        for x0, y0, x1, y1 in codc.organ_boxes(xy, image.shape[:2]).values():
            for scale, how in ((0.6, cv2.INTER_AREA), (1.7, cv2.INTER_LINEAR)):
                size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
                out.append(cv2.resize(image[y0:y1, x0:x1], size, interpolation=how))
    return out


def test_annotator_canny_gives_opencvs_own_bytes_on_photos_organs_and_odd_sizes(expression_photos):
    whole = list(real_photos().values()) + bench.sample_faces(512)
    tiny = [whole[0][:1, :1], whole[0][:1, :37], whole[0][:29, :1], whole[0][200:202, 200:203]]
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (int(rng.integers(3, 90)), int(rng.integers(3, 90)), 3), dtype=np.uint8)
             for _ in range(10)]
    images = whole + _organ_crops(expression_photos) + tiny + noise
    compared = 0
    for image in images:
        image = np.ascontiguousarray(image)
        for low, high in ((100.0, 200.0), (37.5, 75.0), (60.0, 60.0), (12.25, 190.0)):
            assert np.array_equal(edges.canny(image, low, high), cv2.Canny(image, low, high)), (image.shape, low, high)
            compared += 1
    assert compared >= 4 * 90


def test_a_batch_against_one_donor_gives_each_photos_own_condition_byte_for_byte(expression_photos):
    d_img, d_xy, photos = expression_photos
    rest_xy = photos["rest"][1]
    for contour in codc.CONTOURS:
        batch = codc.codc_conditions(list(photos.values()), d_img, d_xy, contour=contour, rest_xy=rest_xy)
        assert len(batch) == len(photos) == 10
        for (image, xy), (condition, organs) in zip(photos.values(), batch):
            one, one_organs = codc.codc_condition(image, xy, d_img, d_xy, contour=contour, rest_xy=rest_xy)
            assert np.array_equal(condition, one) and condition.any()
            assert organs.to_json() == one_organs.to_json()
    # a photo that cannot be used is refused with codc_condition's message, and nothing is returned
    image, xy = photos["grin"]
    with pytest.raises(edges.InputError, match="box of patient .* reaches outside"):
        codc.codc_conditions([photos["rest"], (image[:200, :200], xy)], d_img, d_xy)


def test_preprocess_bench_prints_one_condition_and_the_ten_photo_batch():
    lines = []
    res = bench.preprocess(repeats=2, size=256, log=lines.append)
    out = "\n".join(lines)
    assert "target <= 1.2x" in out and "10 Yanagihara photos against one donor" in out, out
    batch = res["batch"]
    # two repeats on a shared machine: the figures are timings, their sizes are BENCHMARKS.md's business
    assert batch["photos"] == 10 and batch["detect_ms"] > 0 and batch["codc_ms"] > 0, res
    assert batch["ms_per_condition"] == pytest.approx(batch["codc_ms"] / 10)
    assert batch["ratio"] == pytest.approx(batch["codc_ms"] / batch["detect_ms"])
    assert f"{batch['ratio']:.3f}x" in out


@pytest.fixture(scope="module")
def sd15_files(module_tmp):
    """The real-size random files as `python -m training.bench --write-models` writes them (2.1 + 0.7 GB, fp16)."""
    models = module_tmp("sd15_real_size")
    with machine_lock("real-size-sd15"):  # building them holds some 6 GB too
        subprocess.run([sys.executable, "-m", "training.bench", "--write-models", str(models)], cwd=ROOT, check=True,
                       timeout=1200)
    return str(models), {k: os.path.join(str(models), v) for k, v in MODEL_FILES.items()}


def _header(path):
    """{key: (dtype, shape)} from a .safetensors header, no weights read."""
    with open(path, "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    header.pop("__metadata__", None)
    return {k: (v["dtype"], tuple(v["shape"])) for k, v in header.items()}


def test_real_size_files_have_the_published_sd15_and_canny_controlnet_layout(sd15_files):
    _, paths = sd15_files
    checkpoint, control = _header(paths["checkpoint"]), _header(paths["controlnet"])
    keys = {**checkpoint, **control}
    assert {d for d, _ in keys.values()} == {"F16"}
    for prefix, count in PARAMETERS.items():
        assert sum(math.prod(s) for k, (_, s) in keys.items() if k.startswith(prefix)) == count, prefix
    assert all(k.startswith(tuple(PARAMETERS)) for k in keys)
    for key, shape in SHAPES.items():
        assert keys[key][1] == shape, key
    use_comfyui()
    import comfy.model_detection
    import comfy.supported_models
    meta = {k: torch.empty(s, dtype=torch.float16, device="meta") for k, (_, s) in checkpoint.items()}
    detected = comfy.model_detection.model_config_from_unet(meta, "model.diffusion_model.")
    assert type(detected) is comfy.supported_models.SD15
    assert os.path.getsize(paths["checkpoint"]) == pytest.approx(2.13e9, rel=0.01)  # the fp16 release's size
    assert os.path.getsize(paths["controlnet"]) == pytest.approx(7.23e8, rel=0.01)


def _available_gib():
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("MemAvailable")) / 2 ** 20


def test_real_size_files_generate_through_a_real_host_in_every_controlnet_mode(sd15_files):
    models_dir, paths = sd15_files
    lines = []
    with machine_lock("real-size-sd15"):
        if _available_gib() < 12:  # the host holds them in fp32 on a CPU: about 7 GiB
            pytest.skip(f"{_available_gib():.1f} GiB available; loading SD1.5 at real size needs about 12")
        res = bench.generate(models_dir, os.path.basename(paths["checkpoint"]), os.path.basename(paths["controlnet"]),
                             servers=(), jobs=1, size=64, steps=1, log=lines.append)
    assert set(res["modes"]) == set(bench.CONTROLNET_MODES), res
    assert all(s > 0 for s in res["modes"].values()), res
    assert any("window_only" in line for line in lines), lines


def test_gpu_bench_script_runs_end_to_end_with_tiny_models_on_the_cpu(tmp_path):
    out = tmp_path / "bench"
    env = dict(os.environ, OUT=str(out), PY=sys.executable)
    run = subprocess.run(["bash", "scripts/gpu_bench.sh", "--tiny"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=3600)  # minutes on a quiet CPU; far more on a shared one
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    table = run.stdout.split("| training step |")[-1]
    for step in ("models", "train_checkpointing", "train_no_checkpointing", "generate"):
        assert (out / f"{step}.status").read_text().strip() == "ok", step
    # every figure was found in the steps' outputs: no "-" left in the training and generation rows
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    figures = [row for row in rows if not row.startswith(("| device", "| setting", "| profile", "| bench", "| GPU busy",
                                                          "| kernels"))]
    assert len(figures) >= 12 and all(" - |" not in row for row in figures), table
    assert "ours vs diffusers speed" in table and "window_only" in table and "| flow_guided |" in table, table
    assert "top ops of ours" in table and "aten::" in table, table
    assert (out / "profile" / "ours" / "trace.json").stat().st_size > 0


def _step_ops(loss_fn, batch):
    """{aten op: calls} of one forward + backward."""
    from torch.profiler import profile
    with profile() as prof:
        loss_fn(batch).backward()
    return {e.key: e.count for e in prof.key_averages()}


def test_training_step_passes_the_residuals_as_control_merge_does_without_its_multiply_by_one():
    import training.objective as objective
    from training.objective import control_residuals, denoising_loss
    use_comfyui()
    cpu = torch.device("cpu")
    models = build_sd15(cpu, torch.float32, tiny=True)
    models.control_model.requires_grad_(True)
    batch = training_bench.make_batch(1, 64, torch.Generator().manual_seed(0), cpu, 500, 700)
    alpha_bar = training_bench.alpha_bars(models.patcher.model.model_sampling)
    residuals = models.control_model(x=batch["x0"], hint=batch["hint"], timesteps=batch["t"].float(),
                                     context=batch["context"])
    ours = control_residuals(residuals, torch.float32)
    theirs = models.controlnet.control_merge({k: [x.clone() for x in v] for k, v in residuals.items()}, None,
                                             output_dtype=torch.float32)
    assert ours.keys() == theirs.keys() and all(len(ours[k]) == len(theirs[k]) for k in ours)
    assert all(torch.equal(a, b) for k in ours for a, b in zip(ours[k], theirs[k]))
    n_residuals = sum(len(v) for v in residuals.values())

    def loss(b):
        return denoising_loss(models, b["x0"], b["hint"], b["context"], b["t"], b["noise"], alpha_bar, torch.float32)

    def with_control_merge(b):  # the step as it was: ComfyUI's control_merge
        saved = objective.control_residuals
        objective.control_residuals = lambda r, dtype: models.controlnet.control_merge(r, None, output_dtype=dtype)
        try:
            return loss(b)
        finally:
            objective.control_residuals = saved
    ops, merged = _step_ops(loss, batch), _step_ops(with_control_merge, batch)
    assert merged.get("aten::mul_", 0) - ops.get("aten::mul_", 0) == n_residuals == 13, (ops, merged)
