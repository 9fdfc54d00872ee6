"""Delivery charts with matplotlib: each takes a collected frame and ``ax=None`` and returns the Axes.

None calls ``plt.show()``. Without ``ax`` a new figure is made with pyplot (so it shows in Jupyter);
pass ``ax`` (from ``Figure.subplots()``) to draw elsewhere, e.g. in a script without pyplot. Khmer
group names render with a Khmer-capable font (see :mod:`plasgate_nb._fonts`).

Delivery is drawn with the states of :mod:`plasgate_nb._states`: messages awaiting reports show as
``awaiting reports`` (never as a 0% bar), and a campaign sent without asking for delivery reports as
``not requested`` (never 0% delivered).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import PercentFormatter

from . import _fonts
from ._states import AWAITING, ERRBACK, NOT_REQUESTED, is_refusal
from .report import STATUS_PREFIX, _need, delivery_summary, outcome

__all__ = ["plot_delivery_rate", "plot_funnel", "plot_status_breakdown", "plot_time_to_deliver"]

COLORS = {
    "delivered": "#2e7d32",
    "failed": "#c62828",
    "pending": "#f9a825",
    "not_requested": "#b0bec5",
    "uncertain": "#8e24aa",
    "rejected": "#6d4c41",
    "not_sent": "#9e9e9e",
}
LABELS = {
    "delivered": "delivered",
    "failed": "failed (UNDELIV, EXPIRED...)",
    "pending": AWAITING,
    "not_requested": f"delivery reports {NOT_REQUESTED}",
    "uncertain": "uncertain",
    "rejected": "refused at send",
    "not_sent": "not sent",
}
STATUS_COLORS = {  # the final delivery statuses (DLR), stacked first in the status breakdown
    "DELIVRD": COLORS["delivered"],
    "UNDELIV": COLORS["failed"],
    "EXPIRED": "#ef6c00",
    "REJECTD": "#ad1457",
    "DELETED": "#37474f",
}
STATUS_LABELS = {
    "DELIVRD": "DELIVRD (delivered)",
    "UNDELIV": "UNDELIV (undeliverable)",
    "EXPIRED": "EXPIRED (validity ended)",
    "REJECTD": "REJECTD (refused by the network)",
    "DELETED": "DELETED (deleted by the SMSC)",
}
OTHER_STATUS_COLOR = "#5d4037"
REFUSAL_COLOR = "#b71c1c"
BREAKDOWN_OUTCOMES = ("pending", "not_requested", "uncertain", "rejected", "not_sent")  # after the statuses


def _status_style(status: str) -> tuple[str, str]:
    """The legend label and colour of a final status, or of the refusal code of a failure without one."""
    if status == ERRBACK:
        return f"{ERRBACK} (refused by the gateway)", REFUSAL_COLOR
    if is_refusal(status):
        return f"{status} (refused by the SMSC)", REFUSAL_COLOR
    return STATUS_LABELS.get(status, status), STATUS_COLORS.get(status, OTHER_STATUS_COLOR)


def _axes(ax: Axes | None, size: tuple[float, float] = (8, 4.5)) -> Axes:
    """``ax``, or the Axes of a new pyplot figure."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, new = plt.subplots(figsize=size, layout="constrained")
    return new


def _group_label(value: object) -> str:
    """A readable group name (tuples joined, missing values shown as ``(missing)``)."""
    if isinstance(value, tuple):
        return " / ".join(_group_label(v) for v in value)
    return (
        "(missing)" if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)) else str(value)
    )


def _by_name(by: str | Sequence[str]) -> str:
    """The title text for ``by``."""
    return by if isinstance(by, str) else " / ".join(by)


