"""The training recipe, top to bottom: dataset, models, cached encodings, the loop, the output file.

A run writing OUT.safetensors keeps its working files in OUT_training/ beside it: train.json (the
settings and a per-step log), loss.png and training_state.torch (what --resume continues from).
"""
import hashlib
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

import torch

from palsysim.base.workflows import PAPER_PROMPT
from palsysim.controlnet.schedule import check_window

from . import checkpointing as ckpt
from . import distributed
from .dataset import load_dataset
from .host import load_models, model_file, use_comfyui
from .latents import draw_latents, encode_posterior
from .memory import autocast_dtype, enable_gradient_checkpointing, frozen_dtype, make_optimizer, peak_memory
from .modes import default_window, select_trainable
from .objective import alpha_bars, denoising_loss, sample_timesteps
from .output import check_outputs, write_output
from .report import plot_loss, read_log, this_process, write_log

# LoRA's factors start at zero and need the larger rate LoRA practice uses: at 1e-5 the LoRA
# baseline moved about 10x less than full tuning (issue 11).
DEFAULT_LR = {"lora": 1e-4, "partial": 1e-5, "full": 1e-5, "freeze": 1e-5}
LOG_VERSION = 1
# The paper's Method 2 is the PF-trained net used with CODC conditions at inference, not this.
CODC_EXPERIMENTAL = ("--condition codc is experimental and not the paper's method: it pairs the donor's face "
                     "layout (condition) with the patient's own pixels (target), so condition and target are "
                     "misaligned. The paper's Method 2 trains on PF conditions (the default) and uses CODC "
                     "conditions at inference only")


class TrainingStopped(RuntimeError):
    """The run stopped before its last step (NaN loss, Ctrl-C); the message says what was kept."""

    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Config:
    checkpoint: str
    controlnet: str
    data: str
    out: str
    mode: str = "partial"
    t_min: int = None          # None: the mode's default window (modes.default_window)
    t_max: int = None
    epochs: int = 2
    steps: int = None          # overrides epochs
    batch_size: int = 4
    resolution: int = 512
    lr: float = None           # None: DEFAULT_LR of the mode (on --resume: the saved run's rate)
    warmup_steps: int = 0
    prompt: str = PAPER_PROMPT
    condition: str = "pf"
    donors: str = None
    precision: str = "auto"
    gradient_checkpointing: bool = True
    optimizer: str = "adamw"
    lora_rank: int = 16
    lora_format: str = "merged"  # lora mode: merged | lora | both (training/output.py)
    seed: int = 0
    checkpoint_every: int = 100
    resume: bool = False
    overwrite: bool = False    # replace an existing OUT (and OUT_lora) file
    device: str = None
    comfyui_dir: str = None
    progress: bool = True
    progress_line: int = 0  # the terminal line of its bar: 1 under a parent's bar (the experiment's)

    def window(self):
        lo, hi = default_window(self.mode)
        window = (lo if self.t_min is None else self.t_min, hi if self.t_max is None else self.t_max)
        check_window(*window, what="--t-min/--t-max")
        return window

    def default_lr(self):
        return DEFAULT_LR[self.mode]


# Settings a resumed run must share with the run it continues. Steps/epochs may grow, and --lr may
# change (the way on after a NaN stop); anything else would make the continuation a different run.
RESUME_KEYS = ("mode", "t_min", "t_max", "batch_size", "resolution", "warmup_steps", "prompt", "condition",
               "precision", "optimizer", "lora_rank", "seed", "gradient_checkpointing")


def run_dir(out):
    return os.path.splitext(os.path.abspath(out))[0] + "_training"


