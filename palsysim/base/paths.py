"""Where things are: the repository, its workflow folders, and the ComfyUI folder a run uses."""
import os

from .errors import InputError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The frontend's documented templates folder: UI workflows with same-name .jpg thumbnails, one level.
TEMPLATES_DIR = os.path.join(REPO, "example_workflows")
API_DIR = os.path.join(REPO, "workflows", "api")  # their API twins, outside it: not templates

def comfyui_dir(explicit=None):
    """The ComfyUI folder: `explicit`, else $COMFYUI_DIR, else the one scripts/setup.sh recorded in .host/comfyui_dir,
    else the ComfyUI this pack is installed in (ComfyUI/custom_nodes/<pack>)."""
    path = explicit or os.environ.get("COMFYUI_DIR")
    marker = os.path.join(REPO, ".host", "comfyui_dir")
    if not path and os.path.isfile(marker):
        path = open(marker, encoding="utf-8").read().strip()
    if not path and os.path.basename(os.path.dirname(REPO)) == "custom_nodes":
        path = os.path.dirname(os.path.dirname(REPO))
    if not path or not all(os.path.exists(os.path.join(path, f)) for f in ("main.py", "comfy")):
        raise InputError(f"no ComfyUI found at {path or '(nothing set)'}: point COMFYUI_DIR (or --comfyui-dir) at "
                         f"the folder that holds main.py and comfy/, or run `make setup` for the embedded one")
    return os.path.abspath(path)