def plot_delivery_rate(df: pd.DataFrame, by: str | Sequence[str], ax: Axes | None = None, *, min_sent: int = 1) -> Axes:
    """Bars of the delivered rate (% of sent) per ``by`` group with 95% Wilson intervals and labels.

    Groups with fewer than ``min_sent`` sent messages are left out. Each bar is labelled with its rate
    and the number sent. Messages awaiting reports are stacked above the delivered part in their own
    colour (``awaiting reports``), so a group whose reports are still to come is not a 0% bar; a group
    sent without asking for delivery reports has no bar, only the words ``not requested``.
    """
    summary = delivery_summary(df, by)
    summary = summary[summary["sent"] >= max(min_sent, 1)]
    ax = _axes(ax)
    names = [_group_label(v) for v in summary.index]
    reported = (summary["sent"] - summary["not_requested"]).to_numpy()
    asked = reported > 0
    final = (summary["delivered"] + summary["failed"]).to_numpy() > 0
    rate = np.where(asked, summary["delivered_rate"].to_numpy() * 100, 0.0)
    waiting = np.where(asked, summary["pending"].to_numpy() / np.where(asked, reported, 1) * 100, 0.0)
    low = np.where(final, np.clip(rate - summary["ci_low"].to_numpy() * 100, 0, None), 0.0)
    high = np.where(final, np.clip(summary["ci_high"].to_numpy() * 100 - rate, 0, None), 0.0)
    x = np.arange(len(names))
    ax.bar(
        x,
        rate,
        color=COLORS["delivered"],
        label="delivered",
        yerr=[low, high],
        capsize=4,
        error_kw={"ecolor": "#333333", "elinewidth": 1},
    )
    if waiting.any():
        ax.bar(x, waiting, bottom=rate, color=COLORS["pending"], alpha=0.6, label=AWAITING)
    for i, n in enumerate(summary["sent"]):
        if not asked[i]:
            text = f"{NOT_REQUESTED}\nn={n:,}"
        elif not final[i]:
            text = f"{AWAITING}\nn={n:,}"
        else:
            text = f"{rate[i]:.1f}%\nn={n:,}"
        top = max(rate[i] + high[i], rate[i] + waiting[i])
        ax.text(x[i], top + 2, text, ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, names)
    ax.set_ylim(0, 115)
    ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    ax.set_ylabel("delivered (% of messages sent)")
    ax.set_xlabel(_by_name(by))
    ax.set_title(f"Delivered rate by {_by_name(by)} (bars: 95% interval)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if waiting.any():
        ax.legend(loc="upper right", fontsize=8, frameon=False)
    _fonts.style_text(ax, names)
    return ax


def _breakdown_parts(summary: pd.DataFrame) -> list[tuple[str, str, str]]:
    """The stacked parts of a status breakdown: (summary column, legend label, colour), bottom first.

    Each final delivery status that occurs (DELIVRD, UNDELIV, EXPIRED, REJECTD, DELETED, and the refusal
    codes of failures without a report: ESME_*, ERRBACK), then the rows without one: awaiting reports
    (accepted, no final report yet), delivery reports not requested, uncertain, refused at send, not sent.
    """
    parts = []
    for column in summary.columns:
        if column.startswith(STATUS_PREFIX):
            parts.append((column, *_status_style(column.removeprefix(STATUS_PREFIX))))
    parts += [(kind, LABELS[kind], COLORS[kind]) for kind in BREAKDOWN_OUTCOMES]
    return parts


def plot_status_breakdown(df: pd.DataFrame, by: str | Sequence[str] | None = None, ax: Axes | None = None) -> Axes:
    """Stacked bars of each group's rows as %: each delivery status (DELIVRD, UNDELIV...), pending... not sent.

    The final statuses that occur are stacked first (DELIVRD at the bottom), then the rows without a
    final status: awaiting reports, reports not requested, uncertain, refused at send, not sent. Parts
    empty in every group are left out; parts of at least 5% are labelled with their share.
    """
    summary = delivery_summary(df, by)
    ax = _axes(ax)
    names = [_group_label(v) for v in summary.index]
    rows = summary["rows"].where(summary["rows"] > 0)
    x = np.arange(len(names))
    bottom = np.zeros(len(names))
    for column, label, color in _breakdown_parts(summary):
        values = (summary[column].div(rows).fillna(0) * 100).to_numpy(dtype=float)
        if not values.any():
            continue
        bars = ax.bar(x, values, bottom=bottom, color=color, label=label)
        ax.bar_label(
            bars, labels=[f"{v:.0f}%" if v >= 5 else "" for v in values], label_type="center", fontsize=8, color="white"
        )
        bottom += values
    ax.set_xticks(x, names)
    ax.set_ylim(0, 100)
    ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    ax.set_ylabel("% of rows")
    where = f" by {_by_name(by)}" if by is not None else ""
    ax.set_title(f"Message outcomes{where}")
    if by is not None:
        ax.set_xlabel(_by_name(by))
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    _fonts.style_text(ax, names)
    return ax


def _delays(df: pd.DataFrame) -> pd.Series:
    """Seconds from submission to delivery, for delivered rows with both times."""
    _need(df, ("delivered_at", "submitted_at"))
    delay = pd.to_datetime(df["delivered_at"], utc=True) - pd.to_datetime(df["submitted_at"], utc=True)
    return delay.dt.total_seconds().dropna().clip(lower=0)


def plot_time_to_deliver(df: pd.DataFrame, ax: Axes | None = None, *, by: str | Sequence[str] | None = None) -> Axes:
    """Cumulative share of sent messages delivered within t of submission (one curve per ``by`` group).

    The curve ends at the delivered rate: the gap to 100% is what was not (yet) delivered. ``by`` is a
    column or a list of columns. Messages sent without asking for delivery reports are left out (the
    chart says so when that is all of them).
    """
    columns = None if by is None else [by] if isinstance(by, str) else list(by)
    if columns is not None:
        _need(df, columns)
    ax = _axes(ax)
    if columns is None:
        groups = [("all", df)]
    else:
        groups = [(_group_label(k), g) for k, g in df.groupby(columns, sort=True, dropna=False)]
    sent_mask = outcome(df).isin(["delivered", "failed", "pending"])
    all_delays = _delays(df)
    top = float(all_delays.max()) if len(all_delays) else 60.0
    unit, scale = ("min", 60.0) if top > 300 else ("s", 1.0)
    if top > 3 * 3600:
        unit, scale = "h", 3600.0
    names = []
    for name, group in groups:
        delays = np.sort(_delays(group).to_numpy()) / scale
        sent = int(sent_mask.loc[group.index].sum())
        if sent == 0 or len(delays) == 0:
            continue
        share = np.arange(1, len(delays) + 1) / sent * 100
        median = float(np.median(delays))
        label = (
            f"{name}: {share[-1]:.1f}% delivered, median {median:.1f} {unit}"
            if by
            else f"{share[-1]:.1f}% delivered, median {median:.1f} {unit}"
        )
        ax.step(np.concatenate([[0], delays]), np.concatenate([[0], share]), where="post", label=label)
        names.append(name)
    if not names:
        none_asked = not sent_mask.any() and outcome(df).eq("not_requested").any()
        message = f"delivery reports {NOT_REQUESTED}" if none_asked else "no delivered messages with times yet"
        ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_ylim(0, 100)
    ax.set_xlim(left=0)
    ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    ax.set_xlabel(f"time from submission to delivery ({unit})")
    ax.set_ylabel("delivered (% of messages sent)")
    ax.set_title("Time to deliver" + (f" by {_by_name(by)}" if by else ""))
    ax.grid(alpha=0.3)
    if names:
        ax.legend(loc="lower right", fontsize=8)
    _fonts.style_text(ax, names)
    return ax


def plot_funnel(df: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Horizontal funnel: rows -> planned (in the ledger) -> accepted by the gateway -> delivered.

    The delivered step reads ``not requested`` when no accepted message asked for delivery reports, and
    tells how many are still awaiting reports.
    """
    kinds = outcome(df)
    state = df["send_state"].astype("string")
    accepted = state.eq("accepted").fillna(False)
    steps = {
        "rows in the frame": len(df),
        "planned": int(state.ne("not_sent").fillna(False).sum()),
        "accepted by the gateway": int(accepted.sum()),
        "delivered": int(kinds.eq("delivered").sum()),
    }
    ax = _axes(ax, (8, 3.5))
    names = list(steps)
    counts = np.array(list(steps.values()), dtype=float)
    y = np.arange(len(names))[::-1]
    colors = ["#90a4ae", "#5c6bc0", "#1e88e5", COLORS["delivered"]]
    bars = ax.barh(y, counts, color=colors)
    first = counts[0] if counts[0] else 1.0
    labels = [f"{int(c):,} ({c / first:.0%})" for c in counts]
    unasked = int((accepted & kinds.eq("not_requested")).sum())
    waiting = int((accepted & kinds.eq("pending")).sum())
    if unasked and unasked == steps["accepted by the gateway"]:
        labels[-1] = f"delivery reports {NOT_REQUESTED}"
    elif waiting:
        labels[-1] += f"; {waiting:,} {AWAITING}"
    ax.bar_label(bars, labels=labels, padding=4, fontsize=9)
    ax.set_yticks(y, names)
    ax.set_xlim(0, max(counts.max(), 1) * 1.25)
    ax.set_xlabel("messages")
    ax.set_title("From plan to handset")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    _fonts.style_text(ax)
    return ax
