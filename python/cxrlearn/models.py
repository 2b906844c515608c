"""The model registry (``cxrlearn models``)."""

from __future__ import annotations

import builtins
import json
from typing import Any, Dict, List

from . import _native


def list() -> List[Dict[str, Any]]:  # noqa: A001 - the registry's list, as timm.list_models
    """Every registered model: ``name``, ``method``, ``description``,
    ``architecture``, ``feature``, ``feature_dim``, ``checkpoint_file``,
    ``preprocessing`` (size, channels, mean, std, ...), ``citation``, ``licence``,
    ``restricted``, ``weights``."""
    return json.loads(_native.models_json())


def names() -> List[str]:
    """The registered names, in display order."""
    return builtins.list(m["name"] for m in list())


__all__ = ["list", "names"]
