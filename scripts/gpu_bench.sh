#!/usr/bin/env bash
# Every GPU figure of issue 28 in one run, one table at the end (under 10 minutes on an H200):
#   - real-size random SD1.5 checkpoint + Canny ControlNet files (python -m training.bench --write-models)
#   - the training step, ours vs diffusers', batch 4, 512x512, bf16, gradient checkpointing on and off
#   - a torch.profiler profile of ours (and diffusers') with the top ops
#   - python -m palsysim bench generate: s/image for the four ControlNet modes at 512x512, 20 steps
#     and, on the same host, the shipped video workflow (16 frames at 512x512, 20 steps): s/frame for each
#     cross-frame attention mode with its flicker (random weights draw no face: no dynamics)
#
#   scripts/gpu_bench.sh           on a GPU machine, from this repository alone
#   scripts/gpu_bench.sh --tiny    the same steps at small size on a CPU (tests/test_gpu_bench.py)
#
# Set-up: PY (default .venv/bin/python, else a python3 that already has torch and ComfyUI's needs,
# else `make setup` is run, which needs the package registry); the host is COMFYUI_DIR (default
# .host/ComfyUI, which make setup extracts). A step whose package is missing (diffusers, mediapipe)
# is reported as not run; the others still run. Logs and profiles go to OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
tiny=0
case "${1:-}" in
  --tiny) tiny=1 ;;
  "") ;;
  *) echo "usage: scripts/gpu_bench.sh [--tiny]" >&2; exit 2 ;;
esac
export COMFYUI_DIR=${COMFYUI_DIR:-$PWD/.host/ComfyUI}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
OUT=${OUT:-/tmp/palsysim-gpu-bench}
mkdir -p "$OUT"

if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then
    PY=.venv/bin/python
  elif [ -f "$COMFYUI_DIR/main.py" ] && python3 -c 'import torch, safetensors, einops, transformers' 2>/dev/null; then
    PY=python3  # the machine's own torch (its CUDA build)
  else
    bash scripts/setup.sh
    PY=.venv/bin/python
  fi
fi
if [ $tiny = 0 ] && ! "$PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())'; then
  echo "gpu_bench: no CUDA device for $PY; on a CPU run scripts/gpu_bench.sh --tiny" >&2
  exit 2
fi
has() { "$PY" -c "import $1" 2>/dev/null; }

# One step: its output to OUT/<name>.txt (and here); a failure is recorded, the next step still runs.
step() {
  local name=$1; shift
  echo "== $name: $*"
  if "$@" 2>&1 | tee "$OUT/$name.txt"; then echo ok >"$OUT/$name.status"; else echo failed >"$OUT/$name.status"; fi
}
skip() { echo "not run: $2" >"$OUT/$1.status"; echo "== $1: not run ($2)"; }

models=$OUT/models
if [ $tiny = 1 ]; then
  train=(--tiny --resolution 64 --batch-size 1 --steps 1 --warmup 0 --device cpu)
  gen=(--size 64 --steps 2 --jobs 1)
  video=(--frames 2 --repeats 1)
  checkpoint=tiny_sd15.safetensors controlnet=tiny_canny.safetensors
  step models "$PY" -c "import sys; sys.path.insert(0, 'tests/support'); import tiny_models as t
t.write_tiny_checkpoint('$models/checkpoints/$checkpoint'); t.write_tiny_controlnet('$models/controlnet/$controlnet')"
else
  train=(--resolution 512 --batch-size 4 --steps 10 --warmup 2 --precision bf16)
  gen=(--size 512 --steps 20 --jobs 4)
  video=(--frames 16 --repeats 3)
  checkpoint=sd15_random.safetensors controlnet=sd15_canny_random.safetensors
  step models "$PY" -m training.bench --write-models "$models"
fi

peer=(); has diffusers && peer=(--peer diffusers)
step train_checkpointing "$PY" -m training.bench "${train[@]}" "${peer[@]}" --profile "$OUT/profile"
step train_no_checkpointing "$PY" -m training.bench "${train[@]}" "${peer[@]}" --no-gradient-checkpointing
if has mediapipe; then
  step generate "$PY" -m palsysim bench generate --models-dir "$models" --checkpoint "$checkpoint" \
    --controlnet "$controlnet" --servers 1 "${gen[@]}" "${video[@]}" \
    --attend-to first_frame first_and_previous flow_guided
