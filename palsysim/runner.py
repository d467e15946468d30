"""`python -m palsysim run`: a shipped workflow, headless, in batch, against a ComfyUI server.

    python -m palsysim run workflows/api/palsy_pf.json --patients PATIENTS --out OUT \
        [--server URL [--server URL ...] | --embedded [N]] [--identities "a man" "a woman"] [--seeds 1 2]
        [--expressions rest grin] [--donor PHOTO] [--set KSampler.steps=30] [--bypass NODE]
        [--reconnect-timeout 120]

PATIENTS holds one folder per patient, one photo per Yanagihara item in it, named after the item:
PATIENTS/<patient>/<expression>.png|.jpg. Results go to OUT/<patient>/<expression>/<identity>_<seed>.png
with OUT/manifest.json; a second run with the same OUT skips what is done.

The runner fills in nodes by their titles (the API file's _meta.title; the UI shows the same):
  patient            LoadImage: the job's photo           patient <expression>  LoadImage (grid)
  donor              LoadImage: --donor                    identities   PalsyLines (grid): one per line
  identity           PrimitiveString: the job's identity   grid output  the grid sheet
  output             the save node: the job's images (grid: every identity's batch, in item order)
and every `seed`/`noise_seed` input gets the job's seed. When `output` is fed by a privacy gate,
the gate's record of what it kept names each saved image by its place in the batch.

Privacy: photos are re-encoded to PNG without metadata and uploaded under their content hash, so
the server never sees a patient's file name, path or EXIF; the manifest names patients only by
the folder names the output layout already uses.

Several servers (--server given more than once, or --embedded N) share the jobs: each job goes
to the server with the shortest queue, at most two of ours pending on any one. A server that goes
away mid-batch has its jobs queued again on the others and is retried until it answers; with no
server answering for --reconnect-timeout seconds the run stops. Images already written are never
redone, and a job's images depend on its seed alone, not on which server made them.
"""
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import requests

from .fidelity import ITEMS
from .files import write_bytes
from .images import InputError, read_image, refuse_unreadable
from .outputs import folder_out, refuse_overlap, unique_names
from . import workflow as wf

PHOTO_EXTS = (".png", ".jpg", ".jpeg")
SEED_INPUTS = ("seed", "noise_seed")
DISPLAY_ONLY = ("PalsyPreview", "PreviewImage", "MaskPreview")  # nodes that only show images in the UI
UPLOAD_FOLDER = "palsysim"
MANIFEST = "manifest.json"


class NodeError(InputError):
    """The server refused the prompt (validation) or a node raised; the message names the node."""


class ServerLost(requests.ConnectionError):
    """The server came back without our prompt (it restarted between two polls)."""


# What a server going away looks like from here: refused or reset connections, a reply cut short.
SERVER_GONE = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


# --- talking to a ComfyUI server -----------------------------------------------------------------

