"""Closed-form outputs of the test models (tests/models/README.md, scripts/gen_models.py)."""

from __future__ import annotations

import numpy as np

LINEAR_W = np.array([[0.1 * (3 * i + j + 1) for j in range(3)] for i in range(4)], dtype=np.float64)
LINEAR_B = np.array([0.5, -0.5, 1.0])


def linear(x: np.ndarray) -> np.ndarray:
    """``linear``: y = x·W + b."""
    return x.astype(np.float64) @ LINEAR_W + LINEAR_B


def mlp_small(x: np.ndarray) -> np.ndarray:
    """``mlp_small``: the 64-256-256-10 ReLU MLP whose weights scripts/gen_models.py draws from
    ``numpy.random.default_rng(0)``."""
    rng = np.random.default_rng(0)
    h = x.astype(np.float32)
    sizes = [64, 256, 256, 10]
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)
        b = (rng.standard_normal(fan_out) * 0.01).astype(np.float32)
        h = h @ w + b
        if i < len(sizes) - 2:
            h = np.maximum(h, 0)
    return h
