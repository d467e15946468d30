"""A real ComfyUI server with the pack, for tests: start it, talk to it over HTTP, stop it.

    host = start_host(workdir)          # or use the session fixture `host` from conftest.py
    host.object_info("PalsyFaceLandmarks")
    name = host.upload_image(photo)     # uint8/float array or a file path -> name for LoadImage
    result = host.run({"1": {"class_type": "LoadImage", "inputs": {"image": name}}, ...})
    result.ok, result.error, result.outputs
    host.images(result, "3")            # the images a SaveImage/PreviewImage node wrote, as arrays
    host.log()                          # everything the server printed so far
    host.stop()

The server runs the host's own main.py (the folder scripts/setup.sh wrote to .host/comfyui_dir, or
$COMFYUI_DIR) with private input/output/temp/user folders and an extra_model_paths yaml that adds
`models_dir` (checkpoints/, controlnet/, mediapipe/, insightface/) to its model search paths.
"""
import io
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
import requests
from PIL import Image
from tiny_models import comfyui_dir

from palsysim.base.paths import REPO  # the checkout under test
from palsysim.comfy.host import wait_until_up

MODEL_FOLDERS = ("checkpoints", "controlnet", "mediapipe", "insightface")
PACK_NAME = "palsysim"  # the link scripts/setup.sh makes in the host's custom_nodes
# File names of the tiny models the `host` fixture (conftest.py) puts in its model folders.
TINY_CHECKPOINT = "tiny_sd15.safetensors"
TINY_CONTROLNET = "tiny_controlnet.safetensors"


@dataclass
class Result:
    """What became of one prompt.

    status: "success", "error" (a node raised while running) or "invalid" (refused at POST /prompt,
    e.g. by a node's validate_inputs). error: the message a user would see, else None; error_node:
    the id of the node that failed; error_type: the exception's class (dotted name), if one was raised.
    outputs: {node_id: {"images": [{"filename", "subfolder", "type"}], ...}} from /history.
    """
    status: str
    prompt_id: str = None
    error: str = None
    error_node: str = None
    error_type: str = None
    outputs: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)

    @property
    def ok(self):
        return self.status == "success"


class Host:
    def __init__(self, proc, url, log_path, models_dir, input_dir, output_dir, temp_dir):
        self.proc, self.url, self.log_path = proc, url, log_path
        self.models_dir, self.input_dir, self.output_dir, self.temp_dir = models_dir, input_dir, output_dir, temp_dir
        self.client_id = uuid.uuid4().hex

    # --- talking to the server -------------------------------------------------------------------
    def get(self, path, **kw):
        r = requests.get(self.url + path, timeout=kw.pop("timeout", 30), **kw)
        r.raise_for_status()
        return r.json()

    def object_info(self, node=None):
        """/object_info (all nodes), or one node's entry (None when the host does not list it)."""
        if node is None:
            return self.get("/object_info")
        return self.get(f"/object_info/{node}").get(node)

    def upload_image(self, image, name=None):
        """Upload a photo to the server's input folder; returns the name LoadImage takes.

        image: a file path, or an array (H, W), (H, W, 1|3|4), uint8 or float 0..1, saved as PNG
        (grey, RGB or RGBA as given).
        """
        if isinstance(image, (str, os.PathLike)):
            data = open(image, "rb").read()
            name = name or os.path.basename(image)
        else:
            a = np.asarray(image)
            if a.dtype != np.uint8:
                a = np.clip(a.astype(np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
            if a.ndim == 3 and a.shape[2] == 1:
                a = a[..., 0]
            buf = io.BytesIO()
            Image.fromarray(a).save(buf, format="PNG")
            data = buf.getvalue()
            name = name or f"upload_{uuid.uuid4().hex[:12]}.png"
        r = requests.post(self.url + "/upload/image", files={"image": (name, data, "image/png")},
                          data={"overwrite": "true", "type": "input"}, timeout=30)
        r.raise_for_status()
        info = r.json()
        return f"{info['subfolder']}/{info['name']}" if info.get("subfolder") else info["name"]

    def run(self, prompt, timeout=300):
        """POST an API-format prompt and wait for it to finish; returns a Result (never raises for a
        failed node or a refused prompt: tests assert on the message). The JSON is sent as Python
        writes it, so a NaN input travels as a bare NaN (requests' json= would refuse it)."""
        prompt_id = uuid.uuid4().hex
        body = json.dumps({"prompt": prompt, "client_id": self.client_id, "prompt_id": prompt_id})
        r = requests.post(self.url + "/prompt", data=body, headers={"Content-Type": "application/json"}, timeout=60)
        if r.status_code == 400:
            return _invalid(r.json(), prompt_id)
        r.raise_for_status()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get(f"/history/{prompt_id}").get(prompt_id)
            if entry:  # the server files a prompt under /history only once it has finished
                return _finished(entry, prompt_id)
            if self.proc.poll() is not None:
                raise RuntimeError(f"the ComfyUI server died while running a prompt:\n{self.log()[-3000:]}")
            time.sleep(0.05)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout} s:\n{self.log()[-3000:]}")

    # --- reading results back --------------------------------------------------------------------
    def image_paths(self, result, node_id):
        """Paths of the image files node node_id (SaveImage, PreviewImage) wrote for this result."""
        folders = {"output": self.output_dir, "temp": self.temp_dir, "input": self.input_dir}
        return [os.path.join(folders[im.get("type", "output")], im.get("subfolder", ""), im["filename"])
                for im in result.outputs.get(str(node_id), {}).get("images", [])]

    def images(self, result, node_id):
        """The images node node_id wrote, as (H, W, 3) uint8 RGB arrays."""
        return [read_image(p) for p in self.image_paths(result, node_id)]

    def log(self):
        """Everything the server printed (stdout and stderr) so far."""
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    # --- model files -----------------------------------------------------------------------------
    def model_path(self, folder, name):
        """Where to write a model file the server should find, e.g. model_path("controlnet", "x.safetensors")."""
        return os.path.join(self.models_dir, folder, name)

    def refresh_models(self):
        """Make the server re-list model folders on its next request.

        ComfyUI caches each folder's file list and re-reads it when the folder's mtime changes; a
        file added within the same clock tick as the last listing could be missed, so bump mtimes.
        Note the execution cache: a loader node given the same file name again reuses the model it
        loaded before; write changed models under new names.
        """
        now = time.time_ns()
        for folder in MODEL_FOLDERS:
            os.utime(os.path.join(self.models_dir, folder), ns=(now, now))

    # --- life cycle ------------------------------------------------------------------------------
    def wait_ready(self, timeout=180):
        """Wait until the server answers HTTP; raises with the log's tail if it dies or hangs."""
        if wait_until_up(self.url, self.proc, timeout):
            return self
        if self.proc.poll() is not None:
            raise RuntimeError(f"ComfyUI exited with {self.proc.returncode} while starting:\n{self.log()[-5000:]}")
        self.stop()
        raise TimeoutError(f"ComfyUI did not answer within {timeout} s:\n{self.log()[-5000:]}")

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)


