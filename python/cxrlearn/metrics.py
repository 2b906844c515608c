"""Metrics on arrays: ROC AUC, its bootstrap interval, DeLong's test.

Inputs are numpy arrays, torch tensors or sequences; targets are 0 or 1.

>>> from cxrlearn import metrics
>>> metrics.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
0.75
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from . import _native
from ._arrays import float64, same_length


def roc_auc(y_true: Any, y_score: Any, sample_weight: Optional[Any] = None) -> float:
    """Area under the ROC curve, ties counted one half (scikit-learn's
    ``roc_auc_score`` for binary targets), with optional non-negative weights.
    Raises ``ValueError`` when ``y_true`` has one class."""
    t = float64(y_true, "y_true", 1)
    s = float64(y_score, "y_score", 1)
    arrays = {"y_true": t, "y_score": s}
    w = None
    if sample_weight is not None:
        w = float64(sample_weight, "sample_weight", 1)
        arrays["sample_weight"] = w
    same_length(**arrays)
    return _native.roc_auc(t.tobytes(), s.tobytes(), None if w is None else w.tobytes())


def bootstrap(
    y_true: Any,
    y_score: Any,
    *,
    groups: Optional[Any] = None,
    n_replicates: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    resample: str = "auto",
) -> Dict[str, Any]:
    """The AUC and its percentile bootstrap interval.

    ``groups`` gives each sample's patient: a replicate then draws patients
    with all their images (``resample="auto"`` or ``"patient"``), the unit that
    is independent when patients have several films. Returns ``auc``, ``ci``
    (low, high), ``resample`` (the unit used), ``n_clusters`` (independent
    units) and ``n_valid_replicates`` (replicates with both classes). The
    numbers are those of :func:`cxrlearn.evaluate` on the same data.
    """
    from ._evaluate import evaluate

    t = float64(y_true, "y_true", 1)
    s = float64(y_score, "y_score", 1)
    same_length(y_true=t, y_score=s)
    r = evaluate(
        (t, s),
        labels=["y"],
        patient_ids=None if groups is None else list(groups),
        bootstrap=n_replicates,
        seed=seed,
        confidence=confidence,
        resample=resample,
    )
    lab = r["labels"][0]
    if lab["auc"] is None:
        raise ValueError(f"the ROC AUC is not defined: {lab.get('reason', 'one class')}")
    return {
        "auc": lab["auc"],
        "ci": None if lab["ci"] is None else tuple(lab["ci"]),
        "resample": r["resample"],
        "n_clusters": r["n_clusters"],
        "n_valid_replicates": lab["n_valid_replicates"],
    }


def delong(y_true: Any, score_a: Any, score_b: Any) -> Dict[str, float]:
    """DeLong's test of two models' AUCs on the same samples (samples as
    independent): ``auc_a``, ``auc_b``, ``variance`` of the difference, ``z``,
    two-sided ``p_value``."""
    t = float64(y_true, "y_true", 1)
    a = float64(score_a, "score_a", 1)
    b = float64(score_b, "score_b", 1)
    same_length(y_true=t, score_a=a, score_b=b)
    return dict(_native.delong(t.tobytes(), a.tobytes(), b.tobytes()))


__all__ = ["bootstrap", "delong", "roc_auc"]
