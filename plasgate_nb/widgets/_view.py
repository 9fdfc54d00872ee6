"""What the send form shows: small HTML fragments and Jupyter output bundles built from library results.

Nothing here decides anything: each function formats a value the library computed (a preview frame, a
:class:`~plasgate_nb.campaign.SendSummary`, a :class:`~plasgate_nb.compose.CostEstimate`, a summary
table, a chart) for an ``ipywidgets.HTML`` value or an ``Output.outputs`` entry; :func:`show` puts such
entries in an ``Output`` through ``append_stdout`` / ``append_display_data`` (safe from a thread).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from ..gateway import redact

__all__ = [
    "chart_bundle",
    "clear",
    "error_html",
    "holdout_html",
    "local_time",
    "notice_html",
    "preview_html",
    "reports_line",
    "show",
    "status_html",
    "table_bundle",
    "template_preview_html",
    "text_bundle",
    "totals_html",
]

_PRE = "white-space: pre-wrap; font-family: monospace; margin: 0"
_TONES = {"info": "#1565c0", "done": "#2e7d32", "warning": "#8a6d00", "error": "#b00020"}
TABLE_HEIGHT = "22em"  # the results table scrolls inside a box of this height (and the form's width)


def _esc(value: Any) -> str:
    """Text made safe for HTML (missing values as an empty string)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    return html.escape(str(value), quote=False)


def error_html(message: str) -> str:
    """A red error line (secrets redacted, HTML escaped); empty text clears the area."""
    if not message:
        return ""
    return f'<div style="color: #b00020; {_PRE}"><b>Error:</b> {_esc(redact(message))}</div>'


def notice_html(title: str, lines: Sequence[str] = ()) -> str:
    """A bold title followed by plain lines (escaped)."""
    body = "".join(f"<br>{_esc(line)}" for line in lines)
    return f'<div style="{_PRE}"><b>{_esc(title)}</b>{body}</div>'


def status_html(title: str, detail: str = "", *, tone: str = "info") -> str:
    """The line beside the progress bar: a coloured title (``Sending``, ``Done``...) and what it counts.

    It wraps rather than being cut, whatever its length.
    """
    colour = _TONES.get(tone, _TONES["info"])
    body = f": {_esc(detail)}" if detail else ""
    return (
        f'<div style="white-space: normal; overflow-wrap: anywhere; line-height: 1.3">'
        f'<b style="color: {colour}">{_esc(title)}</b>{body}</div>'
    )


def reports_line(counts: dict[str, Any]) -> str:
    """Delivery report counts (from ``wait_for_reports``) as one line."""
    return (
        f"delivery reports: {counts['final']} of {counts['accepted']} final "
        f"({counts['delivered']} delivered, {counts['failed']} failed, {counts['pending']} pending)"
    )


def _rows(pairs: Sequence[tuple[str, Any]]) -> str:
    """A two-column table of label / value pairs."""
    cells = "".join(
        f'<tr><th style="text-align:left; padding-right:1em">{_esc(k)}</th>'
        f'<td style="text-align:left; {_PRE}">{_esc(v)}</td></tr>'
        for k, v in pairs
    )
    return f"<table>{cells}</table>"


def preview_html(row: pd.Series, *, label: Any, cost: float, currency: str, notes: Sequence[str] = ()) -> str:
    """One rendered row (a row of ``compose.preview`` plus audience columns) as a table."""
    status = row.get("audience_status")
    reason = row.get("audience_reason")
    audience = "" if status is None else (str(status) if status == "ok" else f"{status}: {_esc(reason)}")
    pairs = [
        ("row", label),
        ("to", row.get("msisdn")),
        ("audience", audience),
        *([("template", row.get("template"))] if row.get("template") is not None else []),
        ("message", row.get("content")),
        ("report view", row.get("content_report")),
        ("encoding", row.get("encoding")),
        ("characters", row.get("units")),
        ("segments", row.get("segments")),
        ("cost", f"{cost:.4f} {currency}"),
    ]
    warn = "".join(f'<div style="color: #8a6d00">{_esc(n)}</div>' for n in notes)
    return _rows(pairs) + warn


def holdout_html(row: pd.Series, *, label: Any) -> str:
    """The chosen row when ``assign_variants`` held it out: planned, never sent."""
    pairs = [
        ("row", label),
        ("variant", "holdout"),
        ("message", "none: holdout rows are planned and never sent (the baseline of the test)"),
    ]
    return _rows(pairs)


def template_preview_html(row: pd.Series, *, label: Any) -> str:
    """One template's live preview: the row it shows, the message, its report view and its size."""
    size = f"{row.get('encoding')}, {row.get('units')} characters, {row.get('segments')} part(s)"
    pairs = [
        ("row", label),
        ("message", row.get("content")),
        ("report view", row.get("content_report")),
        ("size", size),
    ]
    return _rows(pairs)


def _duration(seconds: float | None) -> str:
    """Seconds as a short human duration."""
    if seconds is None:
        return "unknown"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"


