"""Array arguments: numpy, torch or sequences, checked and converted once."""

from __future__ import annotations

from typing import Any

import numpy as np


def as_numpy(x: Any, name: str) -> np.ndarray:
    """``x`` as a numpy array (a torch tensor through ``.numpy()``, no copy on the CPU)."""
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return x.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    try:
        return np.asarray(x)
    except Exception as e:  # ragged lists and the like
        raise ValueError(f"{name}: not an array ({e})") from None


def float64(x: Any, name: str, ndim: int | None = None) -> np.ndarray:
    """``x`` as a C-contiguous float64 array, with ``ndim`` dimensions when given."""
    a = as_numpy(x, name)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.float64)
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    return a


def same_length(**arrays: np.ndarray) -> int:
    """The common first dimension of ``arrays``, or a ``ValueError`` naming them."""
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise ValueError(f"inconsistent numbers of samples: {described}")
    return next(iter(lengths.values()))
