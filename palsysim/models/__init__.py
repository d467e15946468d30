"""Model files: the catalog (what the pack can use, where it goes, its pinned digest), status
checks, and downloads that run only on an explicit `python -m palsysim models --fetch`.

The download code (palsysim.models.fetch) is not imported here: ComfyUI loads this package for its
missing-model messages, and what the host loads carries no network code."""
from .catalog import (MODELS, TORCH_HUB, Model, by_key, digest_state, fetch_hint, find_model, missing_hint, model_dirs,
                      sha256_of, status, target)

__all__ = ["MODELS", "TORCH_HUB", "Model", "by_key", "digest_state", "fetch_hint", "find_model", "missing_hint",
           "model_dirs", "sha256_of", "status", "target"]