def local_time(when: Any) -> str:
    """An aware datetime as ``YYYY-MM-DD HH:MM`` Asia/Phnom_Penh (the gateway's time)."""
    from ..pacing import PHNOM_PENH

    return f"{when.astimezone(PHNOM_PENH):%Y-%m-%d %H:%M} Asia/Phnom_Penh"


def _when(summary: Any, schedule: str | None) -> str:
    """When the messages go: now, the time asked for, or what the quiet hours make of it (from the summary)."""
    scheduled, deferred = getattr(summary, "scheduled_for", None), getattr(summary, "deferred_until", None)
    if deferred is not None:
        return f"not now: quiet hours until {local_time(deferred)}; press Send again then"
    if scheduled is not None and schedule is None:
        return f"{local_time(scheduled)}, the end of the quiet hours"
    return schedule or "now"


def totals_html(
    title: str,
    summary: Any,
    estimate: Any,
    *,
    schedule: str | None,
    notes: Sequence[str] = (),
    extra: Sequence[tuple[str, Any]] = (),
) -> str:
    """The totals of a dry run (what a send would do): recipients, segments, cost, projected duration.

    ``extra`` label / value pairs follow (messages per template, the pacing rules).
    """
    cost = f"{summary.cost:.4f} {estimate.currency}" if summary.cost is not None else "unknown"
    encodings = ", ".join(
        f"{enc}: {v['messages']} msg / {v['segments']} parts" for enc, v in estimate.by_encoding.items()
    )
    pairs = [
        ("campaign", summary.campaign),
        ("recipients", summary.recipients),
        ("segments", summary.segments),
        ("cost", cost),
        ("requests", summary.requests),
        ("projected duration", _duration(summary.projected_seconds)),
        ("already sent (not resent)", summary.already_sent),
        ("left out (why)", ", ".join(f"{k} {v}" for k, v in summary.skipped_reasons.items()) or "0"),
        ("encodings", encodings or "-"),
        ("scheduled for", _when(summary, schedule)),
    ]
    if summary.changed:
        pairs.append(("changed since planned (not resent)", len(summary.changed)))
    pairs.extend(extra)
    warn = "".join(f'<div style="color: #8a6d00">{_esc(n)}</div>' for n in notes)
    return f"<b>{_esc(title)}</b>" + _rows(pairs) + warn


def text_bundle(text: str) -> dict[str, Any]:
    """A stdout stream entry for ``Output.outputs`` (what ``Output.append_stdout`` appends)."""
    return {"output_type": "stream", "name": "stdout", "text": text if text.endswith("\n") else text + "\n"}


def table_bundle(frame: pd.DataFrame) -> dict[str, Any]:
    """A display_data entry showing a DataFrame as HTML and text (what ``append_display_data`` appends).

    The HTML table sits in a box that scrolls (down past ``TABLE_HEIGHT``, sideways past the form's width);
    missing values (the rates of a group with nothing sent) show as ``-``, not NaN.
    """
    table = frame.to_html(float_format=lambda v: f"{v:.3f}", na_rep="-")
    scroller = f'<div class="plasgate-table" style="max-height: {TABLE_HEIGHT}; max-width: 100%; overflow: auto">'
    return {
        "output_type": "display_data",
        "metadata": {},
        "data": {"text/plain": frame.to_string(na_rep="-"), "text/html": f"{scroller}{table}</div>"},
    }


def chart_bundle(draw: Callable[[Any], Any], *, alt: str, dpi: int = 96) -> dict[str, Any]:
    """Draw on a fresh matplotlib Figure (no pyplot: safe off the main thread) and wrap it as a PNG entry."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.6), layout="constrained")
    draw(fig.subplots())
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return {"output_type": "display_data", "metadata": {}, "data": {"image/png": data, "text/plain": alt}}


class _Bundle:
    """A display object carrying a ready mime bundle, for ``Output.append_display_data``."""

    def __init__(self, data: dict[str, Any], metadata: dict[str, Any]) -> None:
        self.data = data
        self.metadata = metadata

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """The bundle as given (IPython's display formatter calls this)."""
        return self.data, self.metadata


def clear(output: Any) -> None:
    """Empty an ``ipywidgets.Output``.

    Not ``output.clear_output()``: that enters ``with output:``, which from a background thread would
    capture (and clear) whatever cell the kernel is running at the time.
    """
    output.outputs = ()


def show(output: Any, bundles: Sequence[dict[str, Any]]) -> None:
    """Replace what ``output`` shows with ``bundles`` (entries built by the ``*_bundle`` functions).

    Streams go through ``Output.append_stdout`` and displays through ``Output.append_display_data``,
    which are safe to call from the send thread. Outside a kernel (a script, a test) the latter starts
    a plain IPython shell once, for its display formatter.
    """
    clear(output)
    for bundle in bundles:
        if bundle["output_type"] == "stream":
            output.append_stdout(bundle["text"])
        else:
            output.append_display_data(_Bundle(bundle["data"], bundle.get("metadata", {})))