class Client:
    def __init__(self, url):
        self.url = url.rstrip("/")
        self.client_id = uuid.uuid4().hex
        self._ws = None
        self._ws_dropped = False
        self.uploaded, self.queued = set(), []  # what forget() deletes: content names, prompt ids
        try:
            self.object_info = self._get("/object_info", timeout=120).json()
        except requests.RequestException as e:
            raise InputError(f"no ComfyUI server answers at {self.url} ({e.__class__.__name__}); start one "
                             f"or use --embedded") from None

    def _get(self, path, timeout=60, **params):
        r = requests.get(self.url + path, params=params, timeout=timeout)
        r.raise_for_status()
        return r

    def upload(self, data):
        """PNG bytes -> the name LoadImage takes; the name is the content hash (uploads dedupe)."""
        name = content_name(data)
        # A folder per client: a runner that finishes deletes only what it uploaded itself.
        r = requests.post(self.url + "/upload/image", files={"image": (name, data, "image/png")},
                          data={"overwrite": "true", "subfolder": f"{UPLOAD_FOLDER}/{self.client_id}", "type": "input"},
                          timeout=120)
        r.raise_for_status()
        info = r.json()
        self.uploaded.add(info["name"])
        return f"{info['subfolder']}/{info['name']}" if info.get("subfolder") else info["name"]

    def queue(self, graph):
        prompt_id = uuid.uuid4().hex
        r = requests.post(self.url + "/prompt", json={"prompt": graph, "client_id": self.client_id,
                                                      "prompt_id": prompt_id}, timeout=120)
        if r.status_code == 400:
            raise NodeError(refusal_message(r.json(), graph))
        r.raise_for_status()
        self.queued.append(prompt_id)
        if r.json().get("node_errors"):
            # ComfyUI queues the outputs that validated (a preview) and drops the rest: a half job.
            self.interrupt(prompt_id)
            raise NodeError(refusal_message(r.json(), graph))
        return prompt_id

    def wait(self, prompt_id, on_progress=None, poll_s=2.0):
        """Block until the prompt has finished; returns its /history entry.

        The websocket gives live progress; /history is the record of completion, polled too, so a
        missed or dropped websocket message never hangs the run.
        """
        last_poll = 0.0
        while True:
            done = self._ws_step(prompt_id, on_progress)
            if done or self._ws_dropped or time.monotonic() - last_poll > poll_s:
                last_poll = time.monotonic()
                entry = self._get(f"/history/{prompt_id}").json().get(prompt_id)
                if entry:
                    return entry
                # A dropped websocket may mean the server restarted (fast enough that no poll was
                # refused): then it has forgotten the prompt, and waiting on would never end.
                if self._ws_dropped:
                    self._ws_dropped = False
                    if not self.knows(prompt_id):
                        raise ServerLost(f"the server at {self.url} no longer knows the prompt")
            if self._ws is None:
                time.sleep(0.1)

    def _ws_step(self, prompt_id, on_progress):
        """Read websocket messages for up to ~0.5 s; True once ours says it has finished."""
        import websocket
        if self._ws is None:
            try:
                self._ws = websocket.create_connection(
                    self.url.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}", timeout=0.5)
            except (OSError, websocket.WebSocketException):
                return False
        try:
            msg = self._ws.recv()
        except websocket.WebSocketTimeoutException:
            return False
        except (OSError, websocket.WebSocketException):
            self.close()
            self._ws_dropped = True
            return False
        if not isinstance(msg, str):
            return False  # binary: live previews
        msg = json.loads(msg)
        data = msg.get("data") or {}
        if data.get("prompt_id") != prompt_id:
            return False
        if on_progress and msg["type"] in ("progress", "executing"):
            on_progress(msg["type"], data)
        return msg["type"] in ("execution_success", "execution_error", "execution_interrupted") or (
            msg["type"] == "executing" and data.get("node") is None)

    def answers(self):
        """True if the server answers at all (after it went away)."""
        try:
            self._get("/system_stats", timeout=5)
            return True
        except requests.RequestException:
            return False

    def queue_remaining(self):
        """Prompts queued or running on the server, everyone's."""
        return self._get("/prompt", timeout=30).json()["exec_info"]["queue_remaining"]

    def knows(self, prompt_id):
        """True if the server has the prompt: finished (in /history), running or queued."""
        if self._get(f"/history/{prompt_id}").json().get(prompt_id):
            return True
        queue = self._get("/queue").json()
        return any(item[1] == prompt_id for item in queue.get("queue_running", []) + queue.get("queue_pending", []))

    def forget(self):
        """Delete what this client put on the server: its uploads in input/palsysim/<client id>/, through
        the pack's route, and its prompts' /history entries, which name them."""
        if not self.uploaded and not self.queued:
            return
        folder = f"input/{UPLOAD_FOLDER}/{self.client_id}/"
        try:
            requests.post(self.url + "/history", json={"delete": self.queued}, timeout=30)
            r = requests.post(self.url + "/palsysim/uploads/delete",
                              json={"run": self.client_id, "names": sorted(self.uploaded)}, timeout=30)
        except requests.RequestException as e:
            print(f"could not reach the ComfyUI server at {self.url} to delete the run's photos "
                  f"({e.__class__.__name__}): they stay in {folder} there; delete that folder, or restart the "
                  f"server (the PalsySim pack deletes leftover uploads when it starts)", file=sys.stderr)
            return
        if r.status_code == 404:
            print(f"the server at {self.url} has an older PalsySim pack without the clean-up route: delete "
                  f"{folder} on the server yourself, or update the pack", file=sys.stderr)
        elif not r.ok:
            print(f"the server at {self.url} refused to delete {folder}: {r.text[:300]}", file=sys.stderr)

    def download(self, ref):
        return self._get("/view", filename=ref["filename"], subfolder=ref.get("subfolder", ""),
                         type=ref.get("type", "output"), timeout=120).content

    def interrupt(self, prompt_id):
        """Stop our prompt, running or queued (never someone else's)."""
        try:
            requests.post(self.url + "/interrupt", json={"prompt_id": prompt_id}, timeout=10)
            requests.post(self.url + "/queue", json={"delete": [prompt_id]}, timeout=10)
        except requests.RequestException:
            pass

    def close(self):
        if self._ws is not None:
            try:
                self._ws.close()
            except Exception:
                pass
            self._ws = None


