"""Dask DataFrame support: the pipeline's stages partition by partition (extra ``plasgate-nb[dask]``).

The public functions (``prepare_audience``, ``render_messages``, ``estimate_cost``, ``Campaign.plan`` and
``send``, ``collect``, ``df.sms``) accept a ``dask.dataframe.DataFrame`` and hand it to this package; dask
is imported only then, so the core install does not need it.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

from ..errors import ConfigError

INSTALL_HINT = "pip install 'plasgate-nb[dask]'"


def is_dask_frame(obj: Any) -> bool:
    """Tell whether ``obj`` is a Dask DataFrame, without importing dask when it was never imported."""
    if "dask.dataframe" not in sys.modules or not type(obj).__module__.startswith("dask"):
        return False
    import dask.dataframe as dd

    return isinstance(obj, dd.DataFrame)


def require_dask() -> ModuleType:
    """Return ``dask.dataframe``, or raise :class:`ConfigError` saying how to install it."""
    try:
        import dask.dataframe as dd
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError(f"Dask DataFrames need dask[dataframe] and distributed: {INSTALL_HINT}") from exc
    return dd
