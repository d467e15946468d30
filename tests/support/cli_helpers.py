"""The command-line apps run as a user runs them, shared by several test files."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/support/ -> the repo


def experiment_cli(*args, **kw):
    """`python -m palsysim experiment ARGS` in a subprocess from the repo -> CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", "palsysim", "experiment", *args], cwd=REPO, capture_output=True,
                          text=True, **kw)