def read_image(path):
    """An image file -> (H, W, 3) uint8 RGB array."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_pack_link(host_dir):
    """The host loads the pack through custom_nodes/palsysim; it must be this checkout."""
    link = os.path.join(host_dir, "custom_nodes", PACK_NAME)
    if os.path.realpath(link) != os.path.realpath(REPO):
        raise RuntimeError(f"{link} does not point at this checkout ({REPO}): run `bash scripts/setup.sh`")


def write_model_paths_yaml(path, models_dir):
    lines = ["palsysim_tests:", f"    base_path: {json.dumps(models_dir)}"]
    lines += [f"    {f}: {f}/" for f in MODEL_FOLDERS]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def start_host(workdir, python=None, timeout=180, extra_args=(), wait=True, port=None):
    """Start the host's main.py on a free loopback port with private folders under workdir.

    Returns a ready Host (its /system_stats answers); with wait=False at once, then call
    host.wait_ready() (write model files meanwhile: the server takes about 10 s to start).
    The model folders under workdir/models exist but are empty: write model files into them
    (tiny_models) before or after starting.
    python: the interpreter that runs ComfyUI; default $COMFYUI_PYTHON, else this one.
    extra_args: more main.py arguments, e.g. ["--extra-model-paths-config", "more.yaml"] (a yaml
    with a `custom_nodes:` entry adds a folder of test-only nodes).
    port: listen there (e.g. a stopped host's, to restart it with the same workdir); default a free one.
    """
    host_dir = comfyui_dir()
    check_pack_link(host_dir)
    dirs = {k: os.path.join(workdir, k) for k in ("models", "input", "output", "temp", "user")}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    for folder in MODEL_FOLDERS:
        os.makedirs(os.path.join(dirs["models"], folder), exist_ok=True)
    yaml_path = os.path.join(workdir, "extra_model_paths.yaml")
    write_model_paths_yaml(yaml_path, dirs["models"])

    port = port or free_port()
    cmd = [python or os.environ.get("COMFYUI_PYTHON") or sys.executable, "main.py", "--cpu",
           "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
           "--input-directory", dirs["input"], "--output-directory", dirs["output"],
           "--temp-directory", dirs["temp"], "--user-directory", dirs["user"],
           "--database-url", "sqlite:///:memory:",
           "--extra-model-paths-config", yaml_path, *extra_args]
    log_path = os.path.join(workdir, "server.log")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=host_dir, stdout=log, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL)
    # ComfyUI puts its temp files (PreviewImage) in a "temp" folder inside --temp-directory.
    host = Host(proc, f"http://127.0.0.1:{port}", log_path, dirs["models"], dirs["input"],
                dirs["output"], os.path.join(dirs["temp"], "temp"))
    if wait:
        host.wait_ready(timeout)
    return host


def _invalid(body, prompt_id):
    """A 400 from POST /prompt -> Result with the messages the UI would show, node by node."""
    err = body.get("error") or {}
    parts = [err.get("message", "") if isinstance(err, dict) else str(err)]
    if isinstance(err, dict) and err.get("details"):
        parts.append(err["details"])
    node = None
    for node_id, ne in (body.get("node_errors") or {}).items():
        node = node or node_id
        for e in ne.get("errors", []):
            parts.append(f"{ne.get('class_type', node_id)}: {e.get('message', '')}: {e.get('details', '')}")
    return Result("invalid", prompt_id, "\n".join(p for p in parts if p), node, None, {}, body)


def _finished(entry, prompt_id):
    status = entry.get("status") or {}
    for kind, data in status.get("messages", []):
        if kind == "execution_error":
            # What the UI shows: the node and the exception's message (its type is kept apart).
            msg = f"{data.get('node_type')}: {data.get('exception_message')}"
            return Result("error", prompt_id, msg, str(data.get("node_id")), data.get("exception_type"),
                          entry.get("outputs", {}), entry)
    if status.get("status_str") != "success":
        return Result(status.get("status_str") or "unknown", prompt_id, json.dumps(status)[:2000], None, None,
                      entry.get("outputs", {}), entry)
    return Result("success", prompt_id, outputs=entry.get("outputs", {}), history=entry)
