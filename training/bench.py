"""python -m training.bench: training-step speed at real SD1.5 size, with random weights (no downloads).

Builds the SD1.5 UNet and a matching ControlNet with ComfyUI's own classes (the configuration
ComfyUI's model detection reads out of v1-5-pruned-emaonly, checked against that detection), then
times the very training step `python -m training` runs: cached latents and text context, ControlNet
+ UNet forward, backward into the ControlNet, AdamW step. Prints samples/s, peak memory, the model
FLOPs per sample (counted with torch's FlopCounterMode, backward included, recomputation for
gradient checkpointing excluded) and the model FLOPs utilisation against the device's peak.

    python -m training.bench                                      # GPU: batch 4, 512x512, bf16
    python -m training.bench --resolution 128 --batch-size 1 --steps 2   # a CPU-sized run
"""
import argparse
import time

import torch

from .host import Models, use_comfyui
from .memory import (PRECISIONS, autocast_dtype, enable_gradient_checkpointing, frozen_dtype, make_optimizer,
                     peak_memory, pick_device)
from .modes import MODES, default_window, select_trainable
from .objective import alpha_bars, denoising_loss, sample_timesteps

# SD1.5's UNet as ComfyUI's model detection describes v1-5-pruned-emaonly (num_heads etc. come from
# supported_models.SD15's extra config).
SD15_UNET = dict(image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[2, 2, 2, 2],
                 channel_mult=[1, 2, 4, 4], transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0], transformer_depth_middle=1,
                 transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], context_dim=768,
                 use_spatial_transformer=True, use_linear_in_transformer=False, legacy=False, adm_in_channels=None,
                 use_checkpoint=False, use_temporal_resblock=False, use_temporal_attention=False)

# Dense peak TFLOP/s of known cards (bf16/fp16 tensor cores; fp32 without TF32) for MFU.
PEAK_TFLOPS = {"H100 SXM": {"bf16": 989, "fp32": 67}, "H100 NVL": {"bf16": 835, "fp32": 60},
               "H100 PCIe": {"bf16": 756, "fp32": 51}, "H100": {"bf16": 989, "fp32": 67},
               "H200": {"bf16": 989, "fp32": 67}, "A100": {"bf16": 312, "fp32": 19.5},
               "L40S": {"bf16": 362, "fp32": 91.6}, "RTX 4090": {"bf16": 165, "fp32": 82.6}}


def init_weights(module, seed=0):
    """torch's default initialisation for every layer (ComfyUI's layers skip it)."""
    torch.manual_seed(seed)
    for m in module.modules():
        for cls in type(m).__mro__:
            if cls.__module__.startswith("torch.nn") and "reset_parameters" in cls.__dict__:
                cls.reset_parameters(m)
                break
    return module


def build_sd15(device, dtype):
    """Models with a random-weight SD1.5 UNet (frozen, `dtype`) and ControlNet (float32), ComfyUI's classes."""
    import comfy.cldm.cldm
    import comfy.controlnet
    import comfy.model_detection
    import comfy.model_patcher
    import comfy.supported_models
    model_config = comfy.supported_models.SD15(dict(SD15_UNET))
    model_config.set_inference_dtype(torch.float32, None)
    base = model_config.get_model({}, device="cpu")
    init_weights(base.diffusion_model, 0)
    detected = comfy.model_detection.model_config_from_unet(base.diffusion_model.state_dict(), "")
    assert type(detected) is comfy.supported_models.SD15, f"not detected as SD1.5 but {type(detected).__name__}"
    control_config = {k: v for k, v in model_config.unet_config.items() if k not in ("out_channels", "transformer_depth_output")}
    control_model = init_weights(comfy.cldm.cldm.ControlNet(hint_channels=3, device="cpu", **control_config), 1)
    base.diffusion_model.to(device, dtype).requires_grad_(False)
    control_model.to(device)
    patcher = comfy.model_patcher.ModelPatcher(base, load_device=device, offload_device=torch.device("cpu"))
    return Models(patcher, None, None, comfy.controlnet.ControlNet(control_model, load_device=device))


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
    p.add_argument("--device")
    p.add_argument("--comfyui-dir")
    args = p.parse_args(argv)

    use_comfyui(args.comfyui_dir)
    device = pick_device(args.device)
    dtype = frozen_dtype(args.precision, device)
    torch.backends.cuda.matmul.allow_tf32 = True
    models = build_sd15(device, dtype)
    unet_dtype = dtype
    trainable = select_trainable(models.control_model, args.mode, 16, 0)
    optimizer = make_optimizer(args.optimizer, [q for _, q in trainable], 1e-5)
    alpha_bar = alpha_bars(models.patcher.model.model_sampling)
    t_lo, t_hi = default_window(args.mode)
    side = args.resolution // 8
    generator = torch.Generator().manual_seed(0)

    def step(batch):
        x0 = torch.randn(batch, 4, side, side, generator=generator).to(device)
        hint = (torch.rand(batch, 3, args.resolution, args.resolution, generator=generator) > 0.9).float().to(device)
        context = torch.randn(batch, 77, 768, generator=generator).to(device)
        t = sample_timesteps(batch, t_lo, t_hi, generator)
        loss = denoising_loss(models, x0, hint, context, t, torch.randn(x0.shape, generator=generator).to(device),
                              alpha_bar, unet_dtype, autocast_dtype(dtype))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    # Model FLOPs of one sample, counted before checkpointing adds its recomputation.
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter:
        step(1)
    flops_per_sample = counter.get_total_flops()
    if args.gradient_checkpointing:
        enable_gradient_checkpointing(models.control_model, models.unet)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    for _ in range(args.warmup):
        step(args.batch_size)
    sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step(args.batch_size)
    sync(device)
    seconds = time.perf_counter() - start
    samples_per_s = args.batch_size * args.steps / seconds
    peak, source = peak_tflops(device, dtype, lambda: matmul_tflops(device, dtype))
    achieved = samples_per_s * flops_per_sample / 1e12
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device            {name}")
    print(f"setting           mode {args.mode}, batch {args.batch_size}, {args.resolution}x{args.resolution} "
          f"(latent {side}x{side}), frozen {str(dtype).replace('torch.', '')}, ControlNet fp32 master weights"
          f"{' + autocast' if autocast_dtype(dtype) else ''}, gradient checkpointing "
          f"{'on' if args.gradient_checkpointing else 'off'}, optimizer {args.optimizer}")
    print(f"parameters        UNet {sum(q.numel() for q in models.unet.parameters()) / 1e6:.1f} M (frozen), "
          f"ControlNet {sum(q.numel() for q in models.control_model.parameters()) / 1e6:.1f} M, "
          f"trainable {sum(q.numel() for _, q in trainable) / 1e6:.1f} M")
    print(f"model FLOPs       {flops_per_sample / 1e12:.3f} TFLOP per sample (forward + backward, "
          f"{args.resolution}x{args.resolution})")
    print(f"speed             {samples_per_s:.3f} samples/s ({seconds / args.steps:.3f} s/step), last loss {loss.item():.4f}")
    print(f"peak memory       {peak_memory(device) / 2 ** 30:.2f} GiB "
          f"({'GPU allocated' if device.type == 'cuda' else 'process peak RSS'})")
    print(f"MFU               {100 * achieved / peak:.1f}% ({achieved:.3g} TFLOP/s of {peak:.3g} TFLOP/s, {source})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
