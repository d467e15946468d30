"""The command-line apps' optional extras (pyproject's [project.optional-dependencies], the same lines in
requirements-<extra>.txt): the nodes never need them, so ComfyUI-Manager does not install them, and a
command that needs a missing one says which install line brings it."""
import importlib.util
import os
import re
import sys

from .errors import InputError
from .paths import REPO

# Import names that differ from the distribution's name.
MODULES = {"scikit-learn": "sklearn", "scikit-image": "skimage", "websocket-client": "websocket"}
# What each command needs beyond the nodes' requirements.
COMMAND_EXTRAS = {"run": ("run",), "experiment": ("run", "evaluate"), "bench": ("run", "evaluate"),
                  "demo": ("run", "evaluate"), "evaluate": ("evaluate",), "study": ("study",), "training": ("train",)}


def requirements(extra):
    with open(os.path.join(REPO, f"requirements-{extra}.txt"), encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def distribution(requirement):
    """The distribution a requirement line names: 'lpips>=0.1.4' -> 'lpips'."""
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]


def _installed(requirement):
    name = distribution(requirement)
    module = MODULES.get(name, name.replace("-", "_"))
    if module in sys.modules:  # None there: imports of it are blocked
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None  # found, not imported: lpips alone takes seconds


def require_extras(command):
    """InputError naming the install line when a package of the command's extras is not installed."""
    for extra in COMMAND_EXTRAS.get(command, ()):
        missing = [r for r in requirements(extra) if not _installed(r)]
        if missing:
            line = f"pip install -r {os.path.join(REPO, f'requirements-{extra}.txt')}"
            raise InputError(f"`{command}` needs {', '.join(missing)} (the pack's '{extra}' extra, which the nodes "
                             f"do not need): install it with `{line}`")
