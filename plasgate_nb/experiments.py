"""A/B experiments: assign variants deterministically with a holdout, then compare their rates.

``assign_variants`` gives each row a variant from a hash of its key and a seed, so the assignment is the
same under reruns, row order and added rows; a ``holdout`` share gets no message at all.
``compare_variants`` counts a 0/1 outcome per variant (delivered, replied, or a conversion column the
analyst joins in) with Wilson intervals, and each variant's difference from a reference (and from the
holdout) with Newcombe's hybrid score interval and a two-proportion z-test. ``plot_variants`` draws it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from ._keys import HOLDOUT, key_index
from .errors import ConfigError
from .report import Z95, outcome, wilson_interval

__all__ = ["HOLDOUT", "VariantComparison", "assign_variants", "compare_variants", "plot_variants"]

_SCALE = float(2**64)
_SHOWN = 10


def _unit(seed: str, keys: pd.Index) -> np.ndarray:
    """A uniform number in [0, 1) per key, from BLAKE2b of the seed and the key (stable everywhere)."""
    prefix = seed.encode() + b"\x1f"
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(prefix + str(k).encode(), digest_size=8).digest(), "big") / _SCALE
            for k in keys
        ),
        dtype=float,
        count=len(keys),
    )


def _weights(names: list[str], weights: Mapping[str, float] | Sequence[float] | None) -> np.ndarray:
    """The variants' shares of the non-holdout rows, normalized to sum to 1."""
    if weights is None:
        values = np.ones(len(names))
    elif isinstance(weights, Mapping):
        unknown = sorted(set(weights) - set(names))
        if unknown:
            raise ConfigError(f"weights name variants that do not exist: {unknown}; variants are {names}")
        values = np.array([float(weights.get(n, 0.0)) for n in names])
    else:
        values = np.array([float(w) for w in weights])
        if len(values) != len(names):
            raise ConfigError(f"{len(values)} weights for {len(names)} variants {names}")
    if not np.all(np.isfinite(values)) or (values < 0).any() or values.sum() <= 0:
        raise ConfigError(f"weights must be finite, >= 0 and not all 0; got {values.tolist()}")
    return values / values.sum()


def assign_variants(
    df: pd.DataFrame,
    variants: Mapping[str, Any] | Sequence[str],
    *,
    holdout: float = 0.0,
    key: str | None = None,
    seed: str,
    weights: Mapping[str, float] | Sequence[float] | None = None,
    column: str = "variant",
) -> pd.DataFrame:
    """Return a copy of ``df`` with a ``variant`` column: a variant name per row, or ``"holdout"``.

    ``variants`` is a mapping of variant names to templates (as passed to ``render_messages(...,
    by="variant")``) or a sequence of names. Each row's variant depends only on its message key (the
    ``key`` column, else the index; canonical, as the campaign keys rows) and ``seed``: the same under
    reruns, any row order, and when rows are added. A share ``holdout`` (0 to <1) of rows is held out
    (planned, never sent: the baseline); the rest split by ``weights`` (equal by default).
    """
    names = [str(n) for n in (variants.keys() if isinstance(variants, Mapping) else variants)]
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"variants must be distinct names, at least one; got {names}")
    if HOLDOUT in names:
        raise ConfigError(f"{HOLDOUT!r} is the holdout's name; call the variant something else")
    if not isinstance(seed, str) or not seed:
        raise ConfigError("seed must be a non-empty string (say, the campaign's name)")
    if not (isinstance(holdout, int | float) and math.isfinite(holdout) and 0 <= holdout < 1):
        raise ConfigError(f"holdout must be a share in [0, 1), not {holdout!r}")
    shares = _weights(names, weights)
    u = _unit(seed, key_index(df, key))
    edges = holdout + (1 - holdout) * np.cumsum(shares)
    picked = np.searchsorted(edges, u, side="right").clip(max=len(names) - 1)
    labels = np.array(names, dtype=object)[picked]
    labels[u < holdout] = HOLDOUT
    categories = [*names, HOLDOUT] if holdout > 0 else names
    return df.assign(**{column: pd.Categorical(labels, categories=categories)})


