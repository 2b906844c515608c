"""Dataset stores: ``Store``, its ``torch`` dataset, ``convert`` and ``phantom``."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch.utils.data as _tud

from . import _native

PathLike = Union[str, "os.PathLike[str]"]


class Store:
    """A dataset store written by ``cxrlearn convert`` (or :func:`convert`).

    Opening it runs the same checks as the command-line tool (manifest
    labels, split counts, shard headers); a directory that is not a store
    raises with the tool's message.

    >>> store = cxrlearn.Store("runs/demo/data/store-site0")   # doctest: +SKIP
    >>> store.name, store.task, store.labels[:2]              # doctest: +SKIP
    ('phantom', 'multilabel', ['Atelectasis', 'Cardiomegaly'])
    >>> x = store.images()          # the memory map itself   # doctest: +SKIP
    >>> y = store.targets("test")   # float32, NaN unknown    # doctest: +SKIP
    """

    def __init__(self, path: PathLike) -> None:
        self.path: str = os.fspath(path)
        self._native = _native.NativeStore(self.path)
        #: ``dataset.json``, parsed.
        self.meta: Dict[str, Any] = json.loads(self._native.meta_json())
        self._maps: Optional[List[np.ndarray]] = None

    def __repr__(self) -> str:
        return f"Store({self.path!r}: {len(self)} images, {len(self.labels)} labels)"

    def __len__(self) -> int:
        return len(self._native)

    @property
    def name(self) -> str:
        """The dataset's name."""
        return self.meta["name"]

    @property
    def task(self) -> str:
        """``"binary"``, ``"multilabel"`` or ``"multiclass"``."""
        return self.meta["task"]

    @property
    def labels(self) -> List[str]:
        """Label names (multi-class: class names), in target column order."""
        return list(self.meta["labels"])

    @property
    def splits(self) -> Dict[str, int]:
        """Images per split."""
        return dict(self.meta["splits"])

    @property
    def image_size(self) -> Tuple[int, int]:
        """``(H, W)`` of the stored images."""
        h, w = self.meta["image_size"]
        return (h, w)

    def indices(self, split: Optional[str] = None) -> np.ndarray:
        """Store rows of ``split`` (``"train"``, ``"val"``, ``"test"``; all for ``None``)."""
        return np.asarray(self._native.indices(split), dtype=np.int64)

    def shard_images(self) -> List[np.ndarray]:
        """Each shard's images as a read-only ``uint8 [n, H, W]`` memory map (never a copy)."""
        if self._maps is None:
            h, w = self.image_size
            self._maps = [
                np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=(n, h, w))
                for path, offset, n in self._native.shard_layout()
            ]
        return list(self._maps)

    def images(self, split: Optional[str] = None) -> np.ndarray:
        """Images ``uint8 [n, H, W]`` of ``split`` (all for ``None``), in store order.

        The result is the memory map itself, read-only and without a copy,
        whenever the rows are one block of one shard: the whole store when it
        has one shard (stores of up to ``shard_len`` images), or a split whose
        rows are contiguous. Otherwise (several shards, or a split whose
        patients are interleaved with the others' in store order, as
        ``convert`` writes them) the rows are gathered into a new read-only
        array; :meth:`shard_images` always gives the maps.
        """
        self._native.indices(split)  # a bad split name raises here
        maps = self.shard_images()
        if not maps:
            raise _native.CxrError(
                f"store {self.path} was converted with labels only: it holds no images"
            )
        rows = self.indices(split)
        starts = np.cumsum([0] + [len(m) for m in maps])
        if len(rows) > 0:
            first, last = int(rows[0]), int(rows[-1])
            shard = int(np.searchsorted(starts, first, side="right") - 1)
            if last - first + 1 == len(rows) and last < starts[shard + 1]:
                a, b = first - starts[shard], last - starts[shard] + 1
                return maps[shard][a:b]
        h, w = self.image_size
        out = np.empty((len(rows), h, w), dtype=np.uint8)
        shard_of = np.searchsorted(starts, rows, side="right") - 1
        for s, m in enumerate(maps):
            pick = shard_of == s
            if pick.any():
                out[pick] = m[rows[pick] - starts[s]]
        out.flags.writeable = False
        return out

    def targets(self, split: Optional[str] = None) -> np.ndarray:
        """Targets ``float32 [n, k]`` of ``split``: 1, 0, NaN where unknown (multi-class: one-hot)."""
        raw = self._native.targets(split)
        k = len(self.labels)
        return np.frombuffer(raw, dtype="<f4").reshape(-1, k).copy()

    def manifest(self, split: Optional[str] = None) -> Any:
        """``manifest.csv`` for the rows of ``split``: a pandas DataFrame, or without
        pandas a dict of columns (label columns float, NaN unknown)."""
        columns = self._native.columns(split)
        for name, values in columns.items():
            if values and isinstance(values[0], float):
                columns[name] = np.asarray(values, dtype=np.float32)
        try:
            import pandas as pd
        except ImportError:
            return columns
        return pd.DataFrame(columns)

    def torch_dataset(
        self,
        split: Optional[str] = None,
        *,
        model: Optional[str] = None,
        normalization: str = "model",
        size: Optional[int] = None,
    ) -> "StoreDataset":
        """A ``torch.utils.data.Dataset`` of ``(image, target)`` for the rows of ``split``.

        Each image is prepared by the function ``cxrlearn features`` uses:
        scaled to 0-1, resized bilinearly to the model's side, replicated to
        its channels, normalised with its statistics (``model=None``:
        ImageNet's at 224 px; ``normalization="clip"`` or ``"imagenet"``
        overrides the statistics, ``size`` the side). Targets are
        ``float32 [k]``, NaN where unknown. Works with a ``DataLoader`` and
        any number of workers (each opens the store itself).
        """
        prep = dict(_native.preprocessing(model, normalization))
        if size is not None:
            prep["size"] = int(size)
            prep["crop_from"] = None
        return StoreDataset(self.path, self.indices(split), prep, self.targets(split))


