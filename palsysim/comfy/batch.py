"""The batch scheduler: every job of a Plan not already done, spread over one or more ComfyUI servers.

One worker thread per server keeps it fed (at most PENDING_PER_SERVER of our prompts on it), writes
each finished job's images and manifest entry, and survives the server going away: its jobs go back
to the front of the line for any server, and the server is retried until it answers again. The main
thread waits for every job to be recorded, for a worker's error (a refused workflow stops the
batch), or for no server to have answered for reconnect_s.
"""
import os
import sys
import threading
import time
from collections import Counter

from ..base.errors import InputError
from ..base.files import write_bytes
from ..base.layout import is_video
from ..base.photos import refuse_unreadable
from . import workflow as wf
from .client import SERVER_GONE, execution_error
from .plan import Manifest, Plan, check_donor_face, content_name, graph_hash, titled, upload_of


class Server:
    """One ComfyUI server of a batch: its client, the photos uploaded to it, and our prompts it holds
    (queued or running), oldest first. `down` is when it stopped answering, None while it answers."""

    def __init__(self, client):
        self.client, self.uploads, self.pending, self.lost, self.down = client, {}, [], {}, None
        self.queue_length = 0  # the server's own count, other users' prompts included

    def upload(self, name, png):
        """A photo's content name and PNG bytes -> LoadImage's name for it on this server. Keyed by content:
        an upload overwrites the file of the same name, which a prompt of ours may be reading (a broken PNG
        to LoadImage)."""
        if name not in self.uploads:
            self.uploads[name] = self.client.upload(png, name)
        return self.uploads[name]


PENDING_PER_SERVER = 2  # one running, one waiting: the server never idles between our prompts