def refusal_message(body, graph):
    """POST /prompt's 400 body -> one message naming each node and what is wrong with it."""
    err = body.get("error") or {}
    lines = [err.get("message", "the server refused the workflow") if isinstance(err, dict) else str(err)]
    for nid, ne in (body.get("node_errors") or {}).items():
        who = wf.describe(graph, nid) if nid in graph else f"node {nid} ({ne.get('class_type', '?')})"
        for e in ne.get("errors", []):
            detail = f": {e['details']}" if e.get("details") else ""
            lines.append(f"  {who}: {e.get('message', '')}{detail}")
    if len(lines) == 1 and isinstance(err, dict) and err.get("details"):
        lines.append(f"  {err['details']}")
    return "\n".join(lines)


def execution_error(entry, graph):
    """A /history entry -> the message of the node that failed, or None if it succeeded."""
    status = entry.get("status") or {}
    for kind, data in status.get("messages", []):
        if kind == "execution_error":
            nid = str(data.get("node_id"))
            who = wf.describe(graph, nid) if nid in graph else f"node {nid} ({data.get('node_type')})"
            return f"{who}: {data.get('exception_message', '').strip()}"
        if kind == "execution_interrupted":
            return "interrupted on the server"
    if status.get("status_str") not in (None, "success"):
        return f"the server reports status {status.get('status_str')!r}"
    return None


# --- the embedded host ---------------------------------------------------------------------------

