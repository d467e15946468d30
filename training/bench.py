"""python -m training.bench: training-step speed at real SD1.5 size, with random weights (no downloads).

Builds the SD1.5 UNet and a matching ControlNet with ComfyUI's own classes (the configuration
ComfyUI's model detection reads out of v1-5-pruned-emaonly, checked against that detection), then
times the very training step `python -m training` runs: cached latents and text context, ControlNet
+ UNet forward, backward into the ControlNet, AdamW step. Prints samples/s, peak memory, the model
FLOPs per sample (counted with torch's FlopCounterMode, backward included, recomputation for
gradient checkpointing excluded) and the model FLOPs utilisation against the device's peak.

    python -m training.bench                                      # GPU: batch 4, 512x512, bf16
    python -m training.bench --resolution 128 --batch-size 1 --steps 2   # a CPU-sized run
    python -m training.bench --peer diffusers     # also the same step with diffusers' models; the ratio
    python -m training.bench --profile DIR        # torch.profiler trace of the timed steps + a summary
    python -m training.bench --tiny --resolution 64   # narrow models of the same layout (CPU, tests)
    python -m training.bench --write-models DIR   # real-size random SD1.5 + Canny ControlNet files, fp16
"""
import argparse
import os
import time

import torch

from .host import use_comfyui
from .memory import (PRECISIONS, autocast_dtype, enable_gradient_checkpointing, frozen_dtype, make_optimizer,
                     peak_memory, pick_device)
from .modes import MODES, default_window, select_trainable
from .objective import alpha_bars, denoising_loss, noisy_latents, sample_timesteps
from .sd15_files import TINY_CHANNELS, build_sd15, write_sd15_files

# The same UNet in diffusers' terms (runwayml/stable-diffusion-v1-5 unet/config.json; its
# attention_head_dim is really the number of heads, 8, as SD15's num_heads).
SD15_DIFFUSERS = dict(sample_size=64, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280),
                      layers_per_block=2, cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
                      down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                      up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
PEERS = ("diffusers",)

# Dense peak TFLOP/s of known cards (bf16/fp16 tensor cores; fp32 without TF32) for MFU.
PEAK_TFLOPS = {"H100 SXM": {"bf16": 989, "fp32": 67}, "H100 NVL": {"bf16": 835, "fp32": 60},
               "H100 PCIe": {"bf16": 756, "fp32": 51}, "H100": {"bf16": 989, "fp32": 67},
               "H200": {"bf16": 989, "fp32": 67}, "A100": {"bf16": 312, "fp32": 19.5},
               "L40S": {"bf16": 362, "fp32": 91.6}, "RTX 4090": {"bf16": 165, "fp32": 82.6}}


