"""training.bench at tiny size on the CPU: our step and the diffusers peer both train, the profiler writes a trace.

Smoke tests only: speed is a benchmark's figure (BENCHMARKS.md), never asserted here.
"""
import json
import math
import re

import torch

from training import bench
from training import sd15_files
from training.host import use_comfyui
from training.modes import PAPER_WINDOW

ARGS = ["--tiny", "--resolution", "64", "--batch-size", "1", "--steps", "1", "--warmup", "0", "--device", "cpu"]


def backward_once(loss_fn, control_parameters):
    """(loss, every ControlNet parameter's gradient) of one backward at batch 1 of 64x64."""
    batch = bench.make_batch(1, 64, torch.Generator().manual_seed(0), torch.device("cpu"), *PAPER_WINDOW)
    loss = loss_fn(batch)
    loss.backward()
    return loss, [q.grad for q in control_parameters]


def test_both_steps_give_finite_losses_and_gradients_reaching_the_controlnet():
    use_comfyui()
    cpu = torch.device("cpu")
    models = sd15_files.build_sd15(cpu, torch.float32, tiny=True)
    alpha_bar = bench.alpha_bars(models.patcher.model.model_sampling)
    unet, controlnet = bench.build_diffusers_sd15(cpu, torch.float32, tiny=True)
    models.control_model.requires_grad_(True)
    for name, loss_fn, control in (("ours", bench.comfy_loss(models, alpha_bar, torch.float32), models.control_model),
                                   ("diffusers", bench.diffusers_loss(unet, controlnet, alpha_bar, torch.float32),
                                    controlnet)):
        loss, grads = backward_once(loss_fn, list(control.parameters()))
        assert math.isfinite(loss.item()) and loss.item() > 0, name
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name
        # the layers whose outputs feed the UNet (zero convolutions and middle output) all get a gradient
        outputs = [q.grad for n, q in control.named_parameters()
                   if n.split(".")[0] in ("zero_convs", "middle_block_out", "controlnet_down_blocks", "controlnet_mid_block")]
        assert len(outputs) >= 26 and all(g.abs().sum() > 0 for g in outputs), name
    assert not any(q.requires_grad for q in unet.parameters())
    assert all(q.grad is None for q in models.unet.parameters())


def test_peer_bench_prints_both_step_times_and_their_ratio(capsys):
    assert bench.main(ARGS + ["--peer", "diffusers", "--no-gradient-checkpointing"]) == 0
    out = capsys.readouterr().out
    ours = re.search(r"^speed .* \(([\d.]+) s/step\), last loss ([\w.]+)", out, re.M)
    peer = re.search(r"^peer speed .* \(([\d.]+) s/step\), last loss ([\w.]+)", out, re.M)
    assert ours and peer, out
    assert all(math.isfinite(float(m.group(2))) for m in (ours, peer)), out
    ratio = re.search(r"^ratio .*ours is ([\d.]+)x the diffusers speed", out, re.M)
    assert ratio and float(ratio.group(1)) > 0, out
    # the same model on both sides: the FLOP counts agree within a few percent
    flops = [float(x) for x in re.findall(r"([\d.]+) TFLOP per sample", out)]
    assert len(flops) == 2 and abs(flops[0] - flops[1]) <= 0.05 * flops[0], out


def test_profile_writes_a_trace_and_prints_busy_time_op_counts_and_top_ops(tmp_path, capsys):
    assert bench.main(ARGS + ["--profile", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    trace = json.loads((tmp_path / "ours" / "trace.json").read_text())
    names = {e.get("name", "") for e in trace["traceEvents"]}
    assert any(n.startswith("aten::convolution") for n in names)
    busy = re.search(r"CPU busy +([\d.]+) ms/step .*\((\d+)% of wall\), (\d+) ops/step", out)
    wall = re.search(r"profile ours +3 steps, wall ([\d.]+) ms/step", out)
    assert busy and wall, out
    assert 0 < float(busy.group(1)) <= float(wall.group(1)) and int(busy.group(3)) > 100, out
    assert "aten::" in out.split("profile ours")[1] and "Self CPU" in out, out  # the top-ops table
