"""Shared pytest fixtures. The real ComfyUI host with the pack: see host.py and the `host` fixture."""
import os
import shutil

import pytest

from host import TINY_CHECKPOINT, TINY_CONTROLNET, start_host
from tiny_models import write_tiny_checkpoint, write_tiny_controlnet


@pytest.fixture(scope="session")
def host(tmp_path_factory):
    """A running ComfyUI server with the pack, shared by the whole test session.

    Its models_dir (host.models_dir, or host.model_path(folder, name)) holds checkpoints/
    TINY_CHECKPOINT and controlnet/TINY_CONTROLNET; mediapipe/ and insightface/ start empty.
    Tests may add model files (then call host.refresh_models()); they must not stop the server.
    """
    workdir = str(tmp_path_factory.mktemp("comfyui"))
    models = os.path.join(workdir, "models")
    server = start_host(workdir, wait=False)
    try:
        # Built while the server starts; each file appears whole (written aside, then renamed).
        write_tiny_checkpoint(os.path.join(models, "checkpoints", TINY_CHECKPOINT))
        write_tiny_controlnet(os.path.join(models, "controlnet", TINY_CONTROLNET))
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    yield server
    server.stop()
    # pytest keeps the last few runs' temp folders; the log and outputs are small, the models not.
    shutil.rmtree(models, ignore_errors=True)