def build_diffusers_sd15(device, dtype, tiny=False):
    """(UNet2DConditionModel frozen in `dtype`, ControlNetModel float32): diffusers' SD1.5 pair, random weights."""
    from diffusers import ControlNetModel, UNet2DConditionModel
    config = dict(SD15_DIFFUSERS)
    if tiny:
        config["block_out_channels"] = tuple(c * TINY_CHANNELS // 320 for c in config["block_out_channels"])
    torch.manual_seed(2)
    unet = UNet2DConditionModel(**config)
    controlnet = ControlNetModel.from_unet(unet, conditioning_channels=3)  # copies the encoder, as training does
    return unet.to(device, dtype).requires_grad_(False), controlnet.to(device).requires_grad_(True)


def make_batch(batch, resolution, generator, device, t_lo, t_hi):
    """One cached-latents batch: x0 [B,4,h,w], hint [B,3,H,W] in {0,1}, context [B,77,768], t [B], noise."""
    side = resolution // 8
    x0 = torch.randn(batch, 4, side, side, generator=generator).to(device)
    hint = (torch.rand(batch, 3, resolution, resolution, generator=generator) > 0.9).float().to(device)
    context = torch.randn(batch, 77, 768, generator=generator).to(device)
    t = sample_timesteps(batch, t_lo, t_hi, generator)
    return dict(x0=x0, hint=hint, context=context, t=t, noise=torch.randn(x0.shape, generator=generator).to(device))


def comfy_loss(models, alpha_bar, dtype):
    """batch -> loss: the step `python -m training` runs (training.objective.denoising_loss)."""
    def loss(b):
        return denoising_loss(models, b["x0"], b["hint"], b["context"], b["t"], b["noise"], alpha_bar, dtype,
                              autocast_dtype(dtype))
    return loss


def diffusers_loss(unet, controlnet, alpha_bar, dtype):
    """batch -> loss: the same step as diffusers' examples/controlnet/train_controlnet.py writes it."""
    def loss(b):
        x_t = noisy_latents(b["x0"], b["noise"], alpha_bar[b["t"]].to(b["x0"].device))
        t = b["t"].to(x_t.device)
        with torch.autocast(x_t.device.type, dtype=autocast_dtype(dtype) or torch.float32,
                            enabled=autocast_dtype(dtype) is not None):
            down, mid = controlnet(x_t, t, encoder_hidden_states=b["context"], controlnet_cond=b["hint"],
                                   return_dict=False)
        eps = unet(x_t.to(dtype), t, encoder_hidden_states=b["context"].to(dtype),
                   down_block_additional_residuals=[r.to(dtype) for r in down],
                   mid_block_additional_residual=mid.to(dtype), return_dict=False)[0]
        return torch.nn.functional.mse_loss(eps.float(), b["noise"])
    return loss


def train_step(loss_fn, optimizer, batch):
    loss = loss_fn(batch)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def time_steps(loss_fn, optimizer, args, device, t_window):
    """(seconds per step, last loss) over args.steps after args.warmup; every peer gets the same batches."""
    generator = torch.Generator().manual_seed(0)
    batch = lambda: make_batch(args.batch_size, args.resolution, generator, device, *t_window)
    for _ in range(args.warmup):
        train_step(loss_fn, optimizer, batch())
    sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = train_step(loss_fn, optimizer, batch())
    sync(device)
    return (time.perf_counter() - start) / args.steps, loss


def count_flops(loss_fn, optimizer, args, device, t_window):
    """Model FLOPs of one sample's step, forward + backward (counted before checkpointing adds recomputation)."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    batch = make_batch(1, args.resolution, torch.Generator().manual_seed(1), device, *t_window)
    with counter:
        train_step(loss_fn, optimizer, batch)
    return counter.get_total_flops()


def merged_length(intervals):
    """Total length covered by (start, end) intervals, overlaps counted once."""
    total, end = 0.0, float("-inf")
    for s, e in sorted(intervals):
        if e > end:
            total += e - max(s, end)
            end = e
    return total


def profile_steps(loss_fn, optimizer, args, device, t_window, out_dir, steps=3):
    """Profile `steps` training steps (after one warm-up) with torch.profiler; returns the summary dict.

    Writes out_dir/trace.json (chrome://tracing or ui.perfetto.dev). busy = time covered by at least one
    GPU kernel (GPU) or one top-level aten op (CPU, the host's side), against the wall time of the steps.
    """
    from torch.profiler import ProfilerActivity, profile
    from torch.autograd import DeviceType
    generator = torch.Generator().manual_seed(3)
    batch = lambda: make_batch(args.batch_size, args.resolution, generator, device, *t_window)
    train_step(loss_fn, optimizer, batch())
    sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            train_step(loss_fn, optimizer, batch())
        sync(device)
        wall = time.perf_counter() - start
    os.makedirs(out_dir, exist_ok=True)
    trace = os.path.join(out_dir, "trace.json")
    prof.export_chrome_trace(trace)
    events = prof.events()
    kernels = [e for e in events if e.device_type == DeviceType.CUDA]
    ops = [e for e in events if e.device_type == DeviceType.CPU and e.name.startswith("aten::")
           and not (e.cpu_parent and e.cpu_parent.name.startswith("aten::"))]
    syncs = [e for e in events if e.device_type == DeviceType.CPU
             and any(s in e.name for s in ("Synchronize", "cudaMemcpy", "aten::item", "aten::_local_scalar_dense"))]
    interval = lambda e: (e.time_range.start, e.time_range.end)
    sort_by = "self_cuda_time_total" if kernels else "self_cpu_time_total"
    return dict(trace=trace, steps=steps, wall_s=wall, shares=op_shares(prof.key_averages(), bool(kernels)),
                gpu_busy_s=merged_length(map(interval, kernels)) / 1e6 if kernels else None,
                cpu_busy_s=merged_length(map(interval, ops)) / 1e6,
                kernels=len(kernels), top_level_ops=len(ops), host_syncs=len(syncs),
                table=prof.key_averages().table(sort_by=sort_by, row_limit=12))


# What the profile's time goes to, by aten op name (self time, so a composite op is not counted twice).
OP_KINDS = (("matmul, conv, attention", ("mm", "conv", "attention", "linear")),
            ("optimizer", ("_foreach", "_fused_adam")),
            ("casts and copies", ("copy_", "_to_copy", "clone", "contiguous", "cat", "stack")),
            ("norms", ("norm",)),
            ("elementwise", ("mul", "add", "sub", "div", "silu", "gelu", "sigmoid", "neg", "pow", "sqrt", "fill_",
                             "zero_", "where", "mse", "lerp")))


def op_shares(averages, on_device):
    """{kind: share of self time} of a profile's key_averages() over OP_KINDS (the first kind that matches), plus
    "other": device time of the aten ops when kernels ran (kernel rows would count it twice), else CPU time of
    every row (the autograd engine's own rows included)."""
    attr = "self_cpu_time_total"
    if on_device:
        attr = "self_device_time_total" if hasattr(averages[0], "self_device_time_total") else "self_cuda_time_total"
    times = {kind: 0.0 for kind, _ in OP_KINDS} | {"other": 0.0}
    for e in averages:
        aten = e.key.startswith("aten::")
        if on_device and not aten:
            continue
        kind = next((k for k, words in OP_KINDS if aten and any(w in e.key[6:] for w in words)), "other")
        times[kind] += getattr(e, attr)
    total = sum(times.values()) or 1.0
    return {k: t / total for k, t in times.items()}


def print_profile(label, p):
    per = lambda s: f"{1000 * s / p['steps']:.1f} ms/step"
    print(f"profile {label:9} {p['steps']} steps, wall {per(p['wall_s'])}; trace {p['trace']}")
    if p["gpu_busy_s"] is not None:
        print(f"  GPU busy        {per(p['gpu_busy_s'])} ({100 * p['gpu_busy_s'] / p['wall_s']:.0f}% of wall), "
              f"{p['kernels'] // p['steps']} kernels/step")
    print(f"  CPU busy        {per(p['cpu_busy_s'])} in top-level aten ops ({100 * p['cpu_busy_s'] / p['wall_s']:.0f}% "
          f"of wall), {p['top_level_ops'] // p['steps']} ops/step, {p['host_syncs'] // p['steps']} host syncs/step")
    print("  self time       " + ", ".join(f"{kind} {100 * share:.0f}%" for kind, share in p["shares"].items()))
    print(p["table"])


def peak_tflops(device, dtype, measured_fallback):
    """(peak TFLOP/s, where it came from): the card's datasheet figure, else a measured big matmul."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for card, peaks in PEAK_TFLOPS.items():
            if card in name:
                return peaks["fp32" if dtype == torch.float32 else "bf16"], f"{card} datasheet, dense"
    return measured_fallback(), "measured matmul peak on this device"


def matmul_tflops(device, dtype, n=2048, repeats=5):
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e12


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m training.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--resolution", type=int, default=512, help="image size; latents are 1/8 of it")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--steps", type=int, default=10, help="timed steps (after --warmup)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--mode", choices=MODES, default="partial")
    p.add_argument("--precision", choices=PRECISIONS, default="auto")
    p.add_argument("--optimizer", default="adamw", choices=("adamw", "adamw8bit"))
    p.add_argument("--no-gradient-checkpointing", dest="gradient_checkpointing", action="store_false")
    p.add_argument("--peer", choices=PEERS, help="also time the same step built with this library's models")
    p.add_argument("--profile", metavar="DIR", help="profile 3 steps of each model set; traces under DIR")
    p.add_argument("--tiny", action="store_true", help=f"models {TINY_CHANNELS} channels wide instead of 320 (CPU)")
    p.add_argument("--device")
    p.add_argument("--comfyui-dir")
    p.add_argument("--write-models", metavar="DIR", help="only write a real-size random SD1.5 checkpoint and Canny "
                   "ControlNet (fp16) under DIR/checkpoints and DIR/controlnet (training/sd15_files.py), then exit")
    args = p.parse_args(argv)
    if args.write_models:
        use_comfyui(args.comfyui_dir)
        for path in write_sd15_files(args.write_models).values():
            print(path)
        return 0
    if args.peer and args.mode not in ("partial", "full"):
        p.error(f"--peer trains the whole ControlNet: use --mode partial or full, not {args.mode}")

    use_comfyui(args.comfyui_dir)
    device = pick_device(args.device)
    dtype = frozen_dtype(args.precision, device)
    torch.backends.cuda.matmul.allow_tf32 = True
    t_window = default_window(args.mode)
    models = build_sd15(device, dtype, args.tiny)
    trainable = select_trainable(models.control_model, args.mode, 16, 0)
    optimizer = make_optimizer(args.optimizer, [q for _, q in trainable], 1e-5)
    alpha_bar = alpha_bars(models.patcher.model.model_sampling)
    loss_fn = comfy_loss(models, alpha_bar, dtype)
    flops_per_sample = count_flops(loss_fn, optimizer, args, device, t_window)
    if args.gradient_checkpointing:
        enable_gradient_checkpointing(models.control_model, models.unet)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds, loss = time_steps(loss_fn, optimizer, args, device, t_window)
    memory = peak_memory(device)
    profiles = {"ours": profile_steps(loss_fn, optimizer, args, device, t_window, os.path.join(args.profile, "ours"))
                } if args.profile else {}
    samples_per_s = args.batch_size / seconds
    peak, source = peak_tflops(device, dtype, lambda: matmul_tflops(device, dtype))
    achieved = samples_per_s * flops_per_sample / 1e12
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device            {name}")
    print(f"setting           mode {args.mode}, batch {args.batch_size}, {args.resolution}x{args.resolution} "
          f"(latent {args.resolution // 8}x{args.resolution // 8}){', tiny models' if args.tiny else ''}, "
          f"frozen {str(dtype).replace('torch.', '')}, ControlNet fp32 master weights"
          f"{' + autocast' if autocast_dtype(dtype) else ''}, gradient checkpointing "
          f"{'on' if args.gradient_checkpointing else 'off'}, optimizer {args.optimizer}")
    print(f"parameters        UNet {sum(q.numel() for q in models.unet.parameters()) / 1e6:.1f} M (frozen), "
          f"ControlNet {sum(q.numel() for q in models.control_model.parameters()) / 1e6:.1f} M, "
          f"trainable {sum(q.numel() for _, q in trainable) / 1e6:.1f} M")
    print(f"model FLOPs       {flops_per_sample / 1e12:.3f} TFLOP per sample (forward + backward, "
          f"{args.resolution}x{args.resolution})")
    print(f"speed             {samples_per_s:.3f} samples/s ({seconds:.3f} s/step), last loss {loss.item():.4f}")
    print(f"peak memory       {memory / 2 ** 30:.2f} GiB "
          f"({'GPU allocated' if device.type == 'cuda' else 'process peak RSS'})")
    print(f"MFU               {100 * achieved / peak:.1f}% ({achieved:.3g} TFLOP/s of {peak:.3g} TFLOP/s, {source})")

    if args.peer:
        del models, optimizer, loss_fn, trainable
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        unet, controlnet = build_diffusers_sd15(device, dtype, args.tiny)
        peer_optimizer = make_optimizer(args.optimizer, list(controlnet.parameters()), 1e-5)
        peer_loss = diffusers_loss(unet, controlnet, alpha_bar, dtype)
        peer_flops = count_flops(peer_loss, peer_optimizer, args, device, t_window)
        if args.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
            controlnet.enable_gradient_checkpointing()
        peer_seconds, peer_last = time_steps(peer_loss, peer_optimizer, args, device, t_window)
        peer_memory = peak_memory(device)
        if args.profile:
            profiles["diffusers"] = profile_steps(peer_loss, peer_optimizer, args, device, t_window,
                                                  os.path.join(args.profile, "diffusers"))
        import diffusers
        print(f"peer              diffusers {diffusers.__version__}: UNet2DConditionModel "
              f"{sum(q.numel() for q in unet.parameters()) / 1e6:.1f} M + ControlNetModel "
              f"{sum(q.numel() for q in controlnet.parameters()) / 1e6:.1f} M, model FLOPs "
              f"{peer_flops / 1e12:.3f} TFLOP per sample")
        print(f"peer speed        {args.batch_size / peer_seconds:.3f} samples/s ({peer_seconds:.3f} s/step), "
              f"last loss {peer_last.item():.4f}, peak memory {peer_memory / 2 ** 30:.2f} GiB"
              f"{' (process peak RSS: includes ours)' if device.type != 'cuda' else ''}")
        print(f"ratio             ours {seconds:.3f} s/step, diffusers {peer_seconds:.3f} s/step: "
              f"ours is {peer_seconds / seconds:.2f}x the diffusers speed")
    for label, summary in profiles.items():
        print_profile(label, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
