#!/usr/bin/env bash
# Issue 18's GPU figures in one run (about 5 minutes on an H200): our training step vs diffusers' on
# the same card (batch 4, 512x512, bf16 frozen, checkpointing on, then off), and a profile of both.
# Run from the repository root on the GPU machine; the host's source must be at .host/ComfyUI.
set -euo pipefail
export COMFYUI_DIR=${COMFYUI_DIR:-$PWD/.host/ComfyUI}
PY=${PY:-python3}
OUT=${OUT:-/tmp/palsysim-gpu-bench}
mkdir -p "$OUT"
$PY -m training.bench --steps 10 --peer diffusers --profile "$OUT/profile" | tee "$OUT/checkpointing.txt"
$PY -m training.bench --steps 10 --peer diffusers --no-gradient-checkpointing | tee "$OUT/no-checkpointing.txt"