class StoreDataset(_tud.Dataset):
    """Items of a store prepared for a model (see :meth:`Store.torch_dataset`)."""

    def __init__(
        self, path: str, rows: np.ndarray, prep: Dict[str, Any], targets: np.ndarray
    ) -> None:
        self.path = path
        self.rows = rows
        self.prep = prep
        self.targets = targets
        self._native: Optional[Any] = None

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self) -> Dict[str, Any]:
        # Each worker process opens the store (memory maps are per process).
        state = dict(self.__dict__)
        state["_native"] = None
        return state

    def _store(self) -> Any:
        if self._native is None:
            self._native = _native.NativeStore(self.path)
        return self._native

    def _prepare(self, positions: Sequence[int]) -> Any:
        import torch

        n = len(self.rows)
        for p in positions:
            if not -n <= p < n:
                raise IndexError(f"index {p} is out of range for {n} items")
        rows = [int(self.rows[p]) for p in positions]
        p = self.prep
        x = self._store().prepare(
            rows, p["size"], p["channels"], p["mean"], p["std"], p["crop_from"],
            p["internal_resize"],
        )
        y = torch.from_numpy(self.targets[list(positions)])
        return x, y

    def __getitem__(self, i: int) -> Tuple[Any, Any]:
        x, y = self._prepare([int(i)])
        return x[0], y[0]

    def __getitems__(self, indices: Sequence[int]) -> List[Tuple[Any, Any]]:
        # DataLoader's batched fetch: one call prepares the whole batch.
        x, y = self._prepare([int(i) for i in indices])
        return [(x[j], y[j]) for j in range(len(indices))]


def convert(out: PathLike, **options: Any) -> Store:
    """``cxrlearn convert`` with its options as keyword arguments; returns the :class:`Store`.

    >>> cxrlearn.convert("stores/nih", preset="nih", root="/data/nih")   # doctest: +SKIP

    Options: ``preset`` and ``root``, or ``csv``, ``image_root``,
    ``path_column``, ``label_columns``, ``task``, ``patient_column``,
    ``split_column``; then ``force``, ``labels_only``, ``size`` (224),
    ``resize`` (``"squash"``), ``seed``, ``splits`` (``"70,10,20"``),
    ``few_shot``, ``threads``, ``max_pixels``, ``quiet`` (True).
    """
    return Store(_native.convert(os.fspath(out), **_paths(options)))


def phantom(
    out: PathLike,
    *,
    store: Optional[PathLike] = None,
    store_size: int = 224,
    splits: Optional[str] = None,
    **options: Any,
) -> Store:
    """``cxrlearn phantom`` then ``convert --preset phantom``; returns the :class:`Store`.

    Writes the synthetic raw data set to ``out`` and its store to ``store``
    (default: ``out`` + ``"-store"``) at ``store_size`` pixels. Options of
    ``cxrlearn phantom``: ``patients`` (200), ``size`` (256), ``sites`` (2),
    ``first_site``, ``seed``, ``prevalence`` (``"nih"``), ``set`` (a dict
    finding -> prevalence), ``cooccurrence``, ``max_studies``, ``force``.
    """
    out = os.fspath(out)
    _native.phantom(out, **options)
    target = os.fspath(store) if store is not None else out.rstrip("/") + "-store"
    return convert(
        target,
        preset="phantom",
        root=out,
        size=store_size,
        seed=options.get("seed", 0),
        splits=splits,
        force=options.get("force", False),
    )


def _paths(options: Dict[str, Any]) -> Dict[str, Any]:
    return {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in options.items()}
