"""The embedded ComfyUI host: ComfyUI's main.py started for a run on a free loopback port, with
private input/output folders, and the keeper process that stops it and deletes those folders
however the run ends.

`servers` is what a batch runs on: the URLs given, or N embedded hosts (one per GPU where there are
GPUs) started for it and stopped afterwards. The folder locks need fcntl (POSIX) and the parent-death
signal Linux's prctl; without them the rest of the package still imports, and --embedded says why it
cannot run.
"""
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import requests

from ..base.errors import InputError
from ..base.paths import REPO, comfyui_dir


def wait_until_up(url, proc, timeout):
    """True once the ComfyUI at url answers; False when its process `proc` exits or timeout s pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            requests.get(url + "/system_stats", timeout=2).raise_for_status()
            return True
        except requests.RequestException:
            time.sleep(0.2)
    return False


HOST_PREFIX = "palsysim_host_"


def _parent_death_signal():
    """die_with_parent: a preexec_fn that has the child SIGKILLed when its parent dies, however the parent
    dies; None where the C library has no prctl (not Linux), and subprocess runs no preexec_fn."""
    import ctypes
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (AttributeError, OSError, TypeError):
        return None
    return lambda: prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


die_with_parent = _parent_death_signal()


def posix_locks():
    """fcntl, which the embedded host's folder locks use, or an InputError that says what to do instead."""
    try:
        import fcntl
    except ImportError:
        raise InputError("--embedded needs POSIX file locks (fcntl), which this system lacks: start ComfyUI "
                         "yourself and give --server URL") from None
    return fcntl