class Batch:
    """One run_batch call. Set-up (__init__) reads every photo, checks the donor and sets aside the
    jobs already done, all before any server is asked; run() then starts a worker (work) per server
    and waits.

    The workers and run() share `todo` (jobs not yet queued, the next first), `left` (jobs not yet
    recorded), `stop`, `summary`, the manifest and each Server's pending, lost and down: all change
    only under `cond`, whose notify_all wakes whoever waits for a change.
    """

    def __init__(self, clients, graph, patients, out, identities, seeds, donor, name, settings, progress,
                 keep_uploads, reconnect_s, expressions, as_written, uploads):
        from tqdm import tqdm
        self.graph, self.out, self.donor = graph, out, donor
        self.keep_uploads, self.reconnect_s = keep_uploads, reconnect_s
        self.manifest = Manifest(out, {"workflow": name, **(settings or {})})
        self.plan = Plan(graph, patients, identities, seeds, self.manifest.data["names"], expressions)
        self.manifest.data["settings"].update(identities=self.plan.identities, seeds=self.plan.seeds)
        self.manifest.data["names"] = self.plan.names
        self.made, self.as_written = dict(uploads), frozenset(as_written)
        self.read_photos()
        self.donors = titled(graph, "donor", "LoadImage")
        if self.donors and not donor:
            raise InputError("this workflow needs a donor photo (a healthy, consenting face): give --donor PHOTO")
        if self.donors:
            check_donor_face(donor)
        self.workflow_hash = graph_hash(graph)

        self.todo, redone, skipped = [], Counter(), 0
        for job in self.plan.jobs:
            job["made_from"] = self.made_from(job)
            why = self.manifest.stale(job["key"], job["made_from"], out)
            if why is None:
                skipped += 1
                continue
            self.todo.append(job)
            if why:
                redone[why] += 1
        self.summary = {"done": 0, "skipped": skipped, "redone": dict(redone), "held_back": 0, "failed": []}
        self.bar = tqdm(total=len(self.plan.jobs), initial=self.summary["skipped"], unit="prompt",
                        disable=not progress, dynamic_ncols=True, file=sys.stderr)
        self.servers = [Server(c) for c in clients]
        self.left = len(self.todo)  # jobs not yet recorded
        self.cond = threading.Condition()
        self.stop = []  # set: the workers end; an exception in it (a refused workflow) is raised by run()

    def upload_of(self, path):
        """The photo's upload and its content name (plan.upload_of: PNG bytes without metadata, a video's fresh
        mp4); each photo is decoded once per batch, or not at all where the caller made its upload already
        (uploads) or it is one of the caller's own metadata-free PNGs (as_written)."""
        if path not in self.made:
            if path in self.as_written and not is_video(path):
                with open(path, "rb") as f:
                    png = f.read()
                self.made[path] = png, content_name(png)
            else:
                self.made[path] = upload_of(path)
        return self.made[path]

    def content(self, path):
        """The photo's content name on a server (plan.content_name of its PNG)."""
        return self.upload_of(path)[1]

    def upload(self, server, path):
        png, name = self.upload_of(path)
        return server.upload(name, png)

    def read_photos(self):
        """Every job's photo decoded up front: the unreadable ones are named together, before any job,
        not one by one mid-batch."""
        refuse_unreadable(sorted({p for job in self.plan.jobs for p in job["photos"].values()}), read=self.upload_of)

    def made_from(self, job):
        """What the job's images depend on (the manifest's record, compared on the next run)."""
        return {"workflow": self.workflow_hash,
                "photos": {k: self.content(p) for k, p in sorted(job["photos"].items())},
                "donor": self.content(self.donor) if self.donors else None,
                "identity": job.get("identity", self.plan.identities), "seed": job["seed"]}

    def prompt_for(self, server, job):
        prompt = self.plan.prompt(job, lambda path: self.upload(server, path))
        for nid in self.donors.values():
            prompt[nid]["inputs"]["image"] = self.upload(server, self.donor)
        return prompt

    def on_progress(self, kind, data):
        if kind == "progress":
            self.bar.set_postfix_str(f"step {data.get('value')}/{data.get('max')}")

    def finish(self, server, job, prompt_id):
        """Wait for the job's prompt, then write its images and its manifest entry."""
        entry = server.client.wait(prompt_id, self.on_progress)
        fields = {k: job[k] for k in ("patient", "expression", "identity", "seed") if k in job}
        error = execution_error(entry, self.graph)  # graph: the prompt's nodes and titles, not its values
        if error:
            record = {"status": "failed", "error": error, "images": []}
        else:
            outputs = entry.get("outputs", {})
            files = [(rel, server.client.download(ref)) for rel, ref, _ in self.plan.targets(job, outputs)]
            for rel, data in files:
                write_bytes(os.path.join(self.out, rel), data)
            reports = {wf.title(self.graph, nid): "\n".join(o["text"]) for nid, o in sorted(outputs.items())
                       if o.get("text") and nid in self.graph}
            record = {"status": "done" if files else "held_back", "images": [rel for rel, _ in files],
                      "held_back": self.plan.held_back(outputs), "reports": reports}
        with self.cond:
            if error:
                self.summary["failed"].append(f"{job['key']}: {error}")
            else:
                self.summary["done"] += 1
                self.summary["held_back"] += record["held_back"]
            self.manifest.record(job["key"], **record, made_from=job["made_from"], server=server.client.url,
                                 **fields)
            server.pending.pop(0)
            self.left -= 1
            self.bar.update(1)
            self.cond.notify_all()

    def take(self, server):
        """The next job for this server, or None: it has room, and no server that answers and has
        room has a shorter queue (ties go to the one asking). Called under cond."""
        if not self.todo or len(server.pending) >= PENDING_PER_SERVER:
            return None
        rivals = [s for s in self.servers if s.down is None and len(s.pending) < PENDING_PER_SERVER]
        if any(s.queue_length < server.queue_length for s in rivals):
            return None
        server.queue_length += 1
        return self.todo.pop(0)

    def lose(self, server, error):
        """The server stopped answering: its jobs go back to the front of the line, for any server."""
        with self.cond:
            if server.down is None:
                server.down = time.monotonic()
                print(f"lost the ComfyUI server at {server.client.url} ({error.__class__.__name__}); "
                      f"{len(server.pending)} job(s) queued again, and the server is retried",
                      file=sys.stderr, flush=True)
            server.lost.update({job["key"]: pid for job, pid in server.pending})
            self.todo[:0] = [job for job, _ in server.pending]
            server.pending.clear()
            self.cond.notify_all()
        server.client.close()
        server.uploads.clear()  # a restarted server has lost them (the client still knows what to delete)

    def come_back(self, server):
        """Retry a lost server, pausing 0.5 s, 1 s ... 10 s, until it answers (True) or the batch ends
        (False). A prompt it still holds whose job no other server took meanwhile is waited for again
        rather than run twice; one whose job another server took is withdrawn."""
        pause = 0.5
        while not server.client.answers():
            with self.cond:
                if self.stop or not self.left:
                    return False
            time.sleep(pause)
            pause = min(2 * pause, 10.0)
        held = {key: pid for key, pid in server.lost.items() if server.client.knows(pid)}
        with self.cond:
            waiting = {job["key"]: job for job in self.todo}
            for key, pid in held.items():
                if key in waiting:
                    self.todo.remove(waiting[key])
                    server.pending.append((waiting[key], pid))
                else:
                    server.client.interrupt(pid)
            print(f"the server at {server.client.url} answers again after {time.monotonic() - server.down:.0f} s",
                  file=sys.stderr, flush=True)
            server.lost, server.down = {}, None
            self.cond.notify_all()
        return True

    def work(self, server):
        """One server's loop (its own thread): keep it fed, write what it finishes, survive its going away."""
        while True:
            try:
                if server.down is not None and not self.come_back(server):
                    return
                if len(server.pending) < PENDING_PER_SERVER:  # only then can it take a job
                    server.queue_length = server.client.queue_remaining()
                with self.cond:
                    if self.stop or not self.left:
                        return
                    job = self.take(server)
                    if job is None and not server.pending:
                        self.cond.wait(0.5)
                        continue
                if job is not None:
                    try:
                        prompt_id = server.client.queue(self.prompt_for(server, job))
                    except BaseException:
                        with self.cond:
                            self.todo.insert(0, job)
                        raise
                    with self.cond:
                        server.pending.append((job, prompt_id))
                    if len(server.pending) < PENDING_PER_SERVER:
                        continue
                self.finish(server, *server.pending[0])
            except SERVER_GONE as e:
                self.lose(server, e)
            except BaseException as e:  # a refused workflow, a bad output: the whole batch stops
                with self.cond:
                    self.stop.append(e)
                    self.cond.notify_all()
                return

    def run(self):
        """Start the workers and wait until every job is recorded; returns the summary. On any error
        (a worker's, or no server answering for reconnect_s) our prompts still on the servers are
        withdrawn; either way each server is left without our uploads unless keep_uploads."""
        threads = [threading.Thread(target=self.work, args=(s,), daemon=True) for s in self.servers]
        try:
            for t in threads:
                t.start()
            with self.cond:
                while self.left and not self.stop:
                    self.cond.wait(0.5)
                    downs = [s.down for s in self.servers]
                    if all(d is not None for d in downs) and time.monotonic() - max(downs) > self.reconnect_s:
                        raise InputError(f"no ComfyUI server answered within {self.reconnect_s:g} s "
                                         f"(--reconnect-timeout): {', '.join(s.client.url for s in self.servers)}; "
                                         f"run the same command again to finish the batch: images already "
                                         f"written are kept")
            if self.stop:
                raise self.stop[0]
        except BaseException:
            with self.cond:
                self.stop.append(None)
                held = [(s, pid) for s in self.servers for _, pid in s.pending]
            for s, pid in held:
                s.client.interrupt(pid)
            raise
        finally:
            for t in threads:
                t.join(timeout=10)
            self.bar.close()
            for s in self.servers:
                s.client.close()
                if not self.keep_uploads:
                    s.client.forget()  # every server, the lost ones too: each may have come back
        return self.summary


def run_batch(clients, graph, patients, out, identities=None, seeds=None, donor=None, name="workflow",
              settings=None, progress=True, keep_uploads=False, reconnect_s=120.0, expressions=None, as_written=(),
              uploads=None):
    """Run every job not already done in OUT from the same inputs, spread over `clients` (one or more
    servers); returns {"done", "skipped", "redone": {why: n}, "held_back": images, "failed": [messages]}.
    expressions: the items to make images of (default: every photo of each patient). as_written: photo
    paths that are the caller's own PNGs, written without metadata (the experiment's prepared copies),
    uploaded as they are rather than decoded again by every batch. uploads: {path: plan.upload_of(path)} the
    caller made already (the runner's check of every photo and video before any server starts), not made again.

    Each server gets at most PENDING_PER_SERVER of our prompts; a job goes to the server with the
    shortest queue. A server that stops answering has its prompts queued again on the others (or on
    itself, once it is back) and is retried; the batch gives up only when no server has answered for
    reconnect_s. Images depend on the job alone (its seed), not on which server made them.
    """
    return Batch(clients, graph, patients, out, identities, seeds, donor, name, settings, progress,
                 keep_uploads, reconnect_s, expressions, as_written, uploads or {}).run()
