"""PalsySim training: partial fine-tuning of an SD1.5 ControlNet on ComfyUI's own model code.

    python -m training --checkpoint SD15 --controlnet CANNY --data DIR --out OUT.safetensors
    python -m training.bench

May import palsysim (the ComfyUI-free core) and comfy*, never the pack's nodes.
"""
