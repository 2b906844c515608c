"""Weights and features: ``load_checkpoint``, ``import_weights``, ``features``."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Union

from . import _native

PathLike = Union[str, "os.PathLike[str]"]


def load_checkpoint(path: PathLike) -> Dict[str, Any]:
    """Every tensor of a checkpoint, as ``{name: torch.Tensor}``.

    Reads ``torch.save`` zip archives, legacy pickles, PyTorch Lightning
    ``.ckpt`` files and safetensors without executing anything: a pickle is
    read as data by cxrlearn's own reader, so a file that would run code
    under ``torch.load`` is refused or read, never run. Nested dicts are
    flattened to dotted names (``state_dict.encoder.conv1.weight``).
    """
    return _native.load_checkpoint(os.fspath(path))


def import_weights(model: str, checkpoint: PathLike, *, return_ignored: bool = False) -> Any:
    """A released checkpoint mapped onto registry ``model``'s names.

    The names are those of the model's source implementation (torchvision for
    the ResNets and DenseNets, OpenAI CLIP for CheXzero, Hugging Face for
    RAD-DINO and DINOv2), and the mapping is proved by a strict load into the
    architecture, so ``torchvision.models.resnet50().load_state_dict(sd,
    strict=False)`` misses only the classifier head. With ``return_ignored``,
    also the ``(checkpoint key, reason)`` pairs left out on purpose.
    """
    tensors, ignored = _native.import_weights(model, os.fspath(checkpoint))
    return (tensors, ignored) if return_ignored else tensors


def features(
    model: str,
    store: Any,
    split: Optional[str] = None,
    *,
    checkpoint: Optional[PathLike] = None,
    batch_size: int = 64,
    device: str = "cpu",
    normalization: str = "model",
    precision: str = "fp32",
    pooling: Optional[str] = None,
    cache: Optional[PathLike] = None,
) -> Any:
    """Frozen features ``float32 [n, dim]`` of ``split`` (every image, in store
    order, for ``None``), computed as ``cxrlearn features`` computes them.

    ``model`` is a registry name (with ``checkpoint``), ``scratch:ARCH``,
    ``hf:DIR``, ``open_clip:DIR`` or a file cxrlearn wrote. ``cache`` is a
    features directory in the CLI's format: reused when it holds features of
    this model, store and setting, filled (all splits) when absent or empty.

    >>> f = cxrlearn.features("mococxr", store, "train",
    ...                       checkpoint="r8w-00001.pth.tar")  # doctest: +SKIP
    """
    from ._store import Store

    native = store._native if isinstance(store, Store) else Store(store)._native
    return _native.features(
        model,
        native,
        split,
        checkpoint=None if checkpoint is None else os.fspath(checkpoint),
        batch_size=int(batch_size),
        device=device,
        normalization=normalization,
        precision=precision,
        pooling=pooling,
        cache=None if cache is None else os.fspath(cache),
    )
