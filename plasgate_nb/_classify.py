"""Classify a gateway answer into accepted / rejected / retry / uncertain (DESIGN.md sections 3 and 6).

| what came back | outcome | why |
|---|---|---|
| 2xx with ``queue_id`` (REST) or ``Success "<id>"`` (HTTP API) | accepted | the gateway took it |
| 2xx without them | uncertain | suspicious: it may have been taken |
| 400, 401, 402, 403, 404, 405, 412, 413, 415, 422 (other 4xx) | rejected | a definite refusal |
| 429 | retry | the gateway refused it unread; honour Retry-After |
| 403 ``User throughput exceeded`` (Jasmin's rate limit) | retry | refused unread, like a 429 |
| 408, 500, 502, 503, 504 and every other 5xx | uncertain | it may come after the gateway accepted the request |
| connect error, connect/pool timeout (TLS and DNS failures included) | retry | the request never left |
| read/write timeout, dropped connection, protocol error | uncertain | the body may have been processed |

An ``uncertain`` outcome is never retried automatically: a 503 or a 408 can be written by a proxy, a
load balancer or the gateway itself after it took the request (measured against a gateway answering 503
after accepting: resending them gave 500-600 of 3,000 numbers two SMS). Only the user resends them
(``send(resend_uncertain=...)``), after batch callbacks and DLRs had their chance to settle them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

from .gateway import redact

__all__ = ["Outcome", "SendResult", "classify", "parse_retry_after"]

Outcome = Literal["accepted", "rejected", "retry", "uncertain"]
RETRY_STATUSES = frozenset({429})  # the gateway refused the request unread: safe to send again
AMBIGUOUS_4XX = frozenset({408})  # a timeout a proxy or the gateway may answer after the request went through
_HTTP_API = re.compile(r'^\s*(Success|Error)\s+"(.*?)"?\s*$', re.S)
_BODY_KEEP = 4000
_THROTTLED = "throughput exceeded"  # Jasmin's 403 'User throughput exceeded': a rate limit, nothing accepted


@dataclass(frozen=True)
class SendResult:
    """What became of one request: outcome, HTTP status, raw body, the gateway's ids and a reason."""

    outcome: Outcome
    status: int | None
    body: str
    queue_id: str | None = None
    message_id: str | None = None
    message_count: int | None = None
    reason: str | None = None
    retry_after: float | None = None
    attempts: int = 1
    request: Any = field(default=None, repr=False, compare=False)

    @property
    def gateway_id(self) -> str | None:
        """Return the id the gateway gave (REST queue_id or HTTP API message id)."""
        return self.queue_id or self.message_id


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Return Retry-After (delta-seconds or an HTTP date) as seconds from now, or None if absent/bad."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _reason_from_json(data: Any) -> str | None:
    """Pull a readable reason out of a JSON error body (``message`` string or field->errors, ``error``)."""
    if not isinstance(data, dict):
        return str(data) if data else None
    message = data.get("message", data.get("error", data.get("title")))
    if isinstance(message, dict):
        parts = []
        for name, errors in message.items():
            errors = errors if isinstance(errors, list) else [errors]
            parts.append(f"{name}: {'; '.join(str(e) for e in errors)}")
        return ", ".join(parts)
    if isinstance(message, list):
        return "; ".join(str(m) for m in message)
    if message is not None:
        text = str(message)
        m = _HTTP_API.match(text)
        return m.group(2) if m else text
    return None


def _parse(path: str, body: str) -> tuple[str | None, str | None, int | None, str | None]:
    """Return (queue_id, message_id, message_count, reason) read from a response body."""
    if path == "http":
        m = _HTTP_API.match(body)
        if m and m.group(1) == "Success":
            return None, m.group(2) or None, 1, None
        if m:
            return None, None, None, m.group(2)
        return None, None, None, body.strip()[:200] or None
    try:
        data = json.loads(body)
    except ValueError:
        return None, None, None, body.strip()[:200] or None
    if not isinstance(data, dict):
        return None, None, None, _reason_from_json(data)
    queue_id = data.get("queue_id")
    queue_id = str(queue_id) if isinstance(queue_id, str | int) and str(queue_id) else None
    count = data.get("message_count")
    count = count if isinstance(count, int) and not isinstance(count, bool) else None
    return queue_id, None, count, _reason_from_json(data) if queue_id is None else None


def classify(
    path: str,
    status: int,
    body: str,
    *,
    retry_after: str | None = None,
    recipients: int | None = None,
    request: Any = None,
) -> SendResult:
    """Classify one HTTP answer for send path ``path`` ('batch', 'single' or 'http')."""
    body = redact(body[:_BODY_KEEP])
    queue_id, message_id, count, reason = _parse(path, body)
    wait = parse_retry_after(retry_after)
    outcome: Outcome
    if 200 <= status < 300:
        if queue_id or message_id:
            outcome = "accepted"
            if recipients is not None and count is not None and count != recipients:
                reason = f"gateway counted {count} message(s) for {recipients} recipient(s)"
        else:
            outcome = "uncertain"
            reason = f"HTTP {status} without {'a message id' if path == 'http' else 'queue_id'}: suspicious"
    elif status in RETRY_STATUSES or (status == 403 and _THROTTLED in (reason or "").lower()):
        outcome = "retry"
    elif 400 <= status < 500 and status not in AMBIGUOUS_4XX:
        outcome = "rejected"
    else:
        outcome = "uncertain"
    if outcome != "accepted" and reason is None:
        reason = f"HTTP {status}"
    elif outcome in ("rejected", "retry", "uncertain") and reason and not reason.startswith("HTTP"):
        reason = f"HTTP {status}: {reason}"
    return SendResult(outcome, status, body, queue_id, message_id, count, reason, wait, request=request)


def failure(outcome: Outcome, reason: str, *, request: Any = None) -> SendResult:
    """Return the result of a request that got no HTTP answer (network error, timeout)."""
    return SendResult(outcome, None, "", reason=redact(reason), request=request)
