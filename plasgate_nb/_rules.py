"""Rows a campaign leaves out at send time, and why: the A/B holdout, the suppression list, the frequency cap.

Pure functions over the campaign's ledger rows; :class:`~plasgate_nb.Campaign` records the verdicts in the
ledger (states ``holdout``, ``suppressed``, ``capped`` with their reasons) so ``collect`` and the CLI
show them, and re-evaluates them on every send: a number that opted back in is sent to next time.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from ._keys import HOLDOUT
from .audience import suppression_reason
from .ledger import Ledger
from .pacing import PHNOM_PENH, FrequencyCap

__all__ = ["capped", "holdout_keys", "suppressed"]

_DAY = "%Y-%m-%d"


def holdout_keys(df: pd.DataFrame, keys: pd.Series, *, column: str = "variant") -> set[str]:
    """Keys of the rows in the A/B holdout (``column`` equals ``"holdout"``, as assign_variants sets it)."""
    if column not in df.columns:
        return set()
    held = df[column].astype("string").eq(HOLDOUT).fillna(False).to_numpy()
    return set(keys.to_numpy()[held].tolist())


def suppressed(rows: pd.DataFrame, ledger: Ledger) -> dict[str, tuple[str, str]]:
    """``{key: ("suppressed", reason)}`` for rows whose number is on the ledger's suppression list."""
    listed = ledger.suppressions()
    if listed.empty or rows.empty:
        return {}
    by_number = listed.drop_duplicates("msisdn", keep="last").set_index("msisdn")
    hit = rows[rows["msisdn"].isin(by_number.index)]
    reasons = {number: suppression_reason(by_number.loc[number]) for number in set(hit["msisdn"])}
    return {str(k): ("suppressed", reasons[m]) for k, m in zip(hit["message_key"], hit["msisdn"], strict=True)}


def capped(rows: pd.DataFrame, ledger: Ledger, cap: FrequencyCap, now: datetime) -> dict[str, tuple[str, str]]:
    """``{key: ("capped", reason)}`` for rows whose number already had ``cap.messages`` accepted messages
    (any campaign of the ledger) within ``cap.window`` before ``now``."""
    if rows.empty:
        return {}
    recent = ledger.accepted_since(now - cap.window, numbers=rows["msisdn"].dropna().unique())
    if recent.empty:
        return {}
    dates = recent.groupby("msisdn")["submitted_at"].agg(list)
    over = dates[dates.map(len) >= cap.messages]
    hit = rows[rows["msisdn"].isin(over.index)]
    out = {}
    for key, msisdn in zip(hit["message_key"], hit["msisdn"], strict=True):
        when = ", ".join(t.tz_convert(PHNOM_PENH).strftime(_DAY) for t in over[msisdn])
        out[str(key)] = ("capped", f"frequency cap {cap}: already had {len(over[msisdn])} message(s) ({when})")
    return out
