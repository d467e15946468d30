"""ComfyUI entry point of the PalsySim pack (V3 schema)."""
from .nodes import comfy_entrypoint

__all__ = ["comfy_entrypoint"]
