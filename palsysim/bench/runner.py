"""`python -m palsysim bench runner`: what the headless runner costs over ComfyUI itself, and what `experiment
run`'s prepare stage costs per photo.

The runner (the one generate entry: plan, upload, queue, wait, download, manifest) makes N images of one
photo, one prompt each, on an embedded host; then a bare loop sends the very prompt the runner sends for
that photo (its Plan's) with N other seeds: POST /prompt, wait for the websocket's "done", GET /history,
GET /view of each image, written to disk, as ComfyUI's own websockets example does, and deletes what it
put on the server afterwards. Same server, same models, each side warmed up first, then in turns (a
round of N images each, `rounds` times) so that load from elsewhere hits both alike; medians are shown. The runner's seconds per image over the bare loop's is the overhead
(target at most 1.05x); with tiny models and 1 step the sampling is nearly free, so this is the worst
case. Prepare: `experiment init` + preflight on a temporary experiment of P photos, then its prepare
stage alone, timed.
"""
import json
import os
import tempfile
import time

import numpy as np


def _bare_loop(client, graph, seeds, out):
    """Seconds per image of ComfyUI's plain API loop over `graph` with each of `seeds` (its prompts are
    recorded in client.queued, for client.forget)."""
    import requests
    import websocket

    from ..comfy.plan import SEED_INPUTS
    url = client.url
    ws = websocket.create_connection(url.replace("http", "ws", 1) + f"/ws?clientId={client.client_id}", timeout=600)
    start = time.perf_counter()
    try:
        for seed in seeds:
            for node in graph.values():
                node["inputs"].update({k: seed for k, v in node["inputs"].items()
                                       if k in SEED_INPUTS and not isinstance(v, list)})
            prompt_id = requests.post(url + "/prompt", json={"prompt": graph, "client_id": client.client_id},
                                      timeout=60).json()["prompt_id"]
            client.queued.append(prompt_id)
            while True:
                message = ws.recv()
                if isinstance(message, str):
                    m = json.loads(message)
                    if m["type"] == "executing" and m["data"].get("node") is None \
                            and m["data"].get("prompt_id") == prompt_id:
                        break
            entry = requests.get(f"{url}/history/{prompt_id}", timeout=60).json()[prompt_id]
            for output in entry["outputs"].values():
                for image in output.get("images", []):
                    data = requests.get(url + "/view", params=image, timeout=60).content
                    with open(os.path.join(out, f"{seed}_{image['filename'].replace('/', '_')}"), "wb") as f:
                        f.write(data)
    finally:
        ws.close()
    return (time.perf_counter() - start) / len(seeds)


def runner_overhead(models_dir, checkpoint, controlnet, jobs=4, size=64, steps=1, server=None, rounds=5, log=print):
    """Runner and bare-loop seconds per image on one embedded host (or the server at URL `server`, which
    must have the models); returns the figures as a dict."""
    from ..base.layout import find_patients
    from ..base.photos import write_image
    from ..base.workflows import api_path
    from ..comfy import host
    from ..comfy.client import Client
    from ..comfy.generate import generate
    from ..comfy.plan import Plan, photo_png, prepare_graph
    from .pipeline import sample_faces
    overrides = [f"checkpoint.ckpt_name={checkpoint}", f"controlnet.control_net_name={controlnet}",
                 f"EmptyLatentImage.width={size}", f"EmptyLatentImage.height={size}", f"KSampler.steps={steps}"]
    with tempfile.TemporaryDirectory() as tmp:
        write_image(os.path.join(tmp, "patients", "sample", "rest.png"), sample_faces(256)[0])
        found = find_patients(os.path.join(tmp, "patients"))

        def run(seeds):
            start = time.perf_counter()
            summary = generate(urls, api_path("palsy_pf"), found, tempfile.mkdtemp(dir=tmp), overrides,
                               ["privacy gate"], seeds=seeds, progress=False)
            if summary["failed"] or summary["done"] != len(seeds):
                raise RuntimeError("generation failed: " + "; ".join(summary["failed"]))
            return (time.perf_counter() - start) / len(seeds)

        with host.servers([server] if server else None, embedded=1, models_dir=models_dir) as urls:
            client = Client(urls[0])
            plan = Plan(prepare_graph(api_path("palsy_pf"), client, overrides, ["privacy gate"]), found, seeds=[0])
            graph = plan.prompt(plan.jobs[0], lambda path: client.upload(photo_png(path)))
            try:
                run([0])  # warm-ups, of both sides
                _bare_loop(client, graph, [10 ** 6], tmp)
                times = []
                for r in range(rounds):
                    seeds = [1 + 2 * jobs * r + k for k in range(2 * jobs)]
                    times.append((run(seeds[:jobs]), _bare_loop(client, graph, seeds[jobs:], tmp)))
                runner_s, bare_s = (float(np.median(t)) for t in zip(*times))
            finally:
                client.close()
                client.forget()
    res = {"runner_s": runner_s, "bare_s": bare_s, "ratio": runner_s / bare_s, "jobs": jobs, "size": size,
           "steps": steps, "rounds": rounds}
    log(f"{size}x{size}, {steps} step(s), {rounds} rounds of {jobs} images each, one host (medians):")
    log(f"  runner     {runner_s:8.3f} s/image")
    log(f"  bare loop  {bare_s:8.3f} s/image")
    log(f"  runner / bare loop: {res['ratio']:.3f}x (target at most 1.05x)")
    return res


def prepare_per_photo(models_dir, checkpoint, controlnet, photos=10, log=print):
    """`experiment run`'s prepare stage on a temporary experiment of `photos` photos of one patient (its ten
    Yanagihara items, one photo each) and a donor; seconds per photo. Returns the figures as a dict."""
    from ..base.photos import write_image
    from ..base.vocabulary import ITEMS
    from ..experiment import config, preflight, stages
    from .pipeline import sample_photos
    patient, donor = sample_photos()
    with tempfile.TemporaryDirectory() as tmp:
        for k, item in enumerate(ITEMS[:photos]):  # ten different photos: shifted a little, as a camera would
            write_image(os.path.join(tmp, "patients", "sample", f"{item}.png"), np.roll(patient, 4 * k, axis=(0, 1)))
        write_image(os.path.join(tmp, "donors", "donor.png"), donor)
        exp_dir = os.path.join(tmp, "exp")
        config.write_template(exp_dir, os.path.join(tmp, "patients"), os.path.join(tmp, "donors"),
                              os.path.join(models_dir, "checkpoints", checkpoint),
                              os.path.join(models_dir, "controlnet", controlnet))
        exp = config.load(exp_dir)
        state = stages.State(exp.root)
        found = preflight.check(exp, state)
        state.claim(preflight.outputs(exp))
        bar = stages.Progress(stages.count_items(exp, found), quiet=True)
        start = time.perf_counter()
        stages.prepare(exp, state, found, bar)
        seconds = time.perf_counter() - start
        bar.close()
    n = sum(len(p) for p in found.values())
    log(f"experiment prepare: {n} photos in {seconds:.2f} s, {seconds / n:.3f} s/photo")
    return {"photos": n, "prepare_s": seconds, "per_photo_s": seconds / n}
