"""Model files: the catalog (what the pack can use, where it goes, its pinned digest), status
checks, and downloads that run only on an explicit `python -m palsysim models --fetch`."""
from .catalog import (MODELS, TORCH_HUB, Model, by_key, fetch_hint, find_model, missing_hint, model_dirs, sha256_of,
                      status, target)
from .fetch import FetchError, Unreachable, fetch, manual_download_message

__all__ = ["MODELS", "TORCH_HUB", "Model", "by_key", "fetch_hint", "find_model", "missing_hint", "model_dirs", "sha256_of",
           "status", "target", "FetchError", "Unreachable", "fetch", "manual_download_message"]
