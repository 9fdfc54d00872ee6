"""The ``df.sms`` pandas accessor: stateless, one-line delegates to the library's functions.

Importing ``plasgate_nb`` registers it, and registers the same accessor on Dask DataFrames once
``dask.dataframe`` is imported (before or after; dask is never imported for it): ``ddf.sms.prepare()``,
``.render()``, ``.estimate()`` and ``.preview()`` work there, partition by partition. Campaign state lives
in the ledger, never on the accessor (pandas builds a new accessor object on every attribute access) nor
in ``df.attrs``.

>>> import pandas as pd
>>> import plasgate_nb
>>> df = pd.DataFrame({"name": ["Sokha", "Dara"], "phone": ["012 345 678", "+855 97 123 4567"],
...                    "code": ["K7", "Q2"]})
>>> ready = df.sms.prepare().sms.render("Hi {{ name }}, code {{ code }}", mask=["code"])
>>> ready[["msisdn", "content", "content_report", "segments"]]
         msisdn                      content        content_report  segments
0   85512345678  Hi Sokha, code #ma#K7#ma#  Hi Sokha, code ******         1
1  855971234567   Hi Dara, code #ma#Q2#ma#   Hi Dara, code ******         1
>>> "content" in df.columns  # the caller's frame is never modified
False
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from ._dask import is_dask_frame
from ._dask._hook import when_imported
from .errors import OptionError

if TYPE_CHECKING:  # imported where used: registering the accessor must stay light (module docstring)
    from .campaign import Campaign, SendSummary
    from .compose import CostEstimate, MessagePreview, Template

__all__ = ["SmsAccessor"]

PLOTS = ("delivery_rate", "status_breakdown", "time_to_deliver", "funnel")


@pd.api.extensions.register_dataframe_accessor("sms")
class SmsAccessor:
    """SMS campaign steps on a DataFrame: ``df.sms.prepare()``, ``.render(...)``, ``.send(campaign)``, ..."""

    def __init__(self, df: pd.DataFrame) -> None:
        self._df = df

    def prepare(
        self,
        *,
        phone: str = "phone",
        region: str = "KH",
        suppress: Iterable[Any] | None = None,
        consent: str | None = None,
        ledger: Any = None,
    ) -> pd.DataFrame:
        """Normalize phone numbers and flag unusable rows: :func:`plasgate_nb.prepare_audience`."""
        from .audience import prepare_audience

        return prepare_audience(self._df, phone=phone, region=region, suppress=suppress, consent=consent, ledger=ledger)

    def render(
        self,
        template: Template | Mapping[Any, Template],
        *,
        mask: Iterable[str] | str = (),
        column: str = "content",
        max_parts: int | None = 5,
        by: str | None = None,
        default: Any = None,
    ) -> pd.DataFrame:
        """Render a Jinja template per row (or one per value of ``by``): :func:`plasgate_nb.render_messages`.

        >>> frame = pd.DataFrame({"name": ["Dara", "សុភា"], "language": ["en", "km"]})
        >>> frame.sms.render({"en": "Hi {{ name }}", "km": "សួស្តី {{ name }}"}, by="language")[
        ...     ["content", "template", "encoding"]]
               content template encoding
        0      Hi Dara       en    GSM-7
        1  សួស្តី សុភា       km    UCS-2
        """
        from .compose import render_messages

        return render_messages(
            self._df, template, mask=mask, column=column, max_parts=max_parts, by=by, default=default
        )

    def preview(self, n: int | None = None, *, by: str | Sequence[str] | None = None) -> MessagePreview:
        """Show whole rendered messages, report views, encodings and parts: :func:`plasgate_nb.preview`.

        >>> frame = pd.DataFrame({"name": ["Dara"]}).sms.render("សួស្តី {{ name }}")
        >>> frame.sms.preview()[["encoding", "units", "segments"]]
          encoding  units  segments
        0    UCS-2     11         1
        """
        from .compose import preview

        return preview(self._df, n, by=by)

    def estimate(self, *, price_per_segment: float, currency: str = "USD") -> CostEstimate:
        """Estimate the cost of sending the rendered rows: :func:`plasgate_nb.estimate_cost`.

        >>> frame = pd.DataFrame({"name": ["Dara", "Sokha"]}).sms.render("Hello {{ name }}")
        >>> frame.sms.estimate(price_per_segment=0.01).total
        0.02
        """
        from .compose import estimate_cost

        return estimate_cost(self._df, price_per_segment=price_per_segment, currency=currency)

    def send(
        self, campaign: Campaign, *, dry_run: bool = False, resend_uncertain: bool | Sequence[str] = False
    ) -> SendSummary:
        """Send the rendered rows through ``campaign``, exactly once: :meth:`Campaign.send`.

        >>> import tempfile
        >>> from pathlib import Path
        >>> from plasgate_nb import Campaign, Gateway, Ledger, Simulator
        >>> ledger = Ledger(Path(tempfile.mkdtemp()) / "doc.db")
        >>> with Simulator(mode="thread") as sim:
        ...     gateway = Gateway(base_url=sim.url, private_key=sim.credentials.private_key,
        ...                       secret=sim.credentials.secret)
        ...     campaign = Campaign("doc", gateway=gateway, ledger=ledger, progress=False)
        ...     rows = pd.DataFrame({"phone": ["012 345 678"]}).sms.prepare().sms.render("Hi!")
        ...     first, again = rows.sms.send(campaign), rows.sms.send(campaign)
        >>> first.accepted, again.recipients, again.already_sent
        (1, 0, 1)
        """
        return campaign.send(self._df, dry_run=dry_run, resend_uncertain=resend_uncertain)

    def collect(self, campaign: Campaign | tuple[Any, str]) -> pd.DataFrame:
        """Add send and delivery results from the ledger to these rows: :func:`plasgate_nb.collect`.

        >>> import tempfile
        >>> from pathlib import Path
        >>> from plasgate_nb import Campaign, Gateway, Ledger, Simulator
        >>> ledger = Ledger(Path(tempfile.mkdtemp()) / "doc.db")
        >>> rows = pd.DataFrame({"phone": ["012 345 678", "12"]}, index=pd.Index(["c1", "c2"], name="customer"))
        >>> rows = rows.sms.prepare().sms.render("Hi!")
        >>> with Simulator(mode="thread") as sim:
        ...     gateway = Gateway(base_url=sim.url, private_key=sim.credentials.private_key,
        ...                       secret=sim.credentials.secret)
        ...     campaign = Campaign("doc", gateway=gateway, ledger=ledger, progress=False)
        ...     _ = rows.sms.send(campaign)
        >>> results = rows.sms.collect(campaign)  # no receiver here: no delivery reports were requested
        >>> results[["msisdn", "send_state", "delivery_status"]]
                       msisdn send_state delivery_status
        customer
        c1        85512345678   accepted   not requested
        c2                NaN   not_sent            <NA>
        >>> results.loc["c2", "reason"]
        'skipped by audience: too short for a Cambodian number'
        >>> ledger.close()
        """
        from .report import collect

        return collect(self._df, campaign)

    def summary(self, by: str | Sequence[str] | None = None, *, tidy: bool = False) -> pd.DataFrame:
        """Delivery counts and rates, overall or per column: :func:`plasgate_nb.delivery_summary`.

        >>> results = pd.DataFrame({  # what collect() returns, reduced to the columns used here
        ...     "carrier": ["Smart", "Smart", "Smart", "Metfone", "Metfone"],
        ...     "send_state": ["accepted", "accepted", "accepted", "accepted", "rejected"],
        ...     "delivery_status": ["DELIVRD", "UNDELIV", None, "DELIVRD", None]})
        >>> by_carrier = results.sms.summary(by="carrier")
        >>> by_carrier[["sent", "delivered", "failed", "pending", "status_UNDELIV", "delivered_rate"]]
                 sent  delivered  failed  pending  status_UNDELIV  delivered_rate
        carrier
        Metfone     1          1       0        0               0        1.000000
        Smart       3          1       1        1               1        0.333333
        >>> results.sms.summary(tidy=True)[["status", "count", "rate"]]
            status  count  rate
        0  DELIVRD      2  0.50
        1  UNDELIV      1  0.25
        2  pending      1  0.25
        """
        _pandas_only(self._df, "summary")
        from .report import delivery_summary

        return delivery_summary(self._df, by, tidy=tidy)

    def plot(self, kind: str = "delivery_rate", *, by: str | Sequence[str] | None = None, ax: Any = None) -> Any:
        """Chart collected results (``delivery_rate``, ``status_breakdown``, ``time_to_deliver``, ``funnel``).

        Delegates to :mod:`plasgate_nb.charts` and returns the matplotlib Axes (a new pyplot figure
        without ``ax``). ``delivery_rate`` needs ``by``; ``funnel`` takes none; an unknown kind or a
        ``by`` a chart cannot use raises :class:`~plasgate_nb.errors.OptionError` (a ``ValueError``).

        >>> from matplotlib.figure import Figure
        >>> results = pd.DataFrame({
        ...     "carrier": ["Smart", "Smart", "Metfone", "Metfone"],
        ...     "send_state": ["accepted", "accepted", "accepted", "not_sent"],
        ...     "delivery_status": ["DELIVRD", "EXPIRED", "DELIVRD", None]})
        >>> ax = results.sms.plot("status_breakdown", by="carrier", ax=Figure().subplots())
        >>> [t.get_text() for t in ax.get_legend().get_texts()]
        ['DELIVRD (delivered)', 'EXPIRED (validity ended)', 'not sent']
        >>> results.sms.plot("funnel", by="carrier")
        Traceback (most recent call last):
        ...
        plasgate_nb.errors.OptionError: plot('funnel') has no by= (it charts the whole frame)
        """
        from . import charts

        _pandas_only(self._df, "plot")
        if kind not in PLOTS:
            raise OptionError(f"kind must be one of {PLOTS}, not {kind!r}")
        if kind == "delivery_rate" and by is None:
            raise OptionError("plot('delivery_rate') needs by=<column> (the groups to compare)")
        if kind == "funnel" and by is not None:
            raise OptionError("plot('funnel') has no by= (it charts the whole frame)")
        if kind == "delivery_rate":
            return charts.plot_delivery_rate(self._df, by, ax=ax)
        if kind == "status_breakdown":
            return charts.plot_status_breakdown(self._df, by, ax=ax)
        if kind == "time_to_deliver":
            return charts.plot_time_to_deliver(self._df, ax=ax, by=by)
        return charts.plot_funnel(self._df, ax=ax)


def _pandas_only(df: Any, step: str) -> None:
    """OptionError for a step that reads collected results, which fit in memory: compute the Dask frame first."""
    if is_dask_frame(df):
        raise OptionError(f"sms.{step}() works on a pandas frame: call .compute() on the Dask frame first")


def _register_on_dask() -> None:
    """Register :class:`SmsAccessor` as ``ddf.sms`` on Dask DataFrames."""
    from dask.dataframe.extensions import register_dataframe_accessor

    register_dataframe_accessor("sms")(SmsAccessor)


when_imported("dask.dataframe", _register_on_dask)
