"""The send form's background work: one thread that sends a confirmed plan and follows its delivery reports.

The kernel stays free while it runs: widget values are set from this thread (ipywidgets syncs them) and
results go through ``Output.append_stdout`` / ``Output.append_display_data``, never through ``with
output:`` (which captures whatever the kernel prints at the time, from any cell).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..campaign import Campaign, SendSummary
from ..compose import CostEstimate
from ..transport import GatewayClient, SendResult

__all__ = ["Plan", "ProgressClient", "SendJob"]

logger = logging.getLogger("plasgate_nb")


@dataclass
class Plan:
    """What a Send click prepared and the user is asked to confirm."""

    campaign: Campaign
    frame: pd.DataFrame
    summary: SendSummary
    estimate: CostEstimate
    schedule: str | None
    notes: list[str] = field(default_factory=list)
    settings: list[tuple[str, str]] = field(default_factory=list)  # shown with the totals (templates, pacing)


class ProgressClient(GatewayClient):
    """A GatewayClient that also reports each answered request's recipients to ``on_sent``.

    Campaign takes ``client=`` as its seam; this is how the form counts progress without polling. An
    SMPP send goes through no request: Campaign calls :meth:`count_sent` as its groups settle.
    """

    def __init__(self, gateway: Any, *, on_sent: Callable[[int], None]) -> None:
        """Wrap ``gateway``; ``on_sent(n)`` is called after each request is settled."""
        super().__init__(gateway)
        self._on_sent = on_sent

    def send_many(
        self, requests: Any, *, before_send: Any = None, on_result: Any = None, keep_results: bool = True
    ) -> list[SendResult]:
        """Send as GatewayClient does, then count each request's recipients."""

        def counted(result: SendResult) -> Any:
            """Run the campaign's hook, then report progress."""
            value = on_result(result) if on_result is not None else None
            self.count_sent(result.request.recipients)
            return value

        return super().send_many(requests, before_send=before_send, on_result=counted, keep_results=keep_results)

    def count_sent(self, n: int) -> None:
        """Report ``n`` more messages settled."""
        self._on_sent(n)


class SendJob:
    """Send one confirmed plan in a thread named ``plasgate-nb-sendform``, then follow its reports.

    ``on_progress(done, total, label)`` follows sending (label ``"sending"``), then reports (``"reports"``);
    ``on_sent(summary)`` runs as soon as the send has ended (the form gives its buttons back then, while
    reports may still arrive); ``on_results(summary, counts)`` refreshes the results area;
    ``on_done(summary, error)`` runs last, always. :attr:`counts` holds the last report counts and
    :attr:`stopped` says whether :meth:`stop` ended the wait.
    """

    def __init__(
        self,
        plan: Plan,
        *,
        follow_reports: bool,
        report_timeout: float,
        report_until: float,
        poll: float,
        on_progress: Callable[[int, int, str], None],
        on_sent: Callable[[SendSummary], None],
        on_results: Callable[[SendSummary, dict[str, Any] | None], None],
        on_done: Callable[[SendSummary | None, BaseException | None], None],
    ) -> None:
        self.plan = plan
        self.follow_reports = follow_reports
        self.report_timeout = report_timeout
        self.report_until = report_until
        self.poll = poll
        self.on_progress = on_progress
        self.on_sent = on_sent
        self.on_results = on_results
        self.on_done = on_done
        self.summary: SendSummary | None = None
        self.error: BaseException | None = None
        self.counts: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._send_over = threading.Event()
        self._thread = threading.Thread(target=self._run, name="plasgate-nb-sendform", daemon=True)

    def start(self) -> SendJob:
        """Start the thread and return at once."""
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        """Whether the thread is still working (sending, or following reports)."""
        return self._thread.is_alive()

    @property
    def sending(self) -> bool:
        """Whether requests may still be leaving (the send itself has not ended)."""
        return self._thread.is_alive() and not self._send_over.is_set()

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    def stop(self) -> None:
        """Stop following reports (a send in progress finishes its requests first)."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Join the thread; return True when it has finished."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        """Send, then follow reports; always end with ``on_done``."""
        try:
            try:
                self.summary = self._send()
            finally:
                self._send_over.set()
            self.on_sent(self.summary)
            self.on_results(self.summary, None)
            if self.follow_reports and self.summary.accepted:
                self._follow()
        except BaseException as exc:  # shown in the form: a thread has nobody else to tell
            self.error = exc
            logger.warning("send form: campaign %r failed: %s", self.plan.campaign.name, exc)
        finally:
            self.on_done(self.summary, self.error)

    def _send(self) -> SendSummary:
        """Send the plan's frame through its campaign with a client that counts progress."""
        campaign = self.plan.campaign
        total = self.plan.summary.recipients
        done = 0

        def on_sent(n: int) -> None:
            nonlocal done
            done += n
            self.on_progress(done, total, "sending")

        self.on_progress(0, total, "sending")
        campaign.client = ProgressClient(campaign.gateway, on_sent=on_sent)
        return campaign.send(self.plan.frame, schedule_at=self.plan.schedule)

    def _follow(self) -> None:
        """Refresh the results while delivery reports arrive, until enough are in, the timeout, or stop()."""
        from ..report import wait_for_reports

        deadline = time.monotonic() + self.report_timeout
        while True:  # at least one count, so the results and the done state show the reports in so far
            left = 0.0 if self._stop.is_set() else max(deadline - time.monotonic(), 0.0)
            counts = wait_for_reports(
                self.plan.campaign, timeout=min(self.poll, left), until=self.report_until, progress=False
            )
            self.counts = counts
            self.on_progress(counts["final"], counts["accepted"], "reports")
            self.on_results(self.summary, counts)  # type: ignore[arg-type]
            finished = counts["done"] or (counts["accepted"] == 0 and counts["in_flight"] == 0)
            if finished or left <= 0 or self._stop.is_set():
                break
