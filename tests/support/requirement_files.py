"""Requirements files read as pip reads their lines (test_requirements.py, test_pack_surface.py)."""
import os

from palsysim.base.paths import REPO  # the checkout under test


def requirement_lines(name="requirements.txt"):
    """The requirement lines of a file in the repo (or at an absolute path), without blanks and comments."""
    with open(os.path.join(REPO, name)) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]
