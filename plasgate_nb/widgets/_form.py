"""``SendForm``: an ipywidgets face over prepare -> render -> estimate -> Campaign.send -> collect.

The form holds no logic of its own: every figure it shows comes from :mod:`plasgate_nb.audience`,
:mod:`plasgate_nb.compose`, :mod:`plasgate_nb.campaign` and :mod:`plasgate_nb.report`, and every
error it shows is the message of the exception they raised.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import ipywidgets as w
import pandas as pd

from ..audience import prepare_audience
from ..batch import validate_sender
from ..campaign import Campaign, SendSummary
from ..compose import estimate_cost, preview, render_messages
from ..errors import ConfigError, PlasgateError
from ..gateway import Gateway
from ..ledger import Ledger
from ..smpp import SmppConfig
from . import _view
from ._choices import DEFAULT_LEDGER, INDEX, OVERALL, close_tree, default_sender, guess_phone, transport_options
from ._run import Plan, SendJob

__all__ = ["SendForm", "transport_options"]

logger = logging.getLogger("plasgate_nb")
SMPP_RECEIPT_WAIT = 30.0  # seconds an SMPP send stays bound for receipts, unless told otherwise


class SendForm:
    """An ipywidgets form to preview, price and send a campaign over a DataFrame, exactly once.

    ``campaign`` is the campaign name (or a :class:`~plasgate_nb.campaign.Campaign` whose name,
    gateway, ledger, receiver, transport and key become the defaults); ``gateway`` a
    :class:`~plasgate_nb.gateway.Gateway` (default ``Gateway.from_env()`` at send time); ``ledger`` a
    :class:`~plasgate_nb.ledger.Ledger` or its path/URL (default ``plasgate_nb.db``); ``receiver`` a
    running :class:`~plasgate_nb.callbacks.CallbackServer` (or its public URL) that turns on delivery
    reports; ``smpp`` a :class:`~plasgate_nb.smpp.SmppConfig` that adds the SMPP transport (receipts
    and replies then come over the session, which stays bound ``receipt_timeout`` seconds after the
    last answer); ``suppress`` an opt-out list for ``prepare_audience``. Display it as the last expression
    of a cell, or ``display(form.widget)``.

    Dry run needs no credentials; Send checks them, then asks for confirmation with the totals. The
    confirmed send runs in a background thread (``form.wait()`` joins it) and gives the buttons back as
    soon as the messages are sent; it then fills the results area as delivery reports arrive, until all
    are in, ``report_timeout`` seconds, or Stop waiting (``form.stop()``). The line beside the progress
    bar says what is happening and ends with a ``Done`` state.
    """

    def __init__(
        self,
        df: pd.DataFrame,
        *,
        campaign: str | Campaign | None = None,
        gateway: Gateway | None = None,
        ledger: Ledger | str | Path | None = None,
        receiver: Any = None,
        price_per_segment: float = 0.012,
        currency: str = "USD",
        suppress: Any = None,
        template: str = "",
        report_timeout: float = 300.0,
        report_until: float = 1.0,
        poll: float = 1.0,
        smpp: SmppConfig | None = None,
        receipt_timeout: float | None = None,
    ) -> None:
        if not isinstance(df, pd.DataFrame):
            raise ConfigError(f"SendForm needs a pandas DataFrame, not {type(df).__name__}")
        if isinstance(campaign, Campaign):
            gateway = gateway if gateway is not None else campaign.gateway
            ledger = ledger if ledger is not None else campaign.ledger
            receiver = receiver if receiver is not None else campaign.receiver
            smpp = smpp if smpp is not None else campaign.smpp
            receipt_timeout = receipt_timeout if receipt_timeout is not None else campaign.receipt_timeout
        if smpp is not None and not isinstance(smpp, SmppConfig):
            raise ConfigError(f"smpp must be an SmppConfig, not {type(smpp).__name__}")
        self._smpp = smpp
        self.receipt_timeout = SMPP_RECEIPT_WAIT if receipt_timeout is None else receipt_timeout
        self.df = df
        self.price_per_segment = price_per_segment
        self.currency = currency
        self.suppress = suppress
        self.report_timeout = report_timeout
        self.report_until = report_until
        self.poll = poll
        self._gateway = gateway
        self._ledger_arg = ledger
        self._ledger: Ledger | None = ledger if isinstance(ledger, Ledger) else None
        self._owns_ledger = False
        self._receiver = receiver
        self._prepared: dict[str, pd.DataFrame] = {}
        self._pending: Plan | None = None
        self._job: SendJob | None = None
        self.last_summary: SendSummary | None = None
        self._build(campaign, template)

    # ------------------------------------------------------------------------------------------ layout
    def _build(self, campaign: str | Campaign | None, template: str) -> None:
        """Create the widgets and wire their events."""
        columns = [str(c) for c in self.df.columns]
        name = campaign.name if isinstance(campaign, Campaign) else (campaign or "")
        sender = default_sender(self._gateway)
        wide = w.Layout(width="95%")
        style = {"description_width": "9em"}
        self.name = w.Text(value=name, description="campaign", placeholder="a name you keep for re-runs", style=style)
        self.phone = w.Dropdown(options=columns, value=guess_phone(columns), description="phone column", style=style)
        key_default = campaign.key if isinstance(campaign, Campaign) and campaign.key is not None else INDEX
        self.key = w.Dropdown(  # sentinel strings, not None: a Dropdown shows a None value as an empty box
            options=[INDEX, *columns],
            value=key_default,
            description="key column",
            style=style,
        )
        self.template = w.Textarea(
            value=template,
            description="template",
            layout=w.Layout(width="95%", height="7em"),
            placeholder="Hi {{ first_name }}, use code {{ coupon }}",
            style=style,
        )
        self.mask = w.SelectMultiple(
            options=columns, description="mask columns", rows=min(6, max(len(columns), 1)), style=style
        )
        self.row = w.BoundedIntText(
            value=0, min=0, max=max(len(self.df) - 1, 0), description="preview row", style=style
        )
        self.preview = w.HTML(layout=wide)
        self.sender = w.Text(value=sender, description="sender", style=style)
        transports = transport_options(smpp=self._smpp is not None)
        chosen = campaign.transport if isinstance(campaign, Campaign) else transports[0][1]
        self.transport = w.Dropdown(options=transports, value=chosen, description="transport", style=style)
        self.schedule = w.Text(
            description="schedule at",
            placeholder="YYYY-MM-DD HH:MM:SS Phnom Penh; empty: now",
            style=style,
            layout=w.Layout(width="40em"),
        )
        self.dlr = w.Checkbox(
            value=self._receiver is not None,
            disabled=self._receiver is None,
            description="delivery reports" + ("" if self._receiver is not None else " (needs receiver=)"),
            indent=False,
        )
        self.by = w.Dropdown(
            options=list(dict.fromkeys([OVERALL, "carrier", *columns])),
            value="carrier",
            description="report by",
            style=style,
        )
        self.dry_run_button = w.Button(description="Dry run", icon="calculator", tooltip="totals; sends nothing")
        self.send_button = w.Button(description="Send…", button_style="primary", icon="paper-plane")
        self.stop_button = w.Button(
            description="Stop waiting",
            icon="stop",
            tooltip="stop following delivery reports (the receiver still records them)",
            layout=w.Layout(display="none"),
        )
        self.confirm_button = w.Button(description="Confirm send", button_style="danger", icon="check")
        self.cancel_button = w.Button(description="Cancel", icon="times")
        self.confirm_text = w.HTML()
        self.confirm_box = w.VBox(
            [self.confirm_text, w.HBox([self.confirm_button, self.cancel_button])],
            layout=w.Layout(display="none", border="1px solid #c62828", padding="4px"),
        )
        self.error = w.HTML(layout=wide)
        self.notice = w.HTML(layout=wide)
        self.progress = w.IntProgress(value=0, min=0, max=1, bar_style="info", layout=w.Layout(width="14em"))
        self.status = w.HTML(layout=w.Layout(width="auto", flex="1 1 auto"))
        self.progress_box = w.HBox([self.progress, self.status], layout=w.Layout(display="none", width="95%"))
        self.results = w.Output(layout=wide)
        self.widget = w.VBox(
            [
                w.HBox([self.name, self.sender]),
                w.HBox([self.phone, self.key]),
                self.template,
                w.HBox([self.mask, w.VBox([self.row])]),
                self.preview,
                w.HBox([self.transport, self.schedule]),
                w.HBox([self.dlr, self.by]),
                w.HBox([self.dry_run_button, self.send_button, self.stop_button]),
                self.confirm_box,
                self.error,
                self.notice,
                self.progress_box,
                self.results,
            ]
        )
        self._name_parts()
        for control in (self.template, self.row, self.mask, self.phone):
            control.observe(self._on_preview_input, names="value")
        for control in (self.name, self.key, self.sender, self.transport, self.schedule, self.dlr):
            control.observe(self._on_settings_input, names="value")
        self.dry_run_button.on_click(self._on_dry_run)
        self.send_button.on_click(self._on_send)
        self.confirm_button.on_click(self._on_confirm)
        self.cancel_button.on_click(self._on_cancel)
        self.stop_button.on_click(self._on_stop)
        self.by.observe(self._on_by_input, names="value")
        self.refresh_preview()

    def _name_parts(self) -> None:
        """Give each control a CSS class ``plasgate-<attribute>`` (stable handles for styling and browser tests)."""
        self.widget.add_class("plasgate-form")
        for attribute, value in vars(self).items():
            if isinstance(value, w.DOMWidget) and value is not self.widget:
                value.add_class("plasgate-" + attribute.replace("_", "-"))

    def _ipython_display_(self) -> None:
        """Show the form in Jupyter."""
        from IPython.display import display

        display(self.widget)

    def __repr__(self) -> str:
        return f"<SendForm {self.name.value!r}: {len(self.df)} rows, {'sending' if self.running else 'idle'}>"

    # ------------------------------------------------------------------------------------------ messages
    def _fail(self, exc: BaseException) -> None:
        """Show an exception in the error area (plasgate errors as they are; others with their type)."""
        if isinstance(exc, PlasgateError):
            text = str(exc)
        else:
            logger.exception("send form: unexpected error", exc_info=exc)
            text = f"unexpected {type(exc).__name__}: {exc}"
        self.error.value = _view.error_html(text)

    def _hide_confirm(self) -> None:
        """Drop a pending confirmation."""
        self._pending = None
        self.confirm_box.layout.display = "none"

    # ------------------------------------------------------------------------------------------ preview
    def _audience(self) -> pd.DataFrame:
        """``prepare_audience`` over the whole frame for the chosen phone column (cached per column)."""
        phone = self.phone.value
        if phone is None:
            raise ConfigError("choose the phone column")
        if phone not in self._prepared:
            self._prepared = {phone: prepare_audience(self.df, phone=phone, suppress=self.suppress)}
        return self._prepared[phone]

    def _render(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
        """``render_messages`` with the form's template and mask; warnings returned as notes."""
        if not self.template.value.strip():
            raise ConfigError("the template is empty: type the message text")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = render_messages(frame, self.template.value, mask=list(self.mask.value))
        return out, [str(item.message) for item in caught]

    def _on_preview_input(self, _change: Any) -> None:
        """Inputs that change the rendered text: refresh the preview and drop any pending confirmation."""
        self._hide_confirm()
        self.refresh_preview()

    def _on_settings_input(self, _change: Any) -> None:
        """Inputs that change what a send would do: drop any pending confirmation."""
        if self._pending is not None:
            self._hide_confirm()
            self.notice.value = _view.notice_html("Settings changed: press Send again to see the new totals.")

    def refresh_preview(self) -> None:
        """Render the chosen row and show its text, report view, encoding, segments and cost."""
        if not self.template.value.strip() or len(self.df) == 0:
            self.preview.value = "<i>Type a template to see the message for the chosen row.</i>"
            self.error.value = ""
            return
        try:
            position = min(max(int(self.row.value), 0), len(self.df) - 1)
            one = self._audience().iloc[[position]]
            rendered, notes = self._render(one)
            shown = preview(rendered, 1).iloc[0]
            for column in ("audience_status", "audience_reason"):
                shown[column] = rendered.iloc[0][column]
            cost = estimate_cost(rendered, price_per_segment=self.price_per_segment, currency=self.currency)
        except Exception as exc:
            self.preview.value = ""
            self._fail(exc)
            return
        self.error.value = ""
        self.preview.value = _view.preview_html(
            shown, label=self.df.index[position], cost=cost.total, currency=self.currency, notes=notes
        )

    # ------------------------------------------------------------------------------------------ planning
    def _ledger_obj(self) -> Ledger:
        """The ledger (opened on first use when given as a path)."""
        if self._ledger is None:
            self._ledger = Ledger(self._ledger_arg if self._ledger_arg is not None else DEFAULT_LEDGER)
            self._owns_ledger = True
        return self._ledger

    def _campaign(self) -> Campaign:
        """A Campaign with the form's settings (errors name the field to fix; credentials are not checked here)."""
        name = self.name.value.strip()
        if not name:
            raise ConfigError("enter a campaign name (keep it to re-run the form without sending twice)")
        sender = validate_sender(self.sender.value.strip())
        gateway = (self._gateway if self._gateway is not None else Gateway.from_env()).with_options(sender=sender)
        if self.transport.value == "smpp":  # receipts come over the session, not to the receiver
            return Campaign(
                name,
                gateway=gateway,
                ledger=self._ledger_obj(),
                transport="smpp",
                key=self.key_column,
                price_per_segment=self.price_per_segment,
                progress=False,
                smpp=self._smpp,
                receipt_timeout=self.receipt_timeout,
            )
        receiver = self._receiver if self.dlr.value else None
        return Campaign(
            name,
            gateway=gateway,
            ledger=self._ledger_obj(),
            transport=self.transport.value,
            key=self.key_column,
            receiver=receiver,
            price_per_segment=self.price_per_segment,
            progress=False,
        )

    def _missing_credentials(self, campaign: Campaign) -> str | None:
        """Why the campaign's gateway could not send (the message of ``Gateway.require``), or None."""
        if campaign.transport == "smpp":  # the SmppConfig holds the session's login
            return None
        try:
            campaign.gateway.require(campaign.transport)  # type: ignore[arg-type]
        except ConfigError as exc:
            return str(exc)
        return None

    def plan(self, *, dry_run: bool = False) -> Plan:
        """Prepare, render and dry-run the whole frame with the form's settings; send nothing.

        A plan for sending (the default) needs the gateway's credentials and raises ConfigError naming
        the missing ones; ``dry_run=True`` does not (as the CLI's ``send --dry-run``): it notes them.
        """
        prepared = self._audience()
        rendered, notes = self._render(prepared)
        estimate = estimate_cost(rendered, price_per_segment=self.price_per_segment, currency=self.currency)
        if estimate.messages == 0:
            counts = prepared["audience_status"].value_counts()
            raise ConfigError("no row can be sent: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        campaign = self._campaign()
        missing = self._missing_credentials(campaign)
        if missing is not None:
            if not dry_run:
                raise ConfigError(missing)
            notes.append(f"A send would stop here: {missing}.")
        schedule = self.schedule.value.strip() or None
        summary = campaign.send(rendered, dry_run=True, schedule_at=schedule)
        return Plan(campaign, rendered, summary, estimate, schedule, notes)

    def _busy(self) -> bool:
        """Say so when a send is running (and nothing else should start)."""
        if self.running:
            self.error.value = _view.error_html("a send is running: wait for it to finish")
            return True
        return False

    def _fresh_plan(self, *, dry_run: bool = False) -> Plan | None:
        """Clear the messages and compute a plan, or show why not (None when busy or invalid)."""
        self._hide_confirm()
        if self._busy():
            return None
        self.error.value = self.notice.value = ""
        try:
            return self.plan(dry_run=dry_run)
        except Exception as exc:
            self._fail(exc)
            return None

    def _on_dry_run(self, _button: Any = None) -> None:
        """Show what a send would do: totals, cost and projected duration. Sends nothing."""
        plan = self._fresh_plan(dry_run=True)
        if plan is None:
            return
        self.last_summary = plan.summary
        self.notice.value = _view.totals_html(
            "Dry run: nothing was sent.", plan.summary, plan.estimate, schedule=plan.schedule, notes=plan.notes
        )

    def _on_send(self, _button: Any = None) -> None:
        """Compute the totals and ask for confirmation (nothing is sent until Confirm)."""
        plan = self._fresh_plan()
        if plan is None:
            return
        if plan.summary.recipients == 0:
            lines = [f"{plan.summary.already_sent} row(s) were already sent and are not sent again."]
            if plan.summary.changed:
                lines.append(f"{len(plan.summary.changed)} row(s) changed since planned and are not resent.")
            self.notice.value = _view.notice_html(f"Nothing new to send for campaign {plan.summary.campaign!r}.", lines)
            return
        self._pending = plan
        self.confirm_text.value = _view.totals_html(
            f"Send {plan.summary.recipients} message(s)? Please confirm.",
            plan.summary,
            plan.estimate,
            schedule=plan.schedule,
            notes=plan.notes,
        )
        self.confirm_box.layout.display = "flex"

    def _on_cancel(self, _button: Any = None) -> None:
        """Drop the pending send."""
        self._hide_confirm()
        self.notice.value = _view.notice_html("Cancelled: nothing was sent.")

    # ------------------------------------------------------------------------------------------ sending
    def _on_confirm(self, _button: Any = None) -> None:
        """Start sending the confirmed plan in the background and return at once."""
        plan = self._pending
        self._hide_confirm()
        if self._busy():
            return
        if plan is None:
            self.error.value = _view.error_html("nothing to confirm: press Send first")
            return
        self._end_previous()
        total = plan.summary.recipients
        self.error.value = ""
        self.notice.value = _view.notice_html(f"Sending {total} message(s)…")
        _view.clear(self.results)
        self._set_sending(True)
        self.progress.bar_style = "info"
        self.progress.max, self.progress.value = max(total, 1), 0
        self.status.value = _view.status_html("Sending", f"0 of {total} message(s) answered")
        self.progress_box.layout.display = "flex"
        follow = self.dlr.value and self._receiver is not None and plan.campaign.transport != "smpp"
        job = SendJob(
            plan,
            follow_reports=follow,
            report_timeout=self.report_timeout,
            report_until=self.report_until,
            poll=self.poll,
            on_progress=self._show_progress,
            on_sent=lambda summary: self._sent(summary, waiting=follow),
            on_results=lambda summary, counts: self._show_results(plan, summary, counts),
            on_done=lambda summary, error: self._finished(job, summary, error),
        )
        self._job = job
        job.start()

    def _end_previous(self) -> None:
        """Stop following the reports of the previous send (its messages are all sent) and wait for its thread."""
        if self._job is not None and self._job.running:
            self._job.stop()
            self._job.wait()

    def _set_sending(self, sending: bool) -> None:
        """Disable Dry run and Send while requests are leaving; enable them again after."""
        for button in (self.send_button, self.dry_run_button):
            button.disabled = sending

    def _show_progress(self, done: int, total: int, label: str) -> None:
        """Move the progress bar and say what it counts (called from the send thread)."""
        self.progress.max = max(total, 1)
        self.progress.value = min(done, self.progress.max)
        if label == "sending":
            self.status.value = _view.status_html("Sending", f"{done} of {total} message(s) answered")
        else:
            self.status.value = _view.status_html(
                "Waiting for delivery reports", f"{done} of {total} final; Stop waiting ends the wait"
            )

    def _sent(self, summary: SendSummary, *, waiting: bool) -> None:
        """The send has ended (called from the send thread): say how it went and give the buttons back."""
        self.last_summary = summary
        self._set_sending(False)
        self.notice.value = _view.notice_html(
            f"Sent campaign {summary.campaign!r}: accepted {summary.accepted}, rejected {summary.rejected}, "
            f"uncertain {summary.uncertain}, to retry {summary.retry_later}.",
            ["Why some were not accepted is listed in the results below."]
            if summary.rejected or summary.uncertain
            else [],
        )
        if waiting and summary.accepted:
            self.stop_button.disabled = False
            self.stop_button.layout.display = None
            self.status.value = _view.status_html(
                "Waiting for delivery reports", f"0 of {summary.accepted} final; Stop waiting ends the wait"
            )

    def _show_results(self, plan: Plan, summary: SendSummary, counts: dict[str, Any] | None) -> None:
        """Replace the results area: the send summary, the delivery summary table and its chart.

        Called from the send thread: everything is computed first, then shown with the ``Output``'s
        ``append_*`` methods (:func:`_view.show`), never through ``with output:``.
        """
        from .. import charts
        from ..report import collect, delivery_summary

        campaign = plan.campaign
        outputs = [_view.text_bundle(str(summary))]
        if counts is not None:
            outputs.append(_view.text_bundle(_view.reports_line(counts)))
        collected = collect(plan.frame, campaign)
        by = self.by.value if self.by.value != OVERALL and self.by.value in collected.columns else None
        if by is not None:  # a missing group value (a number of no known carrier) reads "unknown", not NaN
            collected[by] = collected[by].astype("object").where(collected[by].notna(), "unknown")
        outputs.append(_view.table_bundle(delivery_summary(collected, by=by)))
        refused = collected["send_state"].isin(["rejected", "uncertain"])
        if refused.any():
            reasons = collected.loc[refused, "reason"].fillna("no reason recorded").value_counts()
            outputs.append(
                _view.text_bundle(
                    "not accepted, why:\n" + "\n".join(f"  {n} x {reason}" for reason, n in reasons.items())
                )
            )
        if campaign.transport == "smpp":
            replies = campaign.replies()
            if len(replies):
                outputs.append(_view.text_bundle(f"replies received: {len(replies)}"))
                outputs.append(_view.table_bundle(replies[["msisdn", "text", "received_at"]]))
        if by is None:
            outputs.append(_view.chart_bundle(lambda ax: charts.plot_funnel(collected, ax=ax), alt="send funnel"))
        else:
            outputs.append(
                _view.chart_bundle(
                    lambda ax: charts.plot_delivery_rate(collected, by, ax=ax), alt=f"delivered rate by {by}"
                )
            )
        _view.show(self.results, outputs)

    def _on_by_input(self, _change: Any) -> None:
        """Regroup the results of the last send by the new "report by" column (sends nothing).

        While reports are still followed the next refresh uses it; after the send, the results are redrawn now.
        """
        job = self._job
        if job is None or job.running or job.summary is None:
            return
        try:
            self._show_results(job.plan, job.summary, job.counts)
        except Exception as exc:
            self._fail(exc)

    def _finished(self, job: SendJob, summary: SendSummary | None, error: BaseException | None) -> None:
        """End of the send thread: the done state (or the failure), the buttons back, Stop waiting gone."""
        self._set_sending(False)
        self.stop_button.layout.display = "none"
        self.last_summary = summary
        if error is not None:
            self._fail(error)
            self.progress.bar_style = "danger"
            self.status.value = _view.status_html("Failed", "the error is shown above", tone="error")
            return
        if summary is None:
            return
        troubled = summary.rejected or summary.uncertain
        self.progress.bar_style = "warning" if troubled else "success"
        if not job.follow_reports:
            wait = "receipts came over the SMPP session" if job.plan.campaign.transport == "smpp" else ""
            wait = wait or "delivery reports not requested"
        elif job.counts is None or not job.counts["done"]:
            seen = "" if job.counts is None else f" with {_view.reports_line(job.counts)}"
            why = "you stopped waiting" if job.stopped else f"stopped waiting after {self.report_timeout:g} s"
            wait = f"{why}{seen}; reports that arrive later are still recorded, collect() shows them"
        else:
            wait = _view.reports_line(job.counts)
        self.status.value = _view.status_html(
            "Done",
            f"accepted {summary.accepted}, rejected {summary.rejected}, uncertain {summary.uncertain}; {wait}",
            tone="warning" if troubled else "done",
        )

    # ------------------------------------------------------------------------------------------ control
    @property
    def key_column(self) -> str | None:
        """The chosen key column, or None for the row index."""
        return None if self.key.value == INDEX else self.key.value

    @property
    def running(self) -> bool:
        """Whether a send, or the wait for its delivery reports, is in progress."""
        return self._job is not None and self._job.running

    @property
    def sending(self) -> bool:
        """Whether a send is in progress (its requests may still be leaving); False while only waiting for reports."""
        return self._job is not None and self._job.sending

    def _busy(self) -> bool:
        """Say so when a send is in progress (and no other dry run or send should start)."""
        if self.sending:
            self.error.value = _view.error_html("a send is running: wait for it to finish")
            return True
        return False

    def _on_stop(self, _button: Any = None) -> None:
        """Stop waiting for delivery reports (the Stop waiting button)."""
        self.stop_button.disabled = True
        self.status.value = _view.status_html("Stopping", "the wait for delivery reports ends in a moment")
        self.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the background send (and its report follow-up) to finish; True when it has."""
        return True if self._job is None else self._job.wait(timeout)

    def stop(self) -> None:
        """Stop following delivery reports (the requests of a running send still complete)."""
        if self._job is not None:
            self._job.stop()

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop, wait for the thread, close a ledger the form opened, and close the widgets."""
        self.stop()
        self.wait(timeout)
        if self._owns_ledger and self._ledger is not None:
            self._ledger.close()
            self._ledger = None
        close_tree(self.widget)
