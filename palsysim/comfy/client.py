"""Talking to one ComfyUI server over HTTP and its websocket: upload a photo, queue a prompt, wait for
it, fetch its images, and delete afterwards what the run left there.

Uploads go to input/palsysim/<client id>/ under their content hash, so the server never sees a
patient's file name, and a client that finishes deletes only what it uploaded itself. A refused
prompt or a failed node becomes a NodeError naming the node; a server that went away shows as one of
SERVER_GONE, which the batch catches to queue the server's jobs elsewhere.
"""
import json
import sys
import time
import uuid

import requests

from ..base.errors import InputError
from . import workflow as wf
from .plan import content_name

UPLOAD_FOLDER = "palsysim"  # the server's input/ subfolder of our uploads; nodes/routes.py deletes from it


class NodeError(InputError):
    """The server refused the prompt (validation) or a node raised; the message names the node."""


class ServerLost(requests.ConnectionError):
    """The server came back without our prompt (it restarted between two polls)."""


# What a server going away looks like from here: refused or reset connections, a reply cut short.
SERVER_GONE = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


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

    def upload(self, data, name=None):
        """PNG bytes (or a video's mp4 bytes with its name, plan.video_mp4) -> the name LoadImage (LoadVideo)
        takes; the name is the content hash (uploads dedupe). ComfyUI's /upload/image stores any file: the
        frontend uploads videos through it too."""
        name = name or content_name(data)
        # A folder per client: a runner that finishes deletes only what it uploaded itself.
        mime = "video/mp4" if name.endswith(".mp4") else "image/png"
        r = requests.post(self.url + "/upload/image", files={"image": (name, data, mime)},
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
