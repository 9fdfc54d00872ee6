"""``SendForm``: an ipywidgets face over prepare -> render -> estimate -> Campaign.send -> collect.

The form holds no logic of its own: every figure it shows comes from :mod:`plasgate_nb.audience`,
:mod:`plasgate_nb.compose`, :mod:`plasgate_nb.experiments`, :mod:`plasgate_nb.campaign` and
:mod:`plasgate_nb.report`, and every error it shows is the message of the exception they raised.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ipywidgets as w
import pandas as pd

from ..audience import prepare_audience
from ..batch import validate_sender
from ..campaign import Campaign, SendSummary
from ..compose import estimate_cost, preview, render_messages
from ..errors import ConfigError, PlasgateError
from ..experiments import HOLDOUT, assign_variants
from ..gateway import Gateway
from ..ledger import Ledger
from ..pacing import FrequencyCap, QuietHours
from ..smpp import SmppConfig
from . import _view
from ._choices import (
    DEFAULT_LEDGER,
    INDEX,
    NO_CONSENT,
    OVERALL,
    cap_text,
    close_tree,
    default_sender,
    guess_consent,
    guess_phone,
    quiet_text,
    transport_options,
)
from ._run import Plan, SendJob
from ._templates import NO_VALUE, TemplateSection, TemplateSpec

__all__ = ["SendForm", "transport_options"]

logger = logging.getLogger("plasgate_nb")
SMPP_RECEIPT_WAIT = 30.0  # seconds an SMPP send stays bound for receipts, unless told otherwise
QUIET_HOURS = "21:00-08:00"  # the form offers quiet hours, on (Campaign's own default is off)


class SendForm:
    """An ipywidgets form to preview, price and send a campaign over a DataFrame, exactly once.

    ``campaign`` is the campaign name (or a :class:`~plasgate_nb.campaign.Campaign` whose name,
    gateway, ledger, receiver, transport, key and pacing become the defaults); ``gateway`` a
    :class:`~plasgate_nb.gateway.Gateway` (default ``Gateway.from_env()`` at send time); ``ledger`` a
    :class:`~plasgate_nb.ledger.Ledger` or its path/URL (default ``plasgate_nb.db``); ``receiver`` a
    running :class:`~plasgate_nb.callbacks.CallbackServer` (or its public URL) that turns on delivery
    reports; ``smpp`` a :class:`~plasgate_nb.smpp.SmppConfig` that adds the SMPP transport (receipts
    and replies then come over the session, which stays bound ``receipt_timeout`` seconds after the
    last answer); ``suppress`` an opt-out list for ``prepare_audience``. Display it as the last expression
    of a cell, or ``display(form.widget)``.

    Templates: ``template`` is one Jinja text, or a mapping of values of the column ``template_by`` to
    texts (``{"km": tpl_km, "en": tpl_en}, template_by="language"``: as ``render_messages(..., by=)``);
    ``variants`` (``{"A": tpl_a, "B": tpl_b}``) starts the form on A/B variants, assigned by
    ``assign_variants`` with ``holdout`` and ``seed`` (default: the campaign name). ``consent`` names the
    consent column for ``prepare_audience`` (default True: a column named like ``opt_in`` or ``consent``
    when there is one; False: none). ``quiet_hours`` (``"21:00-08:00"`` by default, on; None: off) and
    ``frequency_cap`` (``"2/7D"``; None: off) fill the pacing fields passed to ``Campaign``.

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
        consent: str | bool = True,
        template: str | Mapping[Any, str] = "",
        template_by: str | None = None,
        variants: Mapping[str, str] | None = None,
        holdout: float = 0.1,
        seed: str | None = None,
        quiet_hours: Any = QUIET_HOURS,
        frequency_cap: Any = None,
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
            if quiet_hours == QUIET_HOURS and getattr(campaign, "quiet_hours", None) is not None:
                quiet_hours = campaign.quiet_hours
            if frequency_cap is None:
                frequency_cap = getattr(campaign, "frequency_cap", None)
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
        self._prepared: dict[tuple[str, str | None], pd.DataFrame] = {}
        self._samples: dict[tuple[Any, ...], int] = {}
        self._pending: Plan | None = None
        self._job: SendJob | None = None
        self.last_summary: SendSummary | None = None
        self.last_plan: Plan | None = None  # the last dry run's or confirmed send's: campaign, rendered frame, totals
        columns = [str(c) for c in df.columns]
        if consent is True:
            consent_choice = guess_consent(columns)
        elif consent is False or consent is None:
            consent_choice = NO_CONSENT
        elif consent in columns:
            consent_choice = consent
        else:
            raise ConfigError(f"consent names a column the frame does not have: {consent!r} (columns: {columns})")
        self.templates = TemplateSection(
            df,
            template=template,
            template_by=template_by,
            variants=variants,
            holdout=holdout,
            seed=seed,
            on_change=self._on_templates_input,
        )
        self._build(campaign, consent_choice, quiet_hours, frequency_cap)

    # ------------------------------------------------------------------------------------------ layout
    def _build(self, campaign: str | Campaign | None, consent: str, quiet_hours: Any, frequency_cap: Any) -> None:
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
        self.consent = w.Dropdown(
            options=[NO_CONSENT, *columns],
            value=consent,
            description="consent column",
            style=style,
            tooltip="rows saying no, false, 0 or nothing there are not sent",
        )
        sections = self.templates
        self.template_mode, self.template_by, self.template = sections.mode, sections.by, sections.text
        self.add_variant_button, self.holdout, self.seed = sections.add_variant_button, sections.holdout, sections.seed
        self.value_templates, self.variants_box = sections.values_box, sections.variants_box
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
        self.quiet_hours_on = w.Checkbox(
            value=quiet_hours is not None,
            description="quiet hours",
            indent=False,
            layout=w.Layout(width="auto"),
        )
        self.quiet_hours = w.Text(
            value=quiet_text(quiet_hours) if quiet_hours is not None else QUIET_HOURS,
            placeholder="21:00-08:00",
            description="no sending",
            tooltip="Asia/Phnom_Penh time; a send inside the window waits for its end",
            style={"description_width": "6em"},
            layout=w.Layout(width="18em"),
        )
        self.frequency_cap = w.Text(
            value=cap_text(frequency_cap) if frequency_cap is not None else "",
            placeholder="2/7D: at most 2 in 7 days; empty: off",
            description="frequency cap",
            style=style,
            layout=w.Layout(width="34em"),
        )
        self.dlr = w.Checkbox(
            value=self._receiver is not None,
            disabled=self._receiver is None,
            description="delivery reports" + ("" if self._receiver is not None else " (needs receiver=)"),
            indent=False,
        )
        self.by = w.Dropdown(
            options=self._by_options(),
            value={"by": "template", "variants": "variant"}.get(self.templates.mode.value, "carrier"),
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
                self.consent,
                self.templates.widget,
                w.HBox([self.mask, w.VBox([self.row])]),
                self.preview,
                w.HBox([self.transport, self.schedule]),
                w.HBox([self.quiet_hours_on, self.quiet_hours, self.frequency_cap]),
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
        for control in (self.row, self.mask, self.phone, self.consent, self.key):
            control.observe(self._on_preview_input, names="value")
        for control in (self.name, self.sender, self.transport, self.schedule, self.dlr):
            control.observe(self._on_settings_input, names="value")
        for control in (self.quiet_hours_on, self.quiet_hours, self.frequency_cap):
            control.observe(self._on_settings_input, names="value")
        self.template_mode.observe(self._on_mode_input, names="value")
        self.dry_run_button.on_click(self._on_dry_run)
        self.send_button.on_click(self._on_send)
        self.confirm_button.on_click(self._on_confirm)
        self.cancel_button.on_click(self._on_cancel)
        self.stop_button.on_click(self._on_stop)
        self.by.observe(self._on_by_input, names="value")
        self.refresh_preview()

    def _by_options(self) -> list[str]:
        """The "report by" choices: overall, carrier, the template or variant when there are several, the columns."""
        mode = self.templates.mode.value
        extra = {"one": [], "by": ["template"], "variants": ["variant"]}[mode]
        return list(dict.fromkeys([OVERALL, "carrier", *extra, *(str(c) for c in self.df.columns)]))

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
    @staticmethod
    def _error_text(exc: BaseException) -> str:
        """What the form says about an exception (plasgate errors as they are; others with their type)."""
        if isinstance(exc, PlasgateError):
            return str(exc)
        logger.exception("send form: unexpected error", exc_info=exc)
        return f"unexpected {type(exc).__name__}: {exc}"

    def _fail(self, exc: BaseException) -> None:
        """Show an exception in the error area."""
        self.error.value = _view.error_html(self._error_text(exc))

    def _hide_confirm(self) -> None:
        """Drop a pending confirmation."""
        self._pending = None
        self.confirm_box.layout.display = "none"

    # ------------------------------------------------------------------------------------------ preview
    @property
    def consent_column(self) -> str | None:
        """The chosen consent column, or None when every row counts as consenting."""
        return None if self.consent.value == NO_CONSENT else self.consent.value

    def _audience(self) -> pd.DataFrame:
        """``prepare_audience`` over the whole frame for the chosen phone and consent columns (cached)."""
        phone = self.phone.value
        if phone is None:
            raise ConfigError("choose the phone column")
        key = (phone, self.consent_column)
        if key not in self._prepared:
            self._prepared = {
                key: prepare_audience(self.df, phone=phone, suppress=self.suppress, consent=self.consent_column)
            }
            self._samples = {}
        return self._prepared[key]

    def _spec(self) -> TemplateSpec:
        """The template section's texts as ``render_messages`` (and ``assign_variants``) take them."""
        return self.templates.spec(campaign=self.name.value.strip())

    def _render(self, frame: pd.DataFrame, spec: TemplateSpec | None = None) -> tuple[pd.DataFrame, list[str]]:
        """``assign_variants`` (for variants) and ``render_messages`` with the form's templates and mask.

        Warnings are returned as notes.
        """
        spec = self._spec() if spec is None else spec
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if spec.variants:
                frame = self._assign(frame, spec)
            out = render_messages(frame, spec.template, mask=list(self.mask.value), by=spec.by, default=spec.default)
        return out, [str(item.message) for item in caught]

    def _assign(self, frame: pd.DataFrame, spec: TemplateSpec) -> pd.DataFrame:
        """``assign_variants`` with the form's variants, holdout, key column and seed."""
        return assign_variants(frame, list(spec.variants), holdout=spec.holdout, key=self.key_column, seed=spec.seed)

    def _on_preview_input(self, _change: Any) -> None:
        """Inputs that change the rendered text: refresh the preview and drop any pending confirmation."""
        self._hide_confirm()
        self.refresh_preview()

    def _on_templates_input(self) -> None:
        """A template text, name or choice changed (called by the template section)."""
        self._on_preview_input(None)

    def _on_mode_input(self, _change: Any) -> None:
        """Another template mode: offer its grouping ("template" or "variant") under "report by"."""
        current = self.by.value
        self.by.options = self._by_options()
        wanted = {"by": "template", "variants": "variant"}.get(self.template_mode.value)
        self.by.value = (
            wanted
            if wanted is not None and current == "carrier"
            else (current if current in self.by.options else "carrier")
        )

    def _on_settings_input(self, _change: Any) -> None:
        """Inputs that change what a send would do: drop any pending confirmation."""
        if self._pending is not None:
            self._hide_confirm()
            self.notice.value = _view.notice_html("Settings changed: press Send again to see the new totals.")

    def refresh_preview(self) -> None:
        """Render the chosen row and show its text, report view, encoding, segments and cost; then each template's."""
        if len(self.df) == 0 or (self.template_mode.value == "one" and not self.template.value.strip()):
            self.preview.value = "<i>Type a template to see the message for the chosen row.</i>"
            self.error.value = ""
            return
        try:
            prepared = self._audience()
        except Exception as exc:
            self.preview.value = ""
            self._fail(exc)
            return
        position = min(max(int(self.row.value), 0), len(self.df) - 1)
        self._refresh_editors(prepared, position)
        try:
            one = prepared.iloc[[position]]
            spec = self._spec()
            if spec.variants and self._assign(one, spec)["variant"].iloc[0] == HOLDOUT:
                self.error.value = ""
                self.preview.value = _view.holdout_html(one.iloc[0], label=self.df.index[position])
                return
            rendered, notes = self._render(one, spec)
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

    def _sample(self, prepared: pd.DataFrame, column: str, value: Any) -> int | None:
        """The position of the first row (to be sent, if any) whose ``column`` holds ``value``; cached."""
        key = (column, value)
        if key not in self._samples:
            cells = prepared[column]
            match = (cells.isna() if value is NO_VALUE else cells.eq(value)).fillna(False).to_numpy(dtype=bool)
            good = match & prepared["audience_status"].eq("ok").to_numpy(dtype=bool)
            hits = good.nonzero()[0] if good.any() else match.nonzero()[0]
            self._samples[key] = int(hits[0]) if len(hits) else -1
        found = self._samples[key]
        return None if found < 0 else found

    def _refresh_editors(self, prepared: pd.DataFrame, position: int) -> None:
        """Each template's live preview: a row of its value (per value), or the chosen row (variants)."""
        mode = self.template_mode.value
        for editor in self.templates.editors():
            at = self._sample(prepared, editor.column, editor.key) if mode == "by" else position
            if at is None:
                editor.preview.value = "<i>no row has this value</i>"
                continue
            if not editor.text.value.strip():
                editor.preview.value = "<i>Type the template to see a message.</i>"
                continue
            try:
                with warnings.catch_warnings(record=True):
                    warnings.simplefilter("always")
                    rendered = render_messages(prepared.iloc[[at]], editor.text.value, mask=list(self.mask.value))
                shown = preview(rendered, 1).iloc[0]
            except Exception as exc:
                editor.preview.value = _view.error_html(self._error_text(exc))
                continue
            editor.preview.value = _view.template_preview_html(shown, label=self.df.index[at])

    # ------------------------------------------------------------------------------------------ planning
    def _ledger_obj(self) -> Ledger:
        """The ledger (opened on first use when given as a path)."""
        if self._ledger is None:
            self._ledger = Ledger(self._ledger_arg if self._ledger_arg is not None else DEFAULT_LEDGER)
            self._owns_ledger = True
        return self._ledger

    def pacing(self) -> dict[str, Any]:
        """The quiet hours and frequency cap fields as ``Campaign`` keywords (parsed by ``plasgate_nb.pacing``)."""
        text = self.quiet_hours.value.strip()
        quiet = QuietHours.parse(text or None) if self.quiet_hours_on.value else None
        if self.quiet_hours_on.value and quiet is None:
            raise ConfigError("quiet hours are ticked but empty: type a window like 21:00-08:00, or untick them")
        cap = FrequencyCap.parse(self.frequency_cap.value.strip() or None)
        return {"quiet_hours": quiet, "frequency_cap": cap}

    def _campaign(self) -> Campaign:
        """A Campaign with the form's settings (errors name the field to fix; credentials are not checked here)."""
        name = self.name.value.strip()
        if not name:
            raise ConfigError("enter a campaign name (keep it to re-run the form without sending twice)")
        sender = validate_sender(self.sender.value.strip())
        gateway = (self._gateway if self._gateway is not None else Gateway.from_env()).with_options(sender=sender)
        common: dict[str, Any] = {
            "gateway": gateway,
            "ledger": self._ledger_obj(),
            "key": self.key_column,
            "price_per_segment": self.price_per_segment,
            "progress": False,
            **self.pacing(),
        }
        if self.transport.value == "smpp":  # receipts come over the session, not to the receiver
            return Campaign(name, transport="smpp", smpp=self._smpp, receipt_timeout=self.receipt_timeout, **common)
        receiver = self._receiver if self.dlr.value else None
        return Campaign(name, transport=self.transport.value, receiver=receiver, **common)

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
        return Plan(campaign, rendered, summary, estimate, schedule, notes, self._settings(campaign, rendered))

    def _settings(self, campaign: Campaign, rendered: pd.DataFrame) -> list[tuple[str, str]]:
        """Lines for the totals: messages per template (or variant) and the pacing rules in force."""
        lines = []
        if "template" in rendered.columns:
            kept = rendered.loc[rendered["audience_status"].eq("ok"), "template"].astype("string")
            order = [str(key) for key in self._spec().template] + ["default", HOLDOUT]
            counts = kept.value_counts().sort_index(
                key=lambda keys: keys.map(lambda k: order.index(k) if k in order else len(order))
            )
            label = "variants" if self.template_mode.value == "variants" else "templates"
            lines.append((label, ", ".join(f"{k} {n}" for k, n in counts.items())))
        for label, value in (("quiet hours", campaign.quiet_hours), ("frequency cap", campaign.frequency_cap)):
            lines.append((label, "off" if value is None else str(value)))
        return lines

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
        self.last_summary, self.last_plan = plan.summary, plan
        self.notice.value = _view.totals_html(
            "Dry run: nothing was sent.",
            plan.summary,
            plan.estimate,
            schedule=plan.schedule,
            notes=plan.notes,
            extra=plan.settings,
        )

    def _on_send(self, _button: Any = None) -> None:
        """Compute the totals and ask for confirmation (nothing is sent until Confirm)."""
        plan = self._fresh_plan()
        if plan is None:
            return
        summary = plan.summary
        if summary.recipients == 0:
            lines = [f"{summary.already_sent} row(s) were already sent and are not sent again."]
            if summary.changed:
                lines.append(f"{len(summary.changed)} row(s) changed since planned and are not resent.")
            if summary.skipped_reasons:
                lines.append("Left out: " + ", ".join(f"{k} {v}" for k, v in summary.skipped_reasons.items()) + ".")
            self.notice.value = _view.notice_html(f"Nothing new to send for campaign {summary.campaign!r}.", lines)
            return
        self._pending = plan
        self.confirm_text.value = _view.totals_html(
            f"Send {plan.summary.recipients} message(s)? Please confirm.",
            plan.summary,
            plan.estimate,
            schedule=plan.schedule,
            notes=plan.notes,
            extra=plan.settings,
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
        self.last_plan = plan
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
            self._sent_lines(summary),
        )
        if waiting and summary.accepted:
            self.stop_button.disabled = False
            self.stop_button.layout.display = None
            self.status.value = _view.status_html(
                "Waiting for delivery reports", f"0 of {summary.accepted} final; Stop waiting ends the wait"
            )

    @staticmethod
    def _sent_lines(summary: SendSummary) -> list[str]:
        """What to add under "Sent campaign ...": why some were not accepted, what the quiet hours did."""
        lines = []
        if summary.rejected or summary.uncertain:
            lines.append("Why some were not accepted is listed in the results below.")
        if summary.deferred_until is not None:
            lines.append(
                f"Quiet hours: {summary.retry_later} message(s) left planned until "
                f"{_view.local_time(summary.deferred_until)}; press Send again then."
            )
        elif summary.scheduled_for is not None:
            lines.append(f"Scheduled by the gateway for {_view.local_time(summary.scheduled_for)} (quiet hours).")
        return lines

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
        self.templates.close()
