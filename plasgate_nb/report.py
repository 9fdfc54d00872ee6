"""Learn from a campaign: merge the ledger's state back into the caller's frame, summarize, export.

``collect`` joins each row of the analyst's frame with its ledger row (on the message key: the frame's
index or a key column, as when sending) and returns a new frame with the send state, gateway message
id, delivery status and times, error code, segments and cost; rows never sent say why.
``delivery_summary`` counts outcomes, each final delivery status (DELIVRD, UNDELIV, EXPIRED...) and
delivered rates (with a 95% Wilson interval) overall or per any column, wide or tidy;
``wait_for_reports`` blocks until most delivery reports are in; ``export_report`` writes the rows as
CSV or Parquet with a PNG chart beside them. The charts live in :mod:`plasgate_nb.charts`.

Final, intermediate and "not requested" are those of :mod:`plasgate_nb._states`, as everywhere: a
message sent without asking for delivery reports shows ``not requested``, never 0% delivered, and one
awaiting its reports is ``pending``, never a failure.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from . import _merge
from ._dask import is_dask_frame
from ._states import AWAITING, FINAL_STATUSES, NOT_REQUESTED, row_kinds
from .compose import validate_price
from .errors import ConfigError
from .ledger import Ledger

__all__ = [
    "COLLECT_COLUMNS",
    "ExportedReport",
    "collect",
    "delivery_summary",
    "export_report",
    "outcome",
    "wait_for_reports",
]

logger = logging.getLogger("plasgate_nb")

NOT_SENT = "not_sent"
NOT_PLANNED = "not planned: the row is not in this campaign's ledger"
CHANGED = "changed since planned: its number or text differs from the planned row, so it was not sent"
COLLECT_COLUMNS = (
    "send_state",
    "message_id",
    "delivery_status",
    "delivered_at",
    "error_code",
    "segments",
    "cost",
    "attempts",
    "reason",
    "submitted_at",
    "done_at",
)
_PLANNED_COLUMNS = ["msisdn", "content_hash"]  # what a still-planned row is compared on
_LEDGER_COLUMNS = [
    "state",
    "message_id",
    "delivery_status",
    "delivered_at",
    "error_code",
    "segments",
    "attempts",
    "reason",
    "submitted_at",
    "done_at",
]
OUTCOMES = ("delivered", "failed", "pending", "not_requested", "uncertain", "rejected", "not_sent")
SENT_OUTCOMES = ("delivered", "failed", "pending", "not_requested")  # handed to the gateway, one by one
STATUS_ORDER = ("DELIVRD", "UNDELIV", "EXPIRED", "REJECTD", "DELETED")  # how final statuses are listed
STATUS_PREFIX = "status_"
TIDY_COLUMNS = ("status", "count", "rate", "ci_low", "ci_high")
Z95 = 1.959963984540054


def _source(campaign: Any) -> tuple[Ledger, str, str | None, float | None]:
    """Unpack a Campaign-like object or a ``(ledger, name)`` pair into ledger, name, key and price."""
    if isinstance(campaign, tuple) and len(campaign) == 2:
        ledger, name = campaign
        key = price = None
    elif hasattr(campaign, "ledger") and hasattr(campaign, "name"):
        ledger, name = campaign.ledger, campaign.name
        key, price = getattr(campaign, "key", None), getattr(campaign, "price_per_segment", None)
    else:
        raise ConfigError("pass a Campaign or a (ledger, campaign name) pair")
    if not isinstance(ledger, Ledger):
        ledger = Ledger(ledger)
    if not isinstance(name, str):
        raise ConfigError(f"the campaign name must be a string, not {type(name).__name__}")
    return ledger, name, key, price


def reports_requested(ledger: Ledger, name: str) -> bool | None:
    """Whether campaign ``name`` asked for delivery reports when it was last sent (None: not recorded)."""
    requested = (ledger.campaign_settings(name) or {}).get("reports")
    return None if requested is None else bool(requested)


def collect(
    df: pd.DataFrame, campaign: Any, *, key: str | None = None, price_per_segment: float | None = None
) -> pd.DataFrame:
    """Return a new frame: ``df``'s rows with their campaign's ledger state (``df`` is not changed).

    ``campaign`` is a :class:`~plasgate_nb.campaign.Campaign` or a ``(ledger, name)`` pair. Rows are
    matched on the message key: ``key`` (default the campaign's key column, else the frame's index).
    Added columns (replacing any of the same name): ``send_state`` (``planned``, ``submitting``,
    ``accepted``, ``rejected``, ``uncertain`` or ``not_sent``), ``message_id``, ``delivery_status``
    (``DELIVRD``, ``UNDELIV``...; an intermediate ``UNKNOWN``, ``ENROUTE`` or ``ACCEPTD`` while the final
    report is awaited; missing until a report arrives; ``not requested`` for accepted rows of a campaign
    sent without asking for delivery reports), ``delivered_at`` (UTC), ``error_code`` (a failure's code:
    the report's ``err``, an SMSC refusal ``ESME_*``, ``ERRBACK``), ``segments``, ``cost`` (segments x
    ``price_per_segment`` for accepted rows; missing without a price), ``attempts``, ``reason`` (why a
    row was not sent or was refused), ``submitted_at`` and ``done_at`` (both UTC; neither ``done_at``
    nor ``delivered_at`` is ever earlier than ``submitted_at``: Jasmin's done date is only to the minute).
    A Dask DataFrame gives a Dask DataFrame of the same columns (plasgate_nb._dask._campaign).
    """
    if is_dask_frame(df):  # a Dask frame: each partition reads the ledger rows of its own keys
        from ._dask._campaign import collect as collect_dask

        return collect_dask(df, campaign, key=key, price_per_segment=price_per_segment)
    if not isinstance(df, pd.DataFrame):
        raise ConfigError("collect() needs a pandas DataFrame")
    ledger, name, default_key, default_price = _source(campaign)
    key = key if key is not None else default_key
    price = price_per_segment if price_per_segment is not None else default_price
    price = None if price is None else validate_price(price)
    compare = {"msisdn", "content"} <= set(df.columns)  # then planned rows are checked for changes
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="plasgate-nb-collect") as pool:
        reading = pool.submit(ledger.read_arrow, name, _LEDGER_COLUMNS)  # the ledger reads while keys are checked
        planned_rows = pool.submit(ledger.read_arrow, name, _PLANNED_COLUMNS, state="planned") if compare else None
        keys = _merge.frame_keys(df, key)
        audience = _merge.not_sent_reasons(df)
        stored = reading.result()
        pending = planned_rows.result() if planned_rows is not None else None
    requested = reports_requested(ledger, name)
    planned_here = audience.is_null().to_numpy(zero_copy_only=False)
    at = _merge.positions(df, key, keys, stored.column("message_key"), planned_here)
    cols = stored.take(at)
    in_ledger = at.is_valid()
    state = cols.column("state")
    planned = pc.fill_null(pc.equal(state, "planned"), False)
    blocked = pc.and_(planned, audience.is_valid())
    changed = _merge.changed(df, cols.column("message_key"), pending, pc.and_not(planned, blocked))
    reason = pc.if_else(in_ledger, cols.column("reason"), pc.coalesce(audience, NOT_PLANNED))
    reason = pc.if_else(changed, CHANGED, pc.if_else(blocked, audience, reason))
    state = pc.if_else(pc.or_(pc.invert(in_ledger), pc.or_(blocked, changed)), NOT_SENT, state)
    accepted = pc.equal(state, "accepted")
    segments = cols.column("segments")
    if price is None:
        cost = pa.nulls(len(df), pa.float64())
    else:
        cost = pc.if_else(accepted, pc.multiply(pc.cast(segments, pa.float64()), float(price)), 0.0)
    status, error_code = cols.column("delivery_status"), cols.column("error_code")
    if requested is False:
        unreported = pc.and_(accepted, pc.and_(status.is_null(), error_code.is_null()))
        status = pc.if_else(unreported, NOT_REQUESTED, status)
    submitted = cols.column("submitted_at")
    out = {
        "send_state": state,
        "message_id": cols.column("message_id"),
        "delivery_status": status,
        "delivered_at": _merge.not_before(cols.column("delivered_at"), submitted),
        "error_code": error_code,
        "segments": segments,
        "cost": cost,
        "attempts": cols.column("attempts"),
        "reason": reason,
        "submitted_at": submitted,
        "done_at": _merge.not_before(cols.column("done_at"), submitted),
    }
    base = df.drop(columns=[c for c in COLLECT_COLUMNS if c in df.columns])
    return base.assign(**{c: _merge.series(values, df.index) for c, values in out.items()})


def outcome(df: pd.DataFrame) -> pd.Series:
    """Each collected row's outcome, by the delivery states of :mod:`plasgate_nb._states`.

    ``delivered`` (DELIVRD); ``failed``: a final failure, with its ``error_code`` (UNDELIV, REJECTD,
    EXPIRED, DELETED; an SMSC refusal, ``ESME_*`` in a level-1 report or a submit_sm_resp; a batch
    errback, ``ERRBACK``); ``pending``: accepted and awaiting reports (none yet, or only intermediate
    ones: UNKNOWN, ENROUTE, ACCEPTD); ``not_requested``: accepted, no delivery reports were asked for;
    ``uncertain`` (submitting or uncertain); ``rejected``: the request was refused at send (without a
    per-message code); ``not_sent``. The frame needs ``send_state`` and ``delivery_status`` (and uses
    ``error_code`` when it has one).
    """
    _need(df, ("send_state", "delivery_status"))
    state = df["send_state"].astype("string")
    kinds = row_kinds(df["delivery_status"], df["error_code"] if "error_code" in df.columns else None)
    handed = state.isin(["accepted", "rejected", "uncertain", "submitting"]).fillna(False).to_numpy()
    result = np.select(
        [
            handed & (kinds == "final-good"),
            handed & (kinds == "final-bad"),
            state.eq("accepted").fillna(False).to_numpy() & (kinds == "none-requested"),
            state.eq("accepted").fillna(False).to_numpy(),
            state.isin(["uncertain", "submitting"]).fillna(False).to_numpy(),
            state.eq("rejected").fillna(False).to_numpy(),
        ],
        ["delivered", "failed", "not_requested", "pending", "uncertain", "rejected"],
        default=NOT_SENT,
    )
    return pd.Series(pd.Categorical(result, categories=OUTCOMES), index=df.index, name="outcome")


def _need(df: pd.DataFrame, columns: Sequence[str]) -> None:
    """Raise ConfigError unless ``df`` is a frame with ``columns`` (a collected frame)."""
    if not isinstance(df, pd.DataFrame):
        raise ConfigError("expected a pandas DataFrame (the result of collect())")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ConfigError(f"the frame lacks {missing}: pass the frame returned by collect()")


def wilson_interval(successes: Any, trials: Any, *, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """The Wilson score interval of a proportion (arrays; NaN where there are no trials)."""
    k = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low, high = np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)
    low, high = np.where(k <= 0, 0.0, low), np.where(k >= n, 1.0, high)  # exact at the ends (no rounding)
    empty = n <= 0
    return np.where(empty, np.nan, low), np.where(empty, np.nan, high)


def final_status(df: pd.DataFrame, kinds: pd.Series | None = None) -> pd.Series:
    """Each collected row's final delivery status (DELIVRD, UNDELIV...) when it was sent, else missing.

    A categorical over the final statuses that occur, in the order DELIVRD, UNDELIV, EXPIRED, REJECTD,
    DELETED, then any other final status and the refusal codes (``ESME_*``, ``ERRBACK``) of failures
    without a final report. Its rows are exactly the ``delivered`` and ``failed`` outcomes of
    :func:`outcome` (``kinds``: that outcome, when already computed).
    """
    kinds = outcome(df) if kinds is None else kinds
    status = df["delivery_status"].astype("string")
    if "error_code" in df.columns:
        reported = status.isin(list(FINAL_STATUSES)).fillna(False).to_numpy() | kinds.ne("failed").to_numpy()
        status = status.where(reported, df["error_code"].astype("string"))
    status = status.where(kinds.isin(["delivered", "failed"]).to_numpy())
    seen = set(status.dropna().unique())
    order = [s for s in STATUS_ORDER if s in seen] + sorted(seen - set(STATUS_ORDER))
    return pd.Series(pd.Categorical(status, categories=order), index=df.index, name="final_status")


def delivery_summary(df: pd.DataFrame, by: str | Sequence[str] | None = None, *, tidy: bool = False) -> pd.DataFrame:
    """Outcome and delivery-status counts and rates of a collected frame, overall or per ``by`` column(s).

    One row per group (``all`` without ``by``) with the columns ``rows``, ``not_sent``, ``rejected``,
    ``uncertain``, ``sent`` (handed to the gateway: accepted, or refused one by one with an error
    code), ``delivered``, ``failed`` (a final failure: a final status other than DELIVRD, an SMSC
    refusal, an errback), ``pending`` (awaiting reports: none yet, or only intermediate ones),
    ``delivered_rate`` and ``failed_rate`` (shares of the sent messages whose reports were requested,
    ``sent - not_requested``), ``ci_low``/``ci_high`` (the 95% Wilson interval of the delivered rate),
    ``not_requested`` (sent without asking for delivery reports), ``delivery`` (in words:
    ``93.1% delivered, 12 awaiting reports``, ``awaiting reports``, ``not requested`` or ``nothing
    sent``), then one count column per final delivery status that occurs in ``df``: ``status_DELIVRD``,
    ``status_UNDELIV``, ``status_EXPIRED``, ``status_REJECTD``, ``status_DELETED`` and the codes of
    failures without a final report (``status_ESME_RINVDSTADR``, ``status_ERRBACK``); they add up to
    ``delivered + failed``. Groups with no report requested (or nothing sent) have missing rates,
    never 0%.

    ``tidy=True`` returns one row per group and status instead: the ``by`` columns, ``status`` (the
    final statuses that occur, then ``pending``, then ``not_requested`` when some were), ``count``,
    ``rate`` (share of the group's ``sent - not_requested``; the rates of a group's final statuses and
    ``pending`` add up to 1; ``not_requested`` has none) and ``ci_low``/``ci_high`` (95% Wilson
    interval of ``rate``).
    """
    kinds = outcome(df)
    status = final_status(df, kinds)
    table = pd.concat(
        [
            pd.get_dummies(kinds).astype("int64"),
            pd.get_dummies(status, prefix=STATUS_PREFIX.rstrip("_"), prefix_sep="_").astype("int64"),
        ],
        axis=1,
    )
    groups: list[str] = []
    if by is None:
        counts = table.sum().to_frame("all").T
    else:
        groups = [by] if isinstance(by, str) else list(by)
        _need(df, groups)
        if tidy and set(groups) & set(TIDY_COLUMNS):
            raise ConfigError(f"tidy=True names its own columns {list(TIDY_COLUMNS)}: rename {groups} first")
        keys = [df[g] for g in groups]
        counts = table.groupby(keys, dropna=False, observed=True, sort=True).sum()
    out = pd.DataFrame(index=counts.index)
    out["rows"] = counts[list(OUTCOMES)].sum(axis=1)
    for name in ("not_sent", "rejected", "uncertain"):
        out[name] = counts[name]
    out["sent"] = sum(counts[name] for name in SENT_OUTCOMES)
    for name in ("delivered", "failed", "pending"):
        out[name] = counts[name]
    reported = out["sent"] - counts["not_requested"]
    share = reported.where(reported > 0)
    out["delivered_rate"] = (out["delivered"] / share).astype(float)
    out["failed_rate"] = (out["failed"] / share).astype(float)
    out["ci_low"], out["ci_high"] = wilson_interval(out["delivered"], reported)
    out["not_requested"] = counts["not_requested"]
    out["delivery"] = [
        _in_words(*values)
        for values in zip(out["sent"], out["not_requested"], out["pending"], out["delivered_rate"], strict=True)
    ]
    for name in status.cat.categories:
        out[STATUS_PREFIX + name] = counts[STATUS_PREFIX + name]
    return _tidy(out, groups) if tidy else out


def _in_words(sent: int, not_requested: int, pending: int, rate: float) -> str:
    """A group's delivery in words: a rate only where reports were requested and some are in."""
    if sent == 0:
        return "nothing sent"
    if not_requested == sent:
        return NOT_REQUESTED
    if pending == sent - not_requested:
        return AWAITING
    words = [f"{rate:.1%} delivered"]
    if pending:
        words.append(f"{pending:,} {AWAITING}")
    if not_requested:
        words.append(f"{not_requested:,} {NOT_REQUESTED}")
    return ", ".join(words)


def _tidy(summary: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    """The long form of a wide summary: one row per group and status (final statuses, pending, not requested)."""
    columns = [c for c in summary.columns if c.startswith(STATUS_PREFIX)] + ["pending"]
    if summary["not_requested"].any():
        columns.append("not_requested")
    names = [c.removeprefix(STATUS_PREFIX) for c in columns]
    width = len(columns)
    count = summary[columns].to_numpy(dtype="int64").ravel()
    reported = (summary["sent"] - summary["not_requested"]).to_numpy(dtype="int64")
    sent = np.repeat(reported, width)
    asked = np.tile([name != "not_requested" for name in names], len(summary))
    low, high = wilson_interval(count, np.where(asked, sent, 0))
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(asked & (sent > 0), count / np.where(sent > 0, sent, 1), np.nan)
    long = pd.DataFrame(
        {
            "status": pd.Categorical(np.tile(names, len(summary)), categories=names),
            "count": count,
            "rate": rate,
            "ci_low": low,
            "ci_high": high,
        }
    )
    if not groups:
        return long
    keys = summary.index.repeat(width).to_frame(index=False)
    keys.columns = groups
    return pd.concat([keys, long], axis=1)


def _counts(ledger: Ledger, name: str) -> dict[str, Any]:
    """Accepted messages and how many of them have a final delivery status, by outcome.

    From the ledger's counts per (state, status, error code)
    (:meth:`~plasgate_nb.ledger.Ledger.status_counts`): each is classified once and weighted by its
    number of messages.
    """
    groups = ledger.status_counts(name)
    weights = groups["messages"].to_numpy()
    accepted = groups["state"].eq("accepted").to_numpy(dtype=bool)
    kinds = row_kinds(groups["delivery_status"], groups["error_code"])
    delivered = int(weights[accepted & (kinds == "final-good")].sum())
    failed = int(weights[accepted & (kinds == "final-bad")].sum())
    done = delivered + failed
    total = int(weights[accepted].sum())
    not_requested = total - done if reports_requested(ledger, name) is False else 0
    return {
        "accepted": total,
        "final": done,
        "delivered": delivered,
        "failed": failed,
        "pending": total - done - not_requested,
        "not_requested": not_requested,
        "in_flight": int(weights[groups["state"].isin(["submitting", "uncertain"]).to_numpy(dtype=bool)].sum()),
    }


def wait_for_reports(
    campaign: Any, *, timeout: float, until: float = 0.95, poll: float = 0.5, progress: bool = True
) -> dict[str, Any]:
    """Block until ``until`` (a share) of accepted messages has a final report, or ``timeout`` seconds.

    Final is that of :mod:`plasgate_nb._states`: DELIVRD, UNDELIV, REJECTD, EXPIRED, DELETED, or an
    SMSC refusal (a level-1 ``ESME_*`` error, after which no report follows); UNKNOWN, ENROUTE and
    ACCEPTD are intermediate, and their messages are still waited for. A campaign sent without asking
    for delivery reports has nothing to wait for: it returns at once, ``done``. Shows a progress bar
    (``tqdm.auto``: a widget in Jupyter). Returns the counts: ``accepted``, ``final``, ``delivered``,
    ``failed``, ``pending`` (awaiting reports), ``not_requested``, ``in_flight`` (submitting or
    uncertain), ``share`` (final / accepted messages whose reports were requested), ``done`` (the share
    was reached, or no report was requested) and ``waited_s``.
    """
    if not 0 < until <= 1:
        raise ConfigError("until must be a share in (0, 1]")
    if timeout < 0 or poll <= 0:
        raise ConfigError("timeout must be >= 0 and poll > 0 seconds")
    ledger, name, _, _ = _source(campaign)
    start = time.monotonic()
    bar = tqdm(total=0, desc=f"reports {name}", unit="msg", disable=not progress)
    try:
        while True:
            began = time.monotonic()
            counts = _counts(ledger, name)
            accepted = counts["accepted"]
            awaited = accepted - counts["not_requested"]
            counts["share"] = counts["final"] / awaited if awaited else 0.0
            counts["done"] = (awaited > 0 and counts["share"] >= until) or (accepted > 0 and awaited == 0)
            if accepted > 0 and awaited == 0:
                logger.info("campaign %r requested no delivery reports: nothing to wait for", name)
            bar.total = accepted
            bar.n = counts["final"]
            bar.set_postfix(delivered=counts["delivered"], failed=counts["failed"], refresh=False)
            bar.refresh()
            elapsed = time.monotonic() - start
            if counts["done"] or elapsed >= timeout:
                break
            if accepted == 0 and counts["in_flight"] == 0:
                logger.info("campaign %r: no accepted messages to wait for", name)
                break
            # back off when reading the ledger is slow (a large campaign), never past the deadline
            time.sleep(min(max(poll, 2 * (time.monotonic() - began)), max(timeout - elapsed, 0)))
    finally:
        bar.close()
    counts["waited_s"] = round(time.monotonic() - start, 3)
    if not counts["done"]:
        logger.info(
            "campaign %r: %d of %d accepted messages have a final report after %.1f s",
            name,
            counts["final"],
            counts["accepted"],
            counts["waited_s"],
        )
    return counts


class ExportedReport(NamedTuple):
    """The files ``export_report`` wrote."""

    data: Path
    chart: Path


def export_report(df: pd.DataFrame, path: str | Path, *, by: str | None = None, dpi: int = 150) -> ExportedReport:
    """Write the collected rows to ``path`` (``.csv`` or ``.parquet``) and the main chart beside it.

    The chart (``<stem>.png``) is the delivered rate per ``by`` group, or the send funnel without
    ``by``. Parquet needs pyarrow (``pip install pyarrow``). Returns both paths.
    """
    _need(df, ("send_state", "delivery_status"))
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise ConfigError(f"export_report writes .csv or .parquet files, not {target.name!r}")
    keep_index = not (isinstance(df.index, pd.RangeIndex) and df.index.name is None)
    if suffix == ".csv":
        try:
            df.to_csv(target, index=keep_index)
        except OSError as exc:
            raise ConfigError(f"cannot write {target}: {exc}") from exc
    else:
        if importlib.util.find_spec("pyarrow") is None:
            raise ConfigError("writing Parquet needs pyarrow: `pip install pyarrow`, or export to .csv")
        try:
            df.to_parquet(target, index=keep_index)
        except OSError as exc:
            raise ConfigError(f"cannot write {target}: {exc}") from exc
    chart = target.with_suffix(".png")
    _save_chart(df, chart, by=by, dpi=dpi)
    return ExportedReport(data=target, chart=chart)


def _save_chart(df: pd.DataFrame, path: Path, *, by: str | None, dpi: int) -> None:
    """Render the main chart into a PNG without touching pyplot's global figure list."""
    from matplotlib.figure import Figure

    from . import charts

    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    if by is None:
        charts.plot_funnel(df, ax=ax)
    else:
        charts.plot_delivery_rate(df, by, ax=ax)
    try:
        fig.savefig(path, dpi=dpi)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc}") from exc
