"""python -m training: fine-tune an SD1.5 ControlNet on a patient dataset (see training/recipe.py).

Several GPUs: torchrun --standalone --nproc-per-node N -m training ... (training/distributed.py).
"""
import argparse
import importlib.util
import os
import sys

from palsysim.base.errors import InputError
from palsysim.base.extras import require_extras
from palsysim.face.landmarks import mute_native_logs

from .host import HostError
from .memory import OPTIMIZERS, PRECISIONS
from .modes import MODES
from .output import LORA_FORMATS, lora_path
from .recipe import PAPER_PROMPT, Config, TrainingStopped, train


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m training",
        description="Fine-tune a Canny ControlNet for SD1.5 on DIR/<patient>/<expression>/*.png|jpg, by default "
                    "only on diffusion timesteps 500..700 (partial fine-tuning). Writes OUT.safetensors and, in "
                    "OUT_training/, train.json, loss.png and the state --resume continues from. The paper's "
                    "Method 2 is the net trained here with PF conditions (the default) and used with CODC "
                    "conditions at inference.")
    p.add_argument("--checkpoint", required=True, help="SD1.5 checkpoint (.safetensors/.ckpt), e.g. v1-5-pruned-emaonly")
    p.add_argument("--controlnet", required=True, help="ControlNet to start from, e.g. control_sd15_canny.pth")
    p.add_argument("--data", required=True, help="dataset folder: DIR/<patient>/<expression>/*.png|jpg")
    p.add_argument("--out", required=True, help="trained ControlNet to write (.safetensors)")
    p.add_argument("--mode", choices=MODES, default="partial",
                   help="partial: window only; full: t 0..999; freeze: innermost/middle blocks + cross-attention; "
                        "lora: low-rank updates (written as --lora-format says) (default partial)")
    p.add_argument("--t-min", type=int, help="first timestep trained, inclusive (default 500 for partial, else 0)")
    p.add_argument("--t-max", type=int, help="last timestep trained, inclusive (default 700 for partial, else 999)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--steps", type=int, help="optimizer steps in all (overrides --epochs)")
    p.add_argument("--batch-size", type=int, default=4,
                   help="global batch; under torchrun --nproc-per-node N each process takes batch/N of it")
    p.add_argument("--resolution", type=int, default=512, help="face crop size in pixels (multiple of 8)")
    p.add_argument("--lr", type=float, help="learning rate (default: 1e-4 for --mode lora, 1e-5 for the others; "
                                            "on --resume the saved run's)")
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--prompt", default=PAPER_PROMPT)
    p.add_argument("--condition", choices=("pf", "codc"), default="pf",
                   help="pf: Canny of the patient's face crop (the paper's training, Method 2 included); codc: "
                        "EXPERIMENTAL, patient organs on a donor contour (needs --donors): condition and target "
                        "are misaligned (donor layout, patient pixels), not the paper's method")
    p.add_argument("--donors", help="folder of non-patient face photos for the experimental --condition codc")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="frozen UNet/VAE/CLIP dtype and ControlNet autocast (auto: bf16 on a GPU, fp32 on the CPU)")
    p.add_argument("--no-gradient-checkpointing", dest="gradient_checkpointing", action="store_false")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adamw", help="adamw8bit needs bitsandbytes")
    p.add_argument("--lora-rank", type=int, default=16)
    p.add_argument("--lora-format", choices=LORA_FORMATS, default="merged",
                   help="--mode lora only. merged: OUT is a whole ControlNet (loads anywhere); lora: OUT holds only "
                        "the LoRA factors, loaded by Load Timestep-Window ControlNet with the base ControlNet "
                        "(--controlnet) as base_control_net_name; both: OUT merged and OUT_lora.safetensors")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=100, help="save the training state every N steps")
    p.add_argument("--resume", action="store_true", help="continue from OUT_training/training_state.torch")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT file (refused otherwise)")
    p.add_argument("--device", help="torch device (default cuda when there is one)")
    p.add_argument("--comfyui-dir", help="your ComfyUI folder (default: $COMFYUI_DIR, else the embedded host)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--progress-line", type=int, default=0, choices=range(0, 10), metavar="N",
                   help="the terminal line of the progress bar: 1 under a parent's bar (as the experiment runs it)")
    args = p.parse_args(argv)
    if args.resolution % 8 or args.resolution < 64:
        p.error("--resolution must be a multiple of 8, at least 64")
    if min(args.batch_size, args.epochs, args.checkpoint_every, args.lora_rank) < 1 or (args.steps or 1) < 1:
        p.error("--batch-size, --epochs, --steps, --checkpoint-every and --lora-rank must be at least 1")
    if args.lr is not None and not 0 < args.lr < float("inf"):
        p.error("--lr must be a positive number")
    if args.lora_format != "merged" and args.mode != "lora":
        p.error(f"--lora-format {args.lora_format} needs --mode lora (only lora mode trains LoRA factors)")
    if not args.out.endswith(".safetensors"):
        p.error("--out must end in .safetensors")
    if args.optimizer == "adamw8bit" and importlib.util.find_spec("bitsandbytes") is None:
        p.error("--optimizer adamw8bit needs the bitsandbytes package (pip install bitsandbytes); or use adamw")
    return Config(**vars(args))


def main(argv=None):
    cfg = parse_args(argv)
    mute_native_logs()  # a command line: MediaPipe's C++ log lines say nothing about the run
    try:
        require_extras("training")
        log = train(cfg)
    except TrainingStopped as e:
        print(f"training: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("training: interrupted before the first step, or by a second Ctrl-C; the last saved state (if any) "
              "is kept", file=sys.stderr)
        return 130
    except (InputError, HostError, ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"training: {e}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun rank 0 reports for all
    last = log["steps"][-1]["loss"] if log["steps"] else float("nan")
    also = f" and {lora_path(cfg.out)}" if cfg.lora_format == "both" else ""
    print(f"training: wrote {cfg.out}{also} ({log['settings']['steps']} steps, last loss {last:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
