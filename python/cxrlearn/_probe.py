"""``LogisticProbe``: the linear probe of ``cxrlearn probe``, scikit-learn shaped."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from . import _native
from ._arrays import as_numpy


def _tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
    else:
        a = as_numpy(x, name)
        if a.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(a))
    if not t.is_floating_point():
        t = t.to(torch.float64)
    elif t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float32)
    return t.contiguous()


class LogisticProbe:
    """L2-regularised logistic regression on frozen features, every label at once.

    The probe of ``cxrlearn probe`` and the original cxrlearn (``C=0.0327``,
    raw features), with scikit-learn's shape: :meth:`fit` then
    :meth:`predict_proba`, ``coef_`` and ``intercept_``. Each label (column of
    ``Y``) is its own binary problem, fitted together by one batched L-BFGS;
    NaN in ``Y`` marks an unknown target, left out of that label's loss. The
    objective is scikit-learn's ``LogisticRegression(C=C)``: the same
    solution to the tolerance (float64 inputs solve in float64 throughout).
    ``multinomial=True`` fits one softmax over one-hot ``Y`` instead.

    >>> probe = cxrlearn.LogisticProbe(C=0.0327).fit(X_train, Y_train)  # doctest: +SKIP
    >>> scores = probe.predict_proba(X_test)                            # doctest: +SKIP
    """

    def __init__(
        self,
        C: float = 0.0327,
        *,
        standardize: bool = False,
        max_iter: int = 500,
        tol: float = 1e-4,
        multinomial: bool = False,
    ) -> None:
        self.C = C
        self.standardize = standardize
        self.max_iter = max_iter
        self.tol = tol
        self.multinomial = multinomial
        self._fitted: Optional[Any] = None
        self._one_column = False

    def fit(self, X: Any, Y: Any, labels: Optional[Sequence[str]] = None) -> "LogisticProbe":
        """Fits on features ``X [n, d]`` and targets ``Y [n]`` or ``[n, k]`` (1, 0, NaN)."""
        x = _tensor(X, "X")
        y = _tensor(Y, "Y").to(torch.float64)
        self._one_column = y.dim() == 1
        if self._one_column:
            y = y[:, None]
        if x.dim() != 2:
            raise ValueError(f"X must be 2-D (samples x features), got shape {tuple(x.shape)}")
        if y.dim() != 2 or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"X has {x.shape[0]} samples but Y has shape {tuple(y.shape)}"
            )
        names: List[str] = (
            [str(l) for l in labels] if labels is not None else [f"label{j}" for j in range(y.shape[1])]
        )
        if not (isinstance(self.C, (int, float)) and self.C > 0):
            raise ValueError(f"C must be a positive number, got {self.C!r}")
        self._fitted = _native.NativeProbe.fit(
            x, y, names, bool(self.multinomial), float(self.C), int(self.max_iter),
            float(self.tol), bool(self.standardize),
        )
        t = self._fitted.tensors()
        self.coef_ = t["coef"].numpy()
        self.intercept_ = t["intercept"].numpy()
        if "mean" in t:
            self.mean_ = t["mean"].numpy()
            self.scale_ = t["scale"].numpy()
        report = self._fitted.report()
        self.n_iter_ = np.asarray(report["iterations"])
        self.converged_ = np.asarray(report["converged"])
        return self

    def predict_proba(self, X: Any) -> Any:
        """Probabilities: ``[n, k]`` positive probabilities per label (``[n, 2]``,
        negative then positive, when fitted on a 1-D ``Y``, as scikit-learn).
        A torch tensor in gives a tensor out, anything else a numpy array."""
        if self._fitted is None:
            raise ValueError("this LogisticProbe is not fitted yet: call fit(X, Y) first")
        p = self._fitted.predict_proba(_tensor(X, "X"))
        if self._one_column and not self.multinomial:
            p = torch.cat([1 - p, p], dim=1)
        return p if isinstance(X, torch.Tensor) else p.numpy()

    def get_params(self, deep: bool = True) -> Dict[str, Any]:
        """The constructor's settings (scikit-learn's estimator protocol)."""
        return {
            "C": self.C,
            "standardize": self.standardize,
            "max_iter": self.max_iter,
            "tol": self.tol,
            "multinomial": self.multinomial,
        }

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"LogisticProbe({params})"
