"""``evaluate``: what ``cxrlearn evaluate`` writes as ``evaluation.json``."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native
from ._arrays import float64, same_length

Predictions = Union[str, "os.PathLike[str]", Any, Tuple[Any, Any]]


class Evaluation(Mapping):
    """The content of ``evaluation.json``, as a read-only mapping.

    Keys as in the file: ``labels`` (one dict per label: ``auc``, ``ci``,
    ``n_pos``, ...), ``macro``, ``resample`` (the unit the bootstrap
    resampled: ``"patient"`` or ``"image"``), ``n_clusters``, and with a
    baseline the paired ``delta``, ``delta_ci`` and p-values.
    :meth:`to_frame` gives one row per label plus ``macro``.
    """

    def __init__(self, data: Dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        m = self._data["macro"]
        auc = "n/a" if m["auc"] is None else f"{m['auc']:.4f}"
        return (
            f"Evaluation(macro AUC {auc}, {len(self._data['labels'])} labels, "
            f"{self._data['n_images']} images, resampling {self._data['resample']})"
        )

    def to_dict(self) -> Dict[str, Any]:
        """A deep copy as plain dicts and lists (``json.dump`` writes ``evaluation.json``)."""
        return json.loads(json.dumps(self._data))

    def to_frame(self) -> Any:
        """One row per label and a last row ``macro``: AUC, interval, counts and, with a
        baseline, the paired comparison. Needs pandas."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Evaluation.to_frame needs pandas (pip install pandas)") from None
        rows = []
        for lab in self._data["labels"]:
            row = {k: v for k, v in lab.items() if not isinstance(v, (dict, list))}
            row["ci_low"], row["ci_high"] = lab["ci"] if lab.get("ci") else (None, None)
            if lab.get("delta_ci"):
                row["delta_ci_low"], row["delta_ci_high"] = lab["delta_ci"]
            rows.append(row)
        m = self._data["macro"]
        macro = {k: v for k, v in m.items() if not isinstance(v, (dict, list))}
        macro["label"] = "macro"
        macro["ci_low"], macro["ci_high"] = m["ci"] if m.get("ci") else (None, None)
        if m.get("delta_ci"):
            macro["delta_ci_low"], macro["delta_ci_high"] = m["delta_ci"]
        rows.append(macro)
        return pd.DataFrame(rows).set_index("label")


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


def _source(
    x: Predictions,
    labels: Optional[Sequence[str]],
    ids: Optional[Sequence[Any]],
    patient_ids: Optional[Sequence[Any]],
    columns: Optional[Dict[str, Sequence[Any]]],
    what: str,
) -> Any:
    if isinstance(x, (str, os.PathLike)):
        return _native.NativeSource.path(os.fspath(x))
    try:
        import pandas as pd

        if isinstance(x, pd.DataFrame):
            missing = [c for c in ("id", "label", "target", "score") if c not in x.columns]
            if missing:
                raise ValueError(
                    f"{what}: a DataFrame in the long format needs columns id, label, "
                    f"target, score (missing: {', '.join(missing)})"
                )
            csv = x.to_csv(index=False, float_format="%.17g").encode()
            return _native.NativeSource.csv(f"<{what} DataFrame>", csv)
    except ImportError:
        pass
    if isinstance(x, tuple) and len(x) == 2:
        y_true = float64(x[0], f"{what} targets")
        y_score = float64(x[1], f"{what} scores")
        if y_true.ndim == 1:
            y_true, y_score = y_true[:, None], y_score.reshape(len(y_score), -1)
        if y_true.ndim != 2 or y_true.shape != y_score.shape:
            raise ValueError(
                f"{what}: targets and scores must have the same shape [n] or [n, k], "
                f"got {y_true.shape} and {y_score.shape}"
            )
        n, k = y_true.shape
        names = list(labels) if labels is not None else [f"label{j}" for j in range(k)]
        if len(names) != k:
            raise ValueError(f"{what}: {len(names)} labels for {k} score columns")
        image_ids = [str(i) for i in (ids if ids is not None else range(n))]
        patients = None if patient_ids is None else [str(p) for p in patient_ids]
        lengths = {"targets": np.empty(n), "ids": np.empty(len(image_ids))}
        if patients is not None:
            lengths["patient_ids"] = np.empty(len(patients))
        attributes = {}
        for column, values in (columns or {}).items():
            attributes[column] = [None if _missing(v) else str(v) for v in values]
            lengths[column] = np.empty(len(attributes[column]))
        same_length(**lengths)
        return _native.NativeSource.arrays(
            f"<{what} arrays>", image_ids, names, y_true.tobytes(), y_score.tobytes(), patients,
            attributes,
        )
    raise ValueError(
        f"{what} must be a CSV path, a pandas DataFrame (columns id, label, target, score) "
        f"or a tuple (targets, scores) of arrays, got {type(x).__name__}"
    )


