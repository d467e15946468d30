"""The one way every command makes images: a workflow file run over a patients layout on one or more
ComfyUI servers (`run`, the experiment's stages, the demo and `bench generate` all come through here)."""
import os

from .batch import run_batch
from .client import Client
from .plan import prepare_graph


def generate(urls, workflow, patients, out, overrides=(), bypasses=(), edit=None, name=None, **batch):
    """Run `workflow` (an API- or UI-format file) over `patients` ({patient: {source: photo path}}, as
    layout.find_patients gives) on the servers at `urls`, writing images and the manifest under `out`.

    overrides, bypasses: as `run --set NODE.INPUT=VALUE` and `--bypass NODE`; edit(graph, object_info)
    changes the checked API graph further before any job. batch: run_batch's options (identities, seeds,
    donor, settings, progress, keep_uploads, reconnect_s, expressions, as_written, uploads). name: the workflow's
    name in the manifest (default: the file's name). Returns run_batch's summary."""
    clients = [Client(url) for url in urls]
    graph = prepare_graph(workflow, clients[0], overrides, bypasses)
    if edit:
        edit(graph, clients[0].object_info)
    return run_batch(clients, graph, patients, out, name=name or os.path.basename(workflow), **batch)
