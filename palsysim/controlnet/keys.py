"""The state-dict keys that make an SD1.5 checkpoint or ControlNet file what it is. Apart from file.py
(and torch) so that checking a file's kind from its key names, as the experiment's preflight does, does not
import torch: every command line start would pay for it."""

CONTROL_PREFIX = "control_model."
SD15_CONTEXT_DIM = 768
# What ComfyUI's loader reads to recognise and size an ldm ControlNet; without one it fails with an
# AttributeError that names no file.
RECOGNISED_BY = ("zero_convs.0.0.weight", "input_blocks.0.0.weight", "input_hint_block.0.weight")