def evaluate(
    predictions: Predictions,
    baseline: Optional[Predictions] = None,
    *,
    labels: Optional[Sequence[str]] = None,
    ids: Optional[Sequence[Any]] = None,
    patient_ids: Optional[Sequence[Any]] = None,
    columns: Optional[Dict[str, Sequence[Any]]] = None,
    bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    resample: str = "auto",
    data: Optional[Union[str, "os.PathLike[str]"]] = None,
    subgroups: Optional[Sequence[str]] = None,
    age_bins: Optional[Sequence[float]] = None,
    subgroup_min: int = 5,
    threshold_from: Optional[Predictions] = None,
    calibrate_on: Optional[Predictions] = None,
    simultaneous: bool = False,
) -> Evaluation:
    """``cxrlearn evaluate``: AUC per label and macro, percentile bootstrap intervals,
    paired comparison against ``baseline``, calibration and subgroups.

    ``predictions`` (and ``baseline``, ``threshold_from``, ``calibrate_on``) is a
    predictions CSV, a pandas DataFrame in its long format (``id``, ``label``,
    ``target``, ``score``; optional ``patient_id``, ``sex``, ``age``, ``view``,
    ``site``), or a tuple ``(targets, scores)`` of ``[n]`` or ``[n, k]`` arrays
    (targets 1, 0 or NaN) with ``labels``, ``ids``, ``patient_ids`` and per-image
    ``columns`` for subgroups (``{"sex": [...], "age": [...]}``, None unknown).

    The bootstrap resamples patients with all their images whenever patient ids
    are known (``resample="auto"``), images otherwise; the result's
    ``resample`` says which. Same inputs and seed, same numbers as the CLI.

    >>> r = cxrlearn.evaluate((y_true, y_score), labels=["Effusion"],
    ...                       patient_ids=patients, bootstrap=2000)  # doctest: +SKIP
    >>> r["labels"][0]["auc"], r["labels"][0]["ci"], r["resample"]  # doctest: +SKIP
    """
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, (int, np.integer)) or bootstrap < 0:
        raise ValueError(f"bootstrap must be a number of replicates >= 0, got {bootstrap!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")

    def src(x: Optional[Predictions], what: str) -> Any:
        return None if x is None else _source(x, labels, ids, patient_ids, columns, what)

    text = _native.evaluate(
        src(predictions, "predictions"),
        baseline=src(baseline, "baseline"),
        bootstrap=int(bootstrap),
        seed=int(seed),
        confidence=float(confidence),
        resample=resample,
        data=None if data is None else os.fspath(data),
        subgroups=None if subgroups is None else list(subgroups),
        age_bins=None if age_bins is None else [float(a) for a in age_bins],
        subgroup_min=int(subgroup_min),
        threshold_from=src(threshold_from, "threshold_from"),
        calibrate_on=src(calibrate_on, "calibrate_on"),
        simultaneous=bool(simultaneous),
    )
    return Evaluation(json.loads(text))
