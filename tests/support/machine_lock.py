"""One test at a time on this machine, across test sessions: CI runs its two suites side by side, and a test
that needs most of the machine's memory (SD1.5 at real size in a host) must not meet its twin."""
import contextlib
import fcntl
import os
import tempfile


@contextlib.contextmanager
def machine_lock(name):
    """Hold the machine-wide lock `name` (a file in the system's temp folder) for the with-block."""
    fd = os.open(os.path.join(tempfile.gettempdir(), f"palsysim-tests-{name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