def guard_host():
    """The embedded host's keeper, run as `python -c` by EmbeddedHost: argv = TMP RUNNER_PID CMD...

    Starts ComfyUI (CMD) and, however the runner ends (SIGTERM, a closed terminal's SIGHUP, kill -9),
    stops it and deletes TMP, which holds the uploaded photos and the server's log. It runs in its own
    session, so a terminal's signals do not reach it; ComfyUI gets SIGKILL if the keeper itself dies.
    """
    tmp, runner, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    with open(os.path.join(tmp, "server.log"), "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                preexec_fn=die_with_parent)
    while proc.poll() is None and not stop and os.getppid() == runner:
        time.sleep(0.2)
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_hosts():
    """Delete what killed runs left: host folders whose lock no keeper holds any more."""
    import glob
    fcntl = posix_locks()
    for folder in glob.glob(os.path.join(tempfile.gettempdir(), HOST_PREFIX + "*")):
        try:
            fd = os.open(os.path.join(folder, "lock"), os.O_RDONLY)
        except OSError:
            continue  # being made or being removed: its runner is at work
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # held: a live run
        shutil.rmtree(folder, ignore_errors=True)
        os.close(fd)


class EmbeddedHost:
    """ComfyUI's main.py on a free loopback port, with private input/output folders that are deleted
    afterwards (uploaded patient photos do not outlive the run), whatever signal ends the runner: a
    keeper process (guard_host) stops the server and deletes the folders when the runner is gone,
    and the next run removes any folder a killed keeper left. models_dir (or $MODELS_DIR) adds a
    folder with checkpoints/, controlnet/, insightface/, mediapipe/ to the host's own models/."""

    MODEL_FOLDERS = ("checkpoints", "controlnet", "insightface", "mediapipe")

    def __init__(self, models_dir=None, timeout=300, cuda_device=None, cpu_threads=None):
        self.models_dir = models_dir or os.environ.get("MODELS_DIR")
        self.timeout, self.cuda_device, self.cpu_threads = timeout, cuda_device, cpu_threads
        self.proc, self.url, self.tmp = None, None, None

    def __enter__(self):
        self.start()
        return self.ready()

    def start(self):
        """Start the server and return at once; ready() waits for it (several start side by side)."""
        host = comfyui_dir()
        if not os.path.isdir(os.path.join(host, "custom_nodes", "palsysim")):
            raise InputError(f"{host}/custom_nodes/palsysim is missing: run `bash scripts/setup.sh`")
        fcntl = posix_locks()
        remove_stale_hosts()
        self.tmp = tempfile.mkdtemp(prefix=HOST_PREFIX)
        # Locked from birth: the lock is taken under another name and then renamed, so a concurrent run's
        # remove_stale_hosts (which skips a folder with no "lock" yet) never finds it unlocked.
        self._lock = os.open(os.path.join(self.tmp, "lock.new"), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        os.rename(os.path.join(self.tmp, "lock.new"), os.path.join(self.tmp, "lock"))
        cmd = [sys.executable, "main.py", "--listen", "127.0.0.1", "--port", str(_free_port()),
               "--disable-auto-launch", "--database-url", "sqlite:///:memory:"]
        for d in ("input", "output", "temp", "user"):
            os.makedirs(os.path.join(self.tmp, d))
            cmd += [f"--{d}-directory", os.path.join(self.tmp, d)]
        if self.models_dir:
            yaml = os.path.join(self.tmp, "models.yaml")
            with open(yaml, "w", encoding="utf-8") as f:
                f.write(f"palsysim:\n    base_path: {json.dumps(os.path.abspath(self.models_dir))}\n"
                        + "".join(f"    {m}: {m}/\n" for m in self.MODEL_FOLDERS))
            cmd += ["--extra-model-paths-config", yaml]
        import torch
        if not torch.cuda.is_available():
            cmd.append("--cpu")
        elif self.cuda_device is not None:
            cmd += ["--cuda-device", str(self.cuda_device)]
        self.url = f"http://{cmd[3]}:{cmd[5]}"
        if threading.current_thread() is threading.main_thread():
            # A plain `kill` or a closed terminal: clean up here at once (the keeper would, too).
            self._old_term = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
            self._old_hup = signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
        self.log = os.path.join(self.tmp, "server.log")
        keeper = [sys.executable, "-c", "from palsysim.comfy.host import guard_host; guard_host()",
                  self.tmp, str(os.getpid()), *cmd]
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join([REPO] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
        if self.cpu_threads and "OMP_NUM_THREADS" not in os.environ:
            env["OMP_NUM_THREADS"] = str(self.cpu_threads)
        self.proc = subprocess.Popen(keeper, cwd=host, stdin=subprocess.DEVNULL, start_new_session=True,
                                     pass_fds=(self._lock,), env=env)

    def ready(self):
        if wait_until_up(self.url, self.proc, self.timeout):
            return self
        exited = self.proc.poll() is not None
        tail = open(self.log, encoding="utf-8", errors="replace").read()[-3000:] if os.path.exists(self.log) else ""
        self.__exit__()
        raise RuntimeError(f"the embedded ComfyUI exited while starting:\n{tail}" if exited
                           else f"the embedded ComfyUI did not answer within {self.timeout} s")

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # the keeper stops ComfyUI and deletes self.tmp
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            os.close(self._lock)
            self.tmp = None
        if getattr(self, "_old_term", None) is not None:
            signal.signal(signal.SIGTERM, self._old_term)
            signal.signal(signal.SIGHUP, self._old_hup)
            self._old_term = None


@contextlib.contextmanager
def servers(urls=None, embedded=0, models_dir=None):
    """The URLs a batch runs on: `urls` when given, else `embedded` hosts started for it (else the
    local ComfyUI), host k on GPU k modulo the GPU count where there are GPUs, and stopped afterwards. Hosts on
    the CPU share its cores: each gets its share of threads, since N hosts each spinning on every
    core ran slower together than one alone (BENCHMARKS.md)."""
    if urls or not embedded:
        yield list(dict.fromkeys(u.rstrip("/") for u in urls or ["http://127.0.0.1:8188"]))
        return
    import torch
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with contextlib.ExitStack() as started:
        hosts = []
        for k in range(embedded):
            hosts.append(EmbeddedHost(models_dir, cuda_device=k % gpus if gpus else None,
                                      cpu_threads=None if gpus or embedded == 1 else max(1, os.cpu_count() // embedded)))
            started.callback(hosts[-1].__exit__)
            hosts[-1].start()
        for h in hosts:
            h.ready()
        yield [h.url for h in hosts]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