else
  skip generate "mediapipe missing (the workflow's landmarks)"
fi

# The one table, read back from the steps' outputs; exits 1 when a step failed.
"$PY" - "$OUT" <<'TABLE'
import os, re, sys
out = sys.argv[1]
STEPS = ("models", "train_checkpointing", "train_no_checkpointing", "generate")


def read(name):
    path = os.path.join(out, name + ".txt")
    return open(os.path.join(out, name + ".status")).read().strip(), open(path).read() if os.path.exists(path) else ""


def find(pattern, text, default="-"):
    m = re.search(pattern, text, re.M)
    return m.group(1) if m else default


runs = [read("train_checkpointing"), read("train_no_checkpointing")]
print("\n| training step | checkpointing on | checkpointing off |\n|---|---|---|")
for label, pattern in (("device", r"^device +(.+)$"), ("setting", r"^setting +(.+)$"),
                       ("ours: samples/s (s/step)", r"^speed +([\d.]+ samples/s \([\d.]+ s/step\))"),
                       ("ours: MFU", r"^MFU +([\d.]+%)"), ("ours: peak memory", r"^peak memory +(.+)$"),
                       ("diffusers: samples/s (s/step)", r"^peer speed +([\d.]+ samples/s \([\d.]+ s/step\))"),
                       ("ours vs diffusers speed", r"ours is ([\d.]+x) the diffusers speed")):
    print(f"| {label} | " + " | ".join(find(pattern, t) if s == "ok" else s for s, t in runs) + " |")
status, text = runs[0]
if status == "ok":
    parts = {w: text.split(f"profile {w}")[1] if f"profile {w}" in text else "" for w in ("ours", "diffusers")}
    print("\n| profile, checkpointing on | ours | diffusers |\n|---|---|---|")
    for label, pattern in (("wall", r"wall ([\d.]+ ms/step)"), ("GPU busy", r"GPU busy +(.+?), \d+ kernels"),
                           ("kernels/step", r"(\d+) kernels/step"), ("CPU busy (top-level aten ops)", r"CPU busy +([\d.]+ ms/step)"),
                           ("top-level ops/step", r"(\d+) ops/step"), ("host syncs/step", r"(\d+) host syncs/step"),
                           ("self time by op kind", r"self time +(.+)$")):
        print(f"| {label} | " + " | ".join(find(pattern, parts[w]) for w in ("ours", "diffusers")) + " |")
    top = [line.split()[0] for line in parts["ours"].splitlines() if line.strip().startswith("aten::")][:8]
    print("\ntop ops of ours (self device time on a GPU, self CPU time on a CPU): " + ", ".join(top))
status, text = read("generate")
print("\n| bench generate, ControlNet mode | s/image | vs everywhere |\n|---|---|---|")
for mode in ("none", "everywhere", "window_only", "window_then_base"):
    m = re.search(rf"^ +{mode} +([\d.]+) s/image +\(([\d.]+)x everywhere\)", text, re.M) if status == "ok" else None
    print(f"| {mode} | {m.group(1) if m else status} | {m.group(2) + 'x' if m else '-'} |")
print(find(r"^(\d+x\d+, \d+ step\(s\), \d+ images per figure.*)$", text, ""))
print("\n| bench video, attend_to | s/frame | flicker | change | dynamics r |\n|---|---|---|---|---|")
for mode in ("first_frame", "first_and_previous", "flow_guided"):
    m = re.search(rf"^ +{mode} +([\d.]+) +([\d.]+) +(no face|[-\d.]+) +\S+ +([\d.]+)$", text, re.M) \
        if status == "ok" else None
    cells = (m.group(4), m.group(1), m.group(2), m.group(3)) if m else (status, "-", "-", "-")
    print(f"| {mode} | " + " | ".join(cells) + " |")
print(find(r"^shipped video workflow, (.+):$", text, "") + " " + find(r"flicker: (.+?); change", text, ""))
failed = [n for n in STEPS if read(n)[0] == "failed"]
print(f"\nlogs in {out}" + (f"; failed: {', '.join(failed)}" if failed else ""))
sys.exit(1 if failed else 0)
TABLE
