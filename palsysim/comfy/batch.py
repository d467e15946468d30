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

from .. import workflow as wf
from ..files import write_bytes
from ..images import InputError
from .client import SERVER_GONE, execution_error
from .plan import Manifest, Plan, check_donor_face, content_name, graph_hash, photo_png, titled


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