def _successes(results: pd.DataFrame, metric: str, replies: pd.DataFrame | None) -> tuple[pd.Series, pd.Series]:
    """Per row: whether it counts (in the denominator) and whether it succeeded, for ``metric``."""
    if metric == "delivered":
        kinds = outcome(results)
        counted = kinds.isin(["delivered", "failed", "pending"])
        return counted, kinds.eq("delivered")
    if metric == "replied" and "replied" not in results.columns:
        if replies is None or "msisdn" not in results.columns:
            raise ConfigError(
                "metric='replied' needs replies=campaign.replies() (or a 'replied' column) and an 'msisdn' column"
            )
        numbers = set(replies["msisdn"].dropna().astype(str))
        hit = results["msisdn"].astype("string").isin(numbers).fillna(False)
        return pd.Series(True, index=results.index), hit.astype(bool)
    column = "replied" if metric == "replied" else metric
    if column not in results.columns:
        raise ConfigError(
            f"metric {metric!r} is not 'delivered', 'replied' or a column; columns are {list(results.columns)}"
        )
    values = pd.to_numeric(results[column], errors="coerce")
    bad = values.notna() & ~values.isin([0, 1])
    if bad.any():
        raise ConfigError(f"column {column!r} must hold 0/1 (or True/False); rows {results.index[bad].tolist()[:10]}")
    return values.notna(), values.eq(1)


@dataclass(frozen=True)
class VariantComparison:
    """The result of :func:`compare_variants`: per-variant rates and the differences between them.

    ``variants``: one row per variant (``n``, ``successes``, ``rate``, ``ci_low``, ``ci_high``).
    ``differences``: one row per comparison (``variant``, ``reference``, ``difference`` = variant's rate
    minus the reference's, its ``ci_low``/``ci_high``, the z statistic and the two-sided ``p_value``).
    """

    metric: str
    variants: pd.DataFrame
    differences: pd.DataFrame
    confidence: float = 0.95

    def _repr_html_(self) -> str:
        """Both tables, for Jupyter."""
        return (
            f"<b>{self.metric}</b> by variant{self.variants.to_html(float_format='{:.4f}'.format)}"
            f"differences{self.differences.to_html(float_format='{:.4g}'.format)}"
        )


def _z_test(k1: float, n1: float, k2: float, n2: float) -> tuple[float, float]:
    """The pooled two-proportion z statistic and its two-sided p-value (NaN when undefined)."""
    if n1 <= 0 or n2 <= 0:
        return math.nan, math.nan
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return math.nan, math.nan
    z = (k1 / n1 - k2 / n2) / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def _difference(row: pd.Series, ref: pd.Series) -> tuple[float, float, float]:
    """Newcombe's hybrid score interval (method 10) of ``row.rate - ref.rate`` with the difference."""
    d = row["rate"] - ref["rate"]
    low = d - math.sqrt((row["rate"] - row["ci_low"]) ** 2 + (ref["ci_high"] - ref["rate"]) ** 2)
    high = d + math.sqrt((row["ci_high"] - row["rate"]) ** 2 + (ref["rate"] - ref["ci_low"]) ** 2)
    return d, low, high


def _z_for(confidence: float) -> float:
    """The two-sided normal quantile for ``confidence`` (bisection on erfc; no SciPy needed)."""
    if confidence == 0.95:
        return Z95
    target = 1 - confidence
    lo, hi = 0.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if math.erfc(mid / math.sqrt(2)) > target else (lo, mid)
    return (lo + hi) / 2


