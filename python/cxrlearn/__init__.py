"""cxrlearn: chest X-ray representation learning on a compiled engine.

The Python face of the cxrlearn command-line tool: the same Rust code, the
same numbers, without files in between.

>>> import cxrlearn
>>> store = cxrlearn.Store("runs/demo/data/store-site0")      # doctest: +SKIP
>>> store.images().shape                                      # doctest: +SKIP
(1830, 224, 224)
>>> result = cxrlearn.evaluate("predictions-test.csv")        # doctest: +SKIP
>>> result["macro"]["auc"], result["macro"]["ci"]             # doctest: +SKIP

- Data: :class:`Store`, :func:`convert`, :func:`phantom`.
- Metrics: :mod:`cxrlearn.metrics` (``roc_auc``, ``bootstrap``, ``delong``)
  and :func:`evaluate` (``evaluation.json`` as a dict-like
  :class:`Evaluation`).
- Models and weights: :mod:`cxrlearn.models`, :func:`load_checkpoint` (a
  ``torch.load`` that never executes a pickle), :func:`import_weights`.
- Compute: :func:`features`, :class:`LogisticProbe`.

Errors: a bad argument raises ``ValueError``, a missing file
``FileNotFoundError``, anything else :class:`CxrError`, each with the
message the command-line tool prints.
"""

from __future__ import annotations

#: The torch release whose libtorch the compiled engine links.
TORCH_VERSION = "2.13.0"


def _require_torch() -> None:
    # Checked before the extension loads: against another libtorch its
    # symbols would not resolve (an obscure ImportError) or, worse, would.
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"cxrlearn needs torch=={TORCH_VERSION}, which is not installed "
            f"(pip install torch=={TORCH_VERSION})"
        ) from None
    found = torch.__version__.split("+")[0]
    if found != TORCH_VERSION:
        raise ImportError(
            f"cxrlearn needs torch=={TORCH_VERSION} (its compiled engine links that "
            f"libtorch), but this environment has torch {torch.__version__} "
            f"(pip install torch=={TORCH_VERSION})"
        )


_require_torch()

from . import _native  # noqa: E402
from ._native import CxrError  # noqa: E402
from ._store import Store, StoreDataset, convert, phantom  # noqa: E402
from ._evaluate import Evaluation, evaluate  # noqa: E402
from ._models import features, import_weights, load_checkpoint  # noqa: E402
from ._probe import LogisticProbe  # noqa: E402
from . import metrics, models  # noqa: E402

__version__: str = _native.__version__

__all__ = [
    "CxrError",
    "Evaluation",
    "LogisticProbe",
    "Store",
    "StoreDataset",
    "TORCH_VERSION",
    "convert",
    "evaluate",
    "features",
    "import_weights",
    "load_checkpoint",
    "metrics",
    "models",
    "phantom",
]
