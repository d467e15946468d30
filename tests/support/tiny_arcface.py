"""A tiny ArcFace-shaped ONNX (input Nx3x112x112, 512-d embedding) for tests; no downloads.

Shaped like insightface's recognition models where it matters to the code under test: convs
with BatchNorm, a Flatten, a last fully connected layer (Gemm) followed by a BatchNorm1d on the
512-d embedding (w600k_r50 ends the same way). Weights are random, deterministic per seed; the
embedding is not a trained identity feature, but distinct faces get distinct embeddings.
"""
import os
import warnings

import torch
from torch import nn


def tiny_arcface(seed=0):
    g = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        net = nn.Sequential(
            nn.Conv2d(3, 8, 8, stride=8), nn.BatchNorm2d(8), nn.PReLU(8),   # 112 -> 14
            nn.Conv2d(8, 16, 2, stride=2), nn.BatchNorm2d(16),               # 14 -> 7
            nn.Flatten(), nn.Linear(16 * 7 * 7, 512), nn.BatchNorm1d(512))
        with torch.no_grad():  # non-trivial running statistics, so the BatchNorms do something
            for m in net.modules():
                if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                    m.running_mean.uniform_(-0.1, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
    finally:
        torch.random.set_rng_state(g)
    return net.eval()


def write_tiny_arcface(path, seed=0, dynamic_batch=True):
    """Export the tiny ArcFace to path (the TorchScript exporter: insightface loads its output)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    axes = {"input.1": {0: "None"}, "embedding": {0: "None"}} if dynamic_batch else None
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated, and still what we want
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(tiny_arcface(seed), torch.zeros(1, 3, 112, 112), path, dynamo=False,
                          input_names=["input.1"], output_names=["embedding"], dynamic_axes=axes)
    return path