def compare_variants(
    results: pd.DataFrame,
    metric: str = "delivered",
    *,
    variant: str = "variant",
    reference: str | None = None,
    replies: pd.DataFrame | None = None,
    confidence: float = 0.95,
) -> VariantComparison:
    """Compare a 0/1 outcome across the variants of a collected frame; return a :class:`VariantComparison`.

    ``metric``: ``"delivered"`` (of the messages sent), ``"replied"`` (of every row, holdout included: a
    ``replied`` column, or ``replies=campaign.replies()`` matched on ``msisdn``) or the name of a 0/1
    column (a conversion the analyst joined in; empty cells are left out). Each variant is compared with
    ``reference`` (default: the first variant) and, when there is one, each variant with the holdout.
    """
    if variant not in results.columns:
        raise ConfigError(f"no {variant!r} column: assign_variants() adds it; columns are {list(results.columns)}")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), not {confidence!r}")
    counted, success = _successes(results, metric, replies)
    groups = results[variant].astype("string")
    order = (
        list(results[variant].cat.categories)
        if isinstance(results[variant].dtype, pd.CategoricalDtype)
        else sorted(groups.dropna().unique(), key=lambda v: (v == HOLDOUT, v))
    )
    frame = pd.DataFrame({"variant": groups, "n": counted.astype(int), "successes": (success & counted).astype(int)})
    table = frame.groupby("variant", observed=True).sum().reindex(order, fill_value=0)
    table.index.name = "variant"
    z = _z_for(confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        table["rate"] = (table["successes"] / table["n"].where(table["n"] > 0)).astype(float)
    table["ci_low"], table["ci_high"] = wilson_interval(table["successes"], table["n"], z=z)
    arms = [v for v in order if v != HOLDOUT]
    if not arms:
        raise ConfigError("no variant other than the holdout")
    ref = arms[0] if reference is None else reference
    if ref not in table.index:
        raise ConfigError(f"reference {ref!r} is not a variant; variants are {order}")
    pairs = [(v, ref) for v in arms if v != ref]
    if HOLDOUT in table.index and table.loc[HOLDOUT, "n"] > 0:
        pairs += [(v, HOLDOUT) for v in arms]
    rows = []
    for name, base in pairs:
        a, b = table.loc[name], table.loc[base]
        diff, low, high = _difference(a, b)
        stat, p_value = _z_test(a["successes"], a["n"], b["successes"], b["n"])
        rows.append((name, base, diff, low, high, stat, p_value))
    differences = pd.DataFrame(
        rows, columns=["variant", "reference", "difference", "ci_low", "ci_high", "z", "p_value"]
    )
    return VariantComparison(metric, table, differences, confidence)


def plot_variants(comparison: VariantComparison, *, ax: Axes | None = None) -> Axes:
    """Draw each variant's rate with its confidence interval as a bar chart; return the Axes."""
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(7, 4))
    table = comparison.variants
    rates = table["rate"].to_numpy(dtype=float)
    low = np.nan_to_num(rates - table["ci_low"].to_numpy(dtype=float))
    high = np.nan_to_num(table["ci_high"].to_numpy(dtype=float) - rates)
    colors = ["#9e9e9e" if v == HOLDOUT else "#1565c0" for v in table.index]
    positions = np.arange(len(table))
    ax.bar(positions, np.nan_to_num(rates), yerr=[low, high], capsize=6, color=colors)
    ax.set_xticks(positions, [f"{v}\n(n={n:,})" for v, n in zip(table.index, table["n"], strict=True)])
    ax.set_ylabel(f"{comparison.metric} rate")
    ax.set_ylim(0, min(1.0, max(0.05, float(np.nanmax(table["ci_high"].to_numpy(dtype=float), initial=0)) * 1.15)))
    level = f"{comparison.confidence:.0%}"
    ax.set_title(f"{comparison.metric} rate by variant ({level} Wilson intervals)")
    for pos, rate in zip(positions, rates, strict=True):
        if math.isfinite(rate):
            ax.annotate(
                f"{rate:.1%}", (pos, rate), ha="center", va="bottom", xytext=(14, 2), textcoords="offset points"
            )
    return ax