def draws(seed, step, batch_size, n_images, t_lo, t_hi):
    """(image indices, timesteps, noise generator) of one step, a function of (seed, step) alone.

    Images come from a stream of epoch-wise shuffles, so every batch is full even when the
    dataset is smaller than the batch; that is what makes --resume exact without replaying.
    """
    positions = range(step * batch_size, (step + 1) * batch_size)
    indices = torch.tensor([_epoch_order(seed, p // n_images, n_images)[p % n_images] for p in positions])
    generator = ckpt.step_generator(seed, "draws", step)
    return indices, sample_timesteps(batch_size, t_lo, t_hi, generator), generator


@lru_cache(maxsize=4)
def _epoch_order(seed, epoch, n):
    return torch.randperm(n, generator=ckpt.step_generator(seed, "order", epoch)).tolist()


def train(cfg, models=None):
    """Fine-tune the ControlNet as `cfg` says and write cfg.out; returns the train.json dict.

    models: already loaded host.Models (tests pass them to inspect them afterwards); else loaded here.
    """
    t_lo, t_hi = cfg.window()
    work = run_dir(cfg.out)
    state_path, log_path = os.path.join(work, ckpt.STATE_FILE), os.path.join(work, "train.json")
    check_outputs(cfg, work)  # nothing replaced, everything writable: before a photo is read or a model loads
    ranks, device = distributed.start(cfg.device, cfg.batch_size)  # one process, or a rank under torchrun
    try:
        return _train(cfg, models, ranks, device, t_lo, t_hi, work, state_path, log_path)
    finally:
        ranks.finish()


def _train(cfg, models, ranks, device, t_lo, t_hi, work, state_path, log_path):
    say = _say if ranks.main else lambda message: None  # N ranks, one voice
    if cfg.resume and not ckpt.exists(state_path):
        raise FileNotFoundError(f"--resume: no saved training state at {state_path}")
    if not cfg.resume and ckpt.exists(state_path):
        raise FileExistsError(f"{work} holds an earlier run's state: add --resume to continue it, "
                              f"or delete that folder to start over")

    # 1. Every photo: face found, cropped, condition made; all problems reported before any model loads.
    if cfg.condition == "codc":
        say(CODC_EXPERIMENTAL)
    data = load_dataset(cfg.data, cfg.resolution, cfg.condition, cfg.donors)
    for warning in data.warnings:
        say(warning)
    fingerprint = hashlib.sha256(data.images.tobytes() + data.conditions.tobytes()).hexdigest()

    # 2. A resumed run continues from the newest intact state (a damaged file falls back to the
    #    previous one; resuming is exact, so that only costs the steps since), on the same data and models.
    state = None
    if cfg.resume:
        if ranks.main:
            ckpt.remove_stale_temps(work)  # from saves killed half-way
        ranks.barrier()
        state, used, skipped = ckpt.load_latest(state_path)  # every rank: the optimizer state is not broadcast
        if skipped:
            say(f"{'; '.join(skipped)}; resuming from {os.path.basename(used)} (step {state['step']})")
    saved_files = (state or {}).get("base_files") or {}
    base_files = {"checkpoint": model_file(cfg.checkpoint, "checkpoint", "checkpoints", saved_files.get("checkpoint")),
                  "controlnet": model_file(cfg.controlnet, "ControlNet", "controlnet", saved_files.get("controlnet"))}
    if state:
        check_same_models(state.get("base_files"), base_files, work, say)
    total = cfg.steps or math.ceil(cfg.epochs * len(data) / cfg.batch_size)
    if state and state["step"] > total:
        asked = f"--steps {cfg.steps}" if cfg.steps else f"--epochs {cfg.epochs} ({total} steps)"
        raise ValueError(f"--resume {asked}: the saved run has already done {state['step']} steps; give --steps "
                         f"above {state['step']} to train further")
    lr = cfg.lr if cfg.lr is not None else state["settings"]["lr"] if state else cfg.default_lr()

    # 3. ComfyUI's own model code, frozen parts in the chosen precision.
    use_comfyui(cfg.comfyui_dir)
    dtype = frozen_dtype(cfg.precision, device)
    models = models or load_models(cfg.checkpoint, cfg.controlnet, frozen_dtype=dtype)

    # 4. Posterior moments and text context once: the prompt is fixed and photos are not augmented.
    mean, std, latents_note, hints, context = encode_once(models, data, cfg.prompt, device)
    unet_dtype = models.patcher.model.manual_cast_dtype or models.patcher.model.get_dtype()
    alpha_bar = alpha_bars(models.patcher.model.model_sampling)
    models.unet.to(device)
    models.control_model.to(device)

    # 5. What trains, and how.
    trainable = select_trainable(models.control_model, cfg.mode, cfg.lora_rank, cfg.seed)
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(models.control_model, models.unet)
    # DDP under torchrun averages the gradients; built once the trainable set is final (it hooks those)
    control = ranks.wrap(models.control_model, device)
    optimizer = make_optimizer(cfg.optimizer, [p for _, p in trainable], lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    settings = {k: getattr(cfg, k) for k in RESUME_KEYS}
    settings.update(t_min=t_lo, t_max=t_hi, lr=lr)
    log = {"version": LOG_VERSION, "status": "running", "settings": {
               **settings, "lr_source": "--lr" if cfg.lr is not None else "saved run" if state else f"{cfg.mode} default",
               "epochs": cfg.epochs, "steps": total, "checkpoint_every": cfg.checkpoint_every,
               "base_model": os.path.basename(cfg.checkpoint), "base_controlnet": os.path.basename(cfg.controlnet),
               "window_percent": [1 - t_hi / 999, 1 - t_lo / 999], "device": str(device), "processes": ranks.world,
               "frozen_dtype": str(dtype),
               "latents": latents_note},
           "dataset": {"photos": len(data), "patients": data.patients, "expressions": data.expressions},
           "trainable_parameters": sum(p.numel() for _, p in trainable), "process": this_process(),
           "history": [], "steps": []}
    if cfg.condition == "codc":
        log["settings"]["condition_note"] = CODC_EXPERIMENTAL

    step = 0
    if state:
        changed = [k for k in RESUME_KEYS if state["settings"].get(k) != settings[k]]
        if changed or state["fingerprint"] != fingerprint:
            what = ", ".join(changed) or "the dataset"
            raise ValueError(f"--resume: {what} differ(s) from the saved run in {work}; use the same settings and data")
        restore_trainable(models.control_model, trainable, state["trainable"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        if state["settings"]["lr"] != lr:
            schedule.base_lrs = [lr] * len(optimizer.param_groups)
            for group, factor in zip(optimizer.param_groups, schedule.lr_lambdas):
                group["lr"] = lr * factor(schedule.last_epoch)
        scaler.load_state_dict(state["scaler"])
        ckpt.set_rng_state(state["rng"])
        step, log["steps"] = state["step"], state["log"]
        log["history"] = earlier_runs(log_path)
    saved_step = step if state else None

    def save(status):
        nonlocal saved_step
        saved_step = step
        if not ranks.main:
            return
        trained = {n: p.detach().cpu().clone() for n, p in trainable}
        ckpt.save_state(state_path, {
            "step": step, "settings": settings, "fingerprint": fingerprint, "base_files": base_files, "trainable": trained,
            "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(), "scaler": scaler.state_dict(),
            "rng": ckpt.rng_state(), "log": log["steps"]})
        write_report(status)

    def write_report(status):
        if not ranks.main:
            return
        log["status"] = status
        log["peak_memory_bytes"] = peak_memory(device)
        write_log(log_path, log)
        if log["steps"]:
            plot_loss(os.path.join(work, "loss.png"), [s["loss"] for s in log["steps"]],
                      f"{cfg.mode} t={t_lo}..{t_hi}, batch {cfg.batch_size}, lr {lr:g}")

    # 6. The loop. Ctrl-C only raises a flag: the step in flight completes, then the state is saved.
    #    A second Ctrl-C quits at once.
    stop = {"asked": False}

    def on_ctrl_c(*_):
        if stop["asked"]:
            raise KeyboardInterrupt
        stop["asked"] = True
    in_main_thread = threading.current_thread() is threading.main_thread()  # only it may take signals
    previous_handler = signal.signal(signal.SIGINT, on_ctrl_c) if in_main_thread else None
    write_report("running")  # from here a kill leaves a log that read_log can tell apart from a live run
    bar = progress_bar(cfg.progress and ranks.main, total, step, cfg.progress_line)
    try:
        while step < total:
            started = time.perf_counter()
            indices, t, generator = draws(cfg.seed, step, cfg.batch_size, len(data), t_lo, t_hi)
            x0 = models.patcher.model.process_latent_in(
                draw_latents(mean[indices], None if std is None else std[indices],
                             ckpt.step_generator(cfg.seed, "posterior", step)))
            noise = torch.randn(x0.shape, generator=generator).to(device)
            mine = ranks.share(len(indices))  # the whole batch is drawn on every rank, each trains on its slice
            loss = denoising_loss(models, x0[mine], hints[indices[mine]], context.expand(len(indices[mine]), -1, -1),
                                  t[mine], noise[mine], alpha_bar, unet_dtype, autocast_dtype(dtype), control=control)
            loss_value = ranks.mean(loss)  # the global batch's loss, the same on every rank
            if not math.isfinite(loss_value):
                kept = "no state had been saved yet" if saved_step is None else \
                    f"the last good state (step {saved_step}) is kept in {work}"
                write_report(f"stopped: loss {loss_value} at step {step + 1}")
                raise TrainingStopped(f"the loss became {loss_value} at step {step + 1}; training stopped and "
                                      f"{kept}. Resume with a lower --lr (or --precision fp32).", exit_code=1)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            schedule.step()
            step += 1
            rate = len(indices) / (time.perf_counter() - started)
            log["steps"].append({"step": step, "loss": loss_value, "lr": schedule.get_last_lr()[0],
                                 "samples_per_s": round(rate, 3), "timesteps": t.tolist()})
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.4f}", samples_s=f"{rate:.2f}")
            if ranks.any(stop["asked"]):  # Ctrl-C reaches the ranks at different steps: they stop at one
                save("interrupted")
                raise TrainingStopped(f"interrupted at step {step} of {total}; the state is saved in {work}: "
                                      f"run the same command with --resume to continue", exit_code=130)
            if step % cfg.checkpoint_every == 0 and step < total:
                save("running")
    except torch.distributed.DistError as e:  # under torchrun: another rank died (killed, out of memory)
        kept = "no state had been saved yet" if saved_step is None else f"the last good state (step {saved_step}) is kept"
        write_report(f"stopped: another process of the run ended at step {step + 1}")
        raise TrainingStopped(f"another process of this torchrun run ended at step {step + 1} "
                              f"({e.__class__.__name__}); {kept} in {work}: run the same torchrun command with "
                              f"--resume to continue", exit_code=1) from None
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous_handler)
        if bar:
            bar.close()

    # 7. The trained ControlNet, an ordinary ComfyUI ControlNet file that knows its window.
    if ranks.main:
        write_output(cfg, models.control_model, t_lo, t_hi, step)  # merged, LoRA or both (training/output.py)
    save("finished")
    ranks.barrier()  # every rank returns once the files are written
    return log


def encode_once(models, data, prompt, device):
    """(posterior mean [N,4,h,w], std like it or None, what the latents are, hints [N,3,H,W] 0..1,
    text context [1,77,768]) on device; mean and std before the UNet's latent scaling."""
    import comfy.model_management
    with torch.no_grad():  # not inference_mode: these tensors enter a graph that is differentiated
        pixels = torch.from_numpy(data.images).float() / 255.0
        mean, std, note = encode_posterior(models.vae, pixels)
        context = models.clip.encode_from_tokens(models.clip.tokenize(prompt)).float().cpu()
    # ComfyUI moved the VAE and CLIP to the GPU to encode; hand that memory back for training
    comfy.model_management.unload_all_models()
    hints = torch.from_numpy(data.conditions).permute(0, 3, 1, 2).float() / 255.0
    return mean.to(device), None if std is None else std.to(device), note, hints.to(device), context.to(device)


def _say(message):
    print(f"training: {message}", file=sys.stderr, flush=True)


def check_same_models(saved, given, work, say=_say):
    """Refuse to continue a run on other model files than the ones it was trained from, naming both."""
    if saved is None or "sha256" not in saved["controlnet"]:
        say(f"the state in {work} predates whole-file model digests; it cannot be checked that --checkpoint and "
            "--controlnet are the files it was trained from")
        return
    for kind in ("checkpoint", "controlnet"):
        if saved[kind]["sha256"] != given[kind]["sha256"]:
            raise ValueError(f"--resume: --{kind} {given[kind]['name']} is not the {kind} this run was trained from "
                             f"({saved[kind]['name']}, a different file); resume with the {kind} {saved[kind]['name']}, "
                             f"or train anew into another --out")


def earlier_runs(log_path):
    """The history of the run a --resume continues: each earlier process's last status and step."""
    try:
        previous = read_log(log_path)
    except (OSError, ValueError):
        return []
    steps = previous.get("steps") or []
    return previous.get("history", []) + [{"status": previous.get("status"), "step": steps[-1]["step"] if steps else 0}]


def restore_trainable(control_model, trainable, saved):
    names = {n for n, _ in trainable}
    if set(saved) != names:
        raise ValueError("--resume: the saved state does not hold this mode's trainable weights")
    with torch.no_grad():
        for n, p in trainable:
            p.copy_(saved[n].to(p.device, p.dtype))


def progress_bar(enabled, total, done, line=0):
    """The step bar; on a line under a parent's bar it is cleared when done, leaving the parent's alone."""
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=done, unit="step", dynamic_ncols=True, position=line, leave=not line)