def comfyui_dir(explicit=None):
    """The ComfyUI folder: `explicit`, else $COMFYUI_DIR, else the one scripts/setup.sh recorded in .host/comfyui_dir."""
    path = explicit or os.environ.get("COMFYUI_DIR")
    marker = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".host", "comfyui_dir")
    if not path and os.path.isfile(marker):
        path = open(marker, encoding="utf-8").read().strip()
    if not path or not all(os.path.exists(os.path.join(path, f)) for f in ("main.py", "comfy")):
        raise InputError(f"no ComfyUI found at {path or '(nothing set)'}: point COMFYUI_DIR (or --comfyui-dir) at "
                         f"the folder that holds main.py and comfy/, or run `make setup` for the embedded one")
    return os.path.abspath(path)


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
        # Locked from birth: a concurrent run's remove_stale_hosts never takes a live folder.
        self._lock = os.open(os.path.join(self.tmp, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
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
        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        keeper = [sys.executable, "-c", "from palsysim.runner import guard_host; guard_host()",
                  self.tmp, str(os.getpid()), *cmd]
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join([package_parent] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
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


# --- what to run ---------------------------------------------------------------------------------

def slug(text):
    """A readable file-name part: letters and digits of any script kept (男性 stays 男性), the rest _."""
    return re.sub(r"\W+", "_", text).strip("_").lower() or "identity"


def content_name(png):
    """The name an upload has on the server: its content hash (so the same photo is one file)."""
    return hashlib.sha256(png).hexdigest()[:24] + ".png"


def identity_names(identities, known):
    """{identity: file-name part}: `known` (from the manifest) kept, new identities given slugs that
    no known or other new name repeats, ignoring case ("A man", "a-man" -> a_man, a_man_2)."""
    names = dict(known)
    new = [i for i in dict.fromkeys(identities) if i not in names]
    unique = unique_names(list(names.values()) + [slug(i) for i in new])[len(names):]
    names.update(zip(new, unique))
    return names


def photo_png(path):
    """A photo file -> PNG bytes with no metadata (EXIF, text, ICC): pixels only, upright.

    Decoded by the one photo reader, so an upload holds the pixels the CLI and training see (its
    size limit and messages included)."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(read_image(path)).save(buf, format="PNG")
    return buf.getvalue()


def find_patients(root, expressions=None):
    """{patient: {expression: photo path}} from root/<patient>/<expression>.<ext>."""
    if not root or not os.path.isdir(root):
        raise InputError(f"--patients {root!r} is not a folder (expected PATIENTS/<patient>/<expression>.png)")
    for e in expressions or ():
        if e not in ITEMS:
            raise InputError(f"unknown expression {e!r}: use the Yanagihara items {', '.join(ITEMS)}")
    patients = {}
    for name in sorted(os.listdir(root)):
        folder = os.path.join(root, name)
        if not os.path.isdir(folder) or name.startswith("."):
            continue
        photos = {}
        for f in sorted(os.listdir(folder)):
            stem, ext = os.path.splitext(f)
            if ext.lower() not in PHOTO_EXTS:
                continue
            if stem not in ITEMS:
                raise InputError(f"{name}/{f}: name each photo after its Yanagihara item ({', '.join(ITEMS)})")
            if stem in photos:
                raise InputError(f"{name}: two photos for {stem}")
            if expressions is None or stem in expressions:
                photos[stem] = os.path.join(folder, f)
        if photos:
            patients[name] = photos
    if not patients:
        raise InputError(f"no patient photos under {root} (expected {root}/<patient>/<expression>.png)")
    return patients


def titled(graph, prefix, kind=None):
    """{suffix: node id} of nodes (of class_type kind) titled `prefix` (suffix "") or `prefix <suffix>`."""
    out = {}
    for nid in graph:
        t = wf.title(graph, nid)
        if kind and graph[nid]["class_type"] != kind:
            continue
        if t == prefix:
            out[""] = nid
        elif t.startswith(prefix + " "):
            out[t[len(prefix) + 1:]] = nid
    return out


class Plan:
    """The prompts a batch needs: one per job (patient x expression x identity x seed), or for a
    grid workflow (LoadImage nodes titled `patient <expression>`) one per patient x seed."""

    def __init__(self, graph, patients, identities=None, seeds=None, known_names=None):
        # Image previews write what they show (the patient's face crop) into the server's temp/, which
        # /view serves to anyone; a headless run shows nothing, so it runs none.
        self.graph = {nid: n for nid, n in graph.items() if n["class_type"] not in DISPLAY_ONLY}
        self.slots = titled(graph, "patient", "LoadImage")
        self.grid = "" not in self.slots
        if not self.slots or (self.grid and set(self.slots) - set(ITEMS)):
            raise InputError("the workflow has no LoadImage titled 'patient' (or 'patient <expression>' with "
                             f"expressions from {', '.join(ITEMS)}): title the node the runner should fill")
        self.grid_items = [e for e in ITEMS if e in self.slots] if self.grid else []
        self.ident = titled(graph, "identity", "PrimitiveString").get("")
        self.lines = titled(graph, "identities", "PalsyLines").get("")
        if self.grid:
            if self.lines is None:
                raise InputError("this grid workflow has no Lines node titled 'identities' (one identity per line): "
                                 "title the node the runner should fill")
            own = [t.strip() for t in graph[self.lines]["inputs"]["text"].splitlines() if t.strip()]
        else:
            own = [graph[self.ident]["inputs"]["value"]] if self.ident else []
        self.identities = list(identities or own or ["person"])
        seed_values = [v for n in graph.values() for k, v in n["inputs"].items() if k in SEED_INPUTS and not isinstance(v, list)]
        self.seeds = list(seeds) if seeds else seed_values[:1] or [0]
        self.names = identity_names(self.identities, known_names or {})
        self.output = titled(self.graph, "output").get("")
        self.grid_output = titled(self.graph, "grid output").get("")
        if self.output is None:
            raise InputError("the workflow has no save node titled 'output'")
        self.jobs = []
        for patient, photos in patients.items():
            for seed in self.seeds:
                if self.grid:
                    missing = [e for e in self.grid_items if e not in photos]
                    if missing:
                        raise InputError(f"patient {patient}: the grid needs a photo of every item; missing "
                                         f"{', '.join(missing)}")
                    self.jobs.append({"key": f"{patient}/grid/{seed}", "patient": patient, "seed": seed,
                                      "photos": photos})
                    continue
                for expression, path in photos.items():
                    for identity in self.identities:
                        self.jobs.append({"key": f"{patient}/{expression}/{self.names[identity]}_{seed}",
                                          "patient": patient, "expression": expression, "identity": identity,
                                          "seed": seed, "photos": {expression: path}})

    def prompt(self, job, upload):
        """The graph for one job; upload(path) -> the name the server knows the photo by."""
        g = json.loads(json.dumps(self.graph))
        for suffix, nid in self.slots.items():
            g[nid]["inputs"]["image"] = upload(job["photos"][suffix or job["expression"]])
        if self.grid:
            g[self.lines]["inputs"]["text"] = "\n".join(self.identities)
        elif self.ident:
            g[self.ident]["inputs"]["value"] = job["identity"]
        for n in g.values():
            for k in SEED_INPUTS:
                if k in n["inputs"] and not isinstance(n["inputs"][k], list):
                    n["inputs"][k] = job["seed"]
        return g

    def targets(self, job, outputs):
        """[(relative path, image ref, record)] for a finished job's /history outputs."""
        out, p, seed = [], job["patient"], job["seed"]
        images = outputs.get(self.output, {}).get("images", [])
        for (row, i, batch), ref in zip(self.places(self.output, outputs, len(images)), images):
            if self.grid:
                e, identity, extra = self.grid_items[i], self.identities[row], ""
            else:
                e, identity = job["expression"], job["identity"]
                extra = f"_{row * batch + i + 1}" if batch > 1 or row else ""
            out.append((f"{p}/{e}/{self.names[identity]}_{seed}{extra}.png", ref,
                        {"patient": p, "expression": e, "identity": identity, "seed": seed}))
        if self.grid and self.grid_output:
            for ref in outputs.get(self.grid_output, {}).get("images", [])[:1]:
                out.append((f"{p}/grid_{seed}.png", ref, {"patient": p, "seed": seed, "grid": self.identities}))
        return out

    def places(self, nid, outputs, n):
        """[(run, index in its batch, batch size)] of each of the n images save node nid wrote: from the
        privacy gate's record where the gate feeds it (held-back images leave gaps), else in order, a
        grid's run being one identity's batch of every item."""
        records = self.gate_records(nid, outputs)
        if records is not None:
            places = [(r, i, rec["batch"]) for r, rec in enumerate(records) for i in rec["kept"]]
        elif self.grid:
            places = [(*divmod(k, len(self.grid_items)), len(self.grid_items)) for k in range(n)]
        else:
            places = [(0, k, n) for k in range(n)]
        rows = 1 + max((r for r, _, _ in places), default=0)
        if len(places) != n or (self.grid and (rows > len(self.identities) or
                                               any(b != len(self.grid_items) for _, _, b in places))):
            raise InputError(f"{wf.describe(self.graph, nid)} gave {n} images, which do not match "
                             f"{len(self.identities)} identities x {len(self.grid_items) or 1} photos"
                             f"{' (the gate kept ' + str(len(places)) + ')' if records is not None else ''}")
        return places

    def gate_records(self, nid, outputs):
        """The privacy gate's records [{"batch", "kept"}] where a gate feeds node nid, else None."""
        src = self.graph[nid]["inputs"].get("images")
        if isinstance(src, list) and self.graph[src[0]]["class_type"] == "PalsyPrivacyGate":
            return outputs.get(src[0], {}).get(wf.KEPT_KEY)
        return None

    def held_back(self, outputs):
        """How many images the privacy gate held back from the output node in a job's /history outputs."""
        return sum(r["batch"] - len(r["kept"]) for r in self.gate_records(self.output, outputs) or [])



# --- the batch -----------------------------------------------------------------------------------

class Manifest:
    """OUT/manifest.json: what was asked and, per job, its status, images and reports. Rewritten
    whole after every job, so a killed run leaves the last complete state."""

    def __init__(self, out, settings):
        self.path = os.path.join(out, MANIFEST)
        self.data = {"settings": settings, "names": {}, "jobs": {}}
        if os.path.exists(self.path):
            try:
                with open(self.path, encoding="utf-8") as f:
                    old = json.load(f)
            except (OSError, ValueError) as e:
                old = e
            if not (isinstance(old, dict) and isinstance(old.get("jobs"), dict)
                    and all(isinstance(j, dict) for j in old["jobs"].values())):
                why = f"{old.__class__.__name__}: {old}"[:200] if isinstance(old, Exception) else "not a runner manifest"
                raise InputError(f"{self.path} cannot be read ({why}): move it away to start afresh, or give "
                                 f"another --out") from None
            self.data["jobs"] = old["jobs"]
            self.data["names"] = old.get("names") if isinstance(old.get("names"), dict) else {}

    def stale(self, key, made_from, out):
        """None if the job is done from exactly these inputs and its images are on disk; else why not
        ("" for a job never done)."""
        job = self.data["jobs"].get(key)
        if not job or job.get("status") not in ("done", "held_back"):
            return ""
        if not all(os.path.isfile(os.path.join(out, p)) for p in job.get("images", [])):
            return "image missing"
        old = job.get("made_from") or {}
        changed = [REASONS[k] for k in REASONS if old.get(k) != made_from.get(k)]
        return ", ".join(changed) or None

    def record(self, key, **entry):
        self.data["jobs"][key] = entry
        write_bytes(self.path, (json.dumps(self.data, indent=2) + "\n").encode())


# What a job is made from, and how a change in each is reported when the job is redone.
REASONS = {"workflow": "workflow or --set/--bypass changed", "photos": "photo changed",
           "donor": "donor changed", "identity": "identity changed", "seed": "seed changed"}


def graph_hash(graph):
    return hashlib.sha256(json.dumps(graph, sort_keys=True).encode()).hexdigest()[:24]


def check_donor_face(donor):
    """A donor photo without a face would fail every job, one by one: refuse it once, up front."""
    from .images import read_image
    from .landmarks import face_landmarks
    face_landmarks(read_image(donor), what=f"--donor {os.path.basename(donor)}")


class Server:
    """One ComfyUI server of a batch: its client, the photos uploaded to it, and our prompts it holds
    (queued or running), oldest first. `down` is when it stopped answering, None while it answers."""

    def __init__(self, client):
        self.client, self.uploads, self.pending, self.lost, self.down = client, {}, [], {}, None
        self.queue_length = 0  # the server's own count, other users' prompts included

    def upload(self, path, png):
        if path not in self.uploads:
            self.uploads[path] = self.client.upload(png(path))
        return self.uploads[path]


PENDING_PER_SERVER = 2  # one running, one waiting: the server never idles between our prompts


def run_batch(clients, graph, patients, out, identities=None, seeds=None, donor=None, name="workflow",
              settings=None, progress=True, keep_uploads=False, reconnect_s=120.0):
    """Run every job not already done in OUT from the same inputs, spread over `clients` (one or more
    servers); returns {"done", "skipped", "redone": {why: n}, "held_back": images, "failed": [messages]}.

    Each server gets at most PENDING_PER_SERVER of our prompts; a job goes to the server with the
    shortest queue. A server that stops answering has its prompts queued again on the others (or on
    itself, once it is back) and is retried; the batch gives up only when no server has answered for
    reconnect_s. Images depend on the job alone
    (its seed), not on which server made them.
    """
    from collections import Counter

    from tqdm import tqdm
    manifest = Manifest(out, {"workflow": name, **(settings or {})})
    plan = Plan(graph, patients, identities, seeds, manifest.data["names"])
    manifest.data["settings"].update(identities=plan.identities, seeds=plan.seeds)
    manifest.data["names"] = plan.names
    pngs = {}

    def png(path):
        if path not in pngs:
            pngs[path] = photo_png(path)
        return pngs[path]

    unreadable = []
    for path in sorted({p for job in plan.jobs for p in job["photos"].values()}):
        try:
            png(path)
        except InputError as e:
            unreadable.append(str(e))
    if unreadable:  # said once, before any job, not one by one mid-batch
        raise InputError(f"{len(unreadable)} photo(s) cannot be read: replace them or move them away:\n  "
                         + "\n  ".join(unreadable))
    donors = titled(graph, "donor", "LoadImage")
    if donors and not donor:
        raise InputError("this workflow needs a donor photo (a healthy, consenting face): give --donor PHOTO")
    if donors:
        check_donor_face(donor)
    workflow_hash = graph_hash(graph)

    def made_from(job):
        return {"workflow": workflow_hash, "photos": {k: content_name(png(p)) for k, p in sorted(job["photos"].items())},
                "donor": content_name(png(donor)) if donors else None, "identity": job.get("identity", plan.identities),
                "seed": job["seed"]}

    todo, redone, skipped = [], Counter(), 0
    for job in plan.jobs:
        job["made_from"] = made_from(job)
        why = manifest.stale(job["key"], job["made_from"], out)
        if why is None:
            skipped += 1
            continue
        todo.append(job)
        if why:
            redone[why] += 1
    summary = {"done": 0, "skipped": skipped, "redone": dict(redone), "held_back": 0, "failed": []}
    bar = tqdm(total=len(plan.jobs), initial=summary["skipped"], unit="prompt", disable=not progress,
               dynamic_ncols=True, file=sys.stderr)
    servers = [Server(c) for c in clients]
    left = len(todo)  # jobs not yet recorded
    cond = threading.Condition()
    stop = []  # set: the workers end; an exception in it (a refused workflow) is raised here

    def prompt_for(server, job):
        prompt = plan.prompt(job, lambda path: server.upload(path, png))
        for nid in donors.values():
            prompt[nid]["inputs"]["image"] = server.upload(donor, png)
        return prompt

    def on_progress(kind, data):
        if kind == "progress":
            bar.set_postfix_str(f"step {data.get('value')}/{data.get('max')}")

    def finish(server, job, prompt_id):
        """Wait for the job's prompt, then write its images and its manifest entry."""
        nonlocal left
        entry = server.client.wait(prompt_id, on_progress)
        fields = {k: job[k] for k in ("patient", "expression", "identity", "seed") if k in job}
        error = execution_error(entry, graph)  # graph: the prompt's nodes and titles, not its values
        if error:
            record = {"status": "failed", "error": error, "images": []}
        else:
            outputs = entry.get("outputs", {})
            files = [(rel, server.client.download(ref)) for rel, ref, _ in plan.targets(job, outputs)]
            for rel, data in files:
                write_bytes(os.path.join(out, rel), data)
            reports = {wf.title(graph, nid): "\n".join(o["text"]) for nid, o in sorted(outputs.items())
                       if o.get("text") and nid in graph}
            record = {"status": "done" if files else "held_back", "images": [rel for rel, _ in files],
                      "held_back": plan.held_back(outputs), "reports": reports}
        with cond:
            if error:
                summary["failed"].append(f"{job['key']}: {error}")
            else:
                summary["done"] += 1
                summary["held_back"] += record["held_back"]
            manifest.record(job["key"], **record, made_from=job["made_from"], server=server.client.url, **fields)
            server.pending.pop(0)
            left -= 1
            bar.update(1)
            cond.notify_all()

    def take(server):
        """The next job for this server, or None: it has room, and no server that answers and has
        room has a shorter queue (ties go to the one asking)."""
        if not todo or len(server.pending) >= PENDING_PER_SERVER:
            return None
        rivals = [s for s in servers if s.down is None and len(s.pending) < PENDING_PER_SERVER]
        if any(s.queue_length < server.queue_length for s in rivals):
            return None
        server.queue_length += 1
        return todo.pop(0)

    def lose(server, error):
        """The server stopped answering: its jobs go back to the front of the line, for any server."""
        with cond:
            if server.down is None:
                server.down = time.monotonic()
                print(f"lost the ComfyUI server at {server.client.url} ({error.__class__.__name__}); "
                      f"{len(server.pending)} job(s) queued again, and the server is retried",
                      file=sys.stderr, flush=True)
            server.lost.update({job["key"]: pid for job, pid in server.pending})
            todo[:0] = [job for job, _ in server.pending]
            server.pending.clear()
            cond.notify_all()
        server.client.close()
        server.uploads.clear()  # a restarted server has lost them (the client still knows what to delete)

    def come_back(server):
        """Retry a lost server, pausing 0.5 s, 1 s ... 10 s, until it answers (True) or the batch ends
        (False). A prompt it still holds whose job no other server took meanwhile is waited for again
        rather than run twice; one whose job another server took is withdrawn."""
        pause = 0.5
        while not server.client.answers():
            with cond:
                if stop or not left:
                    return False
            time.sleep(pause)
            pause = min(2 * pause, 10.0)
        held = {key: pid for key, pid in server.lost.items() if server.client.knows(pid)}
        with cond:
            waiting = {job["key"]: job for job in todo}
            for key, pid in held.items():
                if key in waiting:
                    todo.remove(waiting[key])
                    server.pending.append((waiting[key], pid))
                else:
                    server.client.interrupt(pid)
            print(f"the server at {server.client.url} answers again after {time.monotonic() - server.down:.0f} s",
                  file=sys.stderr, flush=True)
            server.lost, server.down = {}, None
            cond.notify_all()
        return True

    def work(server):
        """One server's loop: keep it fed, write what it finishes, survive its going away."""
        while True:
            try:
                if server.down is not None and not come_back(server):
                    return
                if len(server.pending) < PENDING_PER_SERVER:  # only then can it take a job
                    server.queue_length = server.client.queue_remaining()
                with cond:
                    if stop or not left:
                        return
                    job = take(server)
                    if job is None and not server.pending:
                        cond.wait(0.5)
                        continue
                if job is not None:
                    try:
                        prompt_id = server.client.queue(prompt_for(server, job))
                    except BaseException:
                        with cond:
                            todo.insert(0, job)
                        raise
                    with cond:
                        server.pending.append((job, prompt_id))
                    if len(server.pending) < PENDING_PER_SERVER:
                        continue
                finish(server, *server.pending[0])
            except SERVER_GONE as e:
                lose(server, e)
            except BaseException as e:  # a refused workflow, a bad output: the whole batch stops
                with cond:
                    stop.append(e)
                    cond.notify_all()
                return

    threads = [threading.Thread(target=work, args=(s,), daemon=True) for s in servers]
    try:
        for t in threads:
            t.start()
        with cond:
            while left and not stop:
                cond.wait(0.5)
                downs = [s.down for s in servers]
                if all(d is not None for d in downs) and time.monotonic() - max(downs) > reconnect_s:
                    raise InputError(f"no ComfyUI server answered within {reconnect_s:g} s (--reconnect-timeout): "
                                     f"{', '.join(s.client.url for s in servers)}; run the same command again to "
                                     f"finish the batch: images already written are kept")
        if stop:
            raise stop[0]
    except BaseException:
        with cond:
            stop.append(None)
            held = [(s, pid) for s in servers for _, pid in s.pending]
        for s, pid in held:
            s.client.interrupt(pid)
        raise
    finally:
        for t in threads:
            t.join(timeout=10)
        bar.close()
        for s in servers:
            s.client.close()
            if not keep_uploads:
                s.client.forget()  # every server, the lost ones too: each may have come back
    return summary


def prepare_graph(path, client, overrides=(), bypasses=()):
    """Load a workflow file (API or UI format) and apply --bypass and --set."""
    data = wf.load_json(path)
    graph = wf.to_api(data, client.object_info) if wf.is_ui_format(data) else data
    if not isinstance(graph, dict) or not all(isinstance(n, dict) and "class_type" in n for n in graph.values()):
        raise InputError(f"{path} is neither an API-format nor a UI-format ComfyUI workflow")
    for ref in bypasses:
        wf.bypass(graph, ref, client.object_info)
    for text in overrides:
        wf.set_input(graph, *wf.parse_override(text), client.object_info)
    return graph


def add_server_arguments(p, default="http://127.0.0.1:8188"):
    """--server URL (repeatable) | --embedded [N]: where the jobs run (run and experiment share it).
    Neither given: `default`, a URL, or "embedded" for one embedded host."""
    where = p.add_mutually_exclusive_group()
    where.add_argument("--server", action="append", metavar="URL",
                       help=f"a ComfyUI server (default: {'one embedded host' if default == 'embedded' else default}); "
                            f"give several to share the jobs")
    where.add_argument("--embedded", type=int, nargs="?", const=1, default=int(default == "embedded"), metavar="N",
                       help="start N embedded ComfyUI hosts for this run (default 1), each on its own GPU "
                            "where there are GPUs")


def add_arguments(p):
    p.add_argument("workflow", help="a workflow JSON (API format from workflows/api/, or a UI-format file)")
    add_server_arguments(p)
    p.add_argument("--models-dir", help="--embedded: extra models folder (default $MODELS_DIR)")
    p.add_argument("--reconnect-timeout", type=float, default=120.0, metavar="SECONDS",
                   help="how long to wait when no server answers (restarted, crashed) before giving up")
    p.add_argument("--patients", required=True, help="PATIENTS/<patient>/<expression>.png|jpg")
    p.add_argument("--expressions", nargs="+", help=f"only these items (default: every photo found): {' '.join(ITEMS)}")
    p.add_argument("--identities", nargs="+", help='prompt identities, e.g. "a man" "a woman" (default: the workflow\'s)')
    p.add_argument("--seeds", nargs="+", type=int, help="default: the workflow's seed")
    p.add_argument("--donor", help="the donor photo for CODC workflows")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NODE.INPUT=VALUE",
                   help="change an input; NODE is a node id, title or type (all nodes of that type)")
    p.add_argument("--bypass", action="append", default=[], metavar="NODE",
                   help="bypass a node as ComfyUI's bypass mode does (e.g. 'privacy gate' without an ArcFace model)")
    p.add_argument("--out", required=True)
    p.add_argument("--keep-uploads", action="store_true",
                   help=f"--server: leave what the run put on the server, the uploaded photos in input/{UPLOAD_FOLDER}/ "
                        f"and the run's prompts in /history, which name them (both deleted by default)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args):
    patients = find_patients(args.patients, args.expressions)
    if args.donor and not os.path.isfile(args.donor):
        raise InputError(f"--donor {args.donor}: no such file")
    refuse_overlap(args.out, [args.patients] + [args.donor] * bool(args.donor))
    # Every photo read once before any server starts or folder is made: an unreadable or oversized one is named now.
    refuse_unreadable(sorted({p for photos in patients.values() for p in photos.values()}) + [args.donor] * bool(args.donor))
    folder_out(args.out)  # an existing file, an unwritable place: said now, not after generating
    with servers(args.server, args.embedded, args.models_dir) as urls:
        clients = [Client(url) for url in urls]
        graph = prepare_graph(args.workflow, clients[0], args.overrides, args.bypass)
        # Settings as given, minus anything that would locate patient files (the --patients path).
        settings = {"overrides": args.overrides, "bypassed": args.bypass}
        summary = run_batch(clients, graph, patients, args.out, args.identities, args.seeds, args.donor,
                            os.path.basename(args.workflow), settings, progress=not args.quiet,
                            keep_uploads=args.keep_uploads, reconnect_s=args.reconnect_timeout)
    redone = summary["redone"]
    why = f" ({sum(redone.values())} redone: " + "; ".join(f"{k}: {n}" for k, n in sorted(redone.items())) + ")"
    print(f"{summary['done']} job(s) done{why if redone else ''}, {summary['skipped']} already done, "
          f"{summary['held_back']} image(s) held back by the privacy gate, {len(summary['failed'])} failed; "
          f"results in {args.out}")
    if summary["failed"]:
        print("failed:\n  " + "\n  ".join(summary["failed"]), file=sys.stderr)
        return 1
    return 0
