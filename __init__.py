"""ComfyUI entry point of the PalsySim pack (V3 schema)."""
import importlib.util

# The frontend reads each node's help page from here: web/docs/<node id>/<locale>.md.
WEB_DIRECTORY = "./web"

# pytest imports this file too (the repo root is a package); the nodes only exist inside a ComfyUI host.
if importlib.util.find_spec("comfy_api") is not None:
    from .nodes import comfy_entrypoint

    __all__ = ["comfy_entrypoint"]
