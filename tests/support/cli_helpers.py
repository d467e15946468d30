"""The palsysim command line as several test files run it: in a subprocess, as a user runs it, or its
main() in the test's own process."""
import os
import subprocess
import sys

from palsysim.base.paths import REPO  # the checkout under test
from palsysim.cli import main


def experiment_cli(*args, **kw):
    """`python -m palsysim experiment ARGS` in a subprocess from the repo -> CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", "palsysim", "experiment", *args], cwd=REPO, capture_output=True,
                          text=True, **kw)


def python_m(counts=None):
    """The start of a `python -m MODULE` command line; counts: run through support/count_reads.py, which writes
    there what the command decoded and landmarked (run it with the repo on PYTHONPATH)."""
    return [sys.executable] + ([os.path.join(REPO, "tests", "support", "count_reads.py"), str(counts)] * bool(counts)
                               + ["-m"])


def palsysim_cli(*args, counts=None):
    """`python -m palsysim ARGS` in a subprocess from the repo, the repo on PYTHONPATH -> CompletedProcess (text).
    counts: as python_m's."""
    env = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.run(python_m(counts) + ["palsysim", *args], capture_output=True, text=True, env=env, cwd=REPO)


def run_main(capsys, *argv):
    """palsysim.cli.main(argv, each as a string) in this process -> (exit code, what it wrote to stderr)."""
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err
