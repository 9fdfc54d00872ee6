"""Validate the bodies of the send routes into MessageSpec objects, naming each bad field.

Numbers must be Cambodian MSISDNs in Plasgate form (``855`` + 8-9 digits, digits only). Senders are at
most 11 characters and approved per account. DLR options follow Jasmin: ``dlr`` yes/no, ``dlr_url``
http(s), ``dlr_level`` 1-3, ``dlr_method`` GET/POST; a ``dlr_url`` alone means ``dlr=yes``.

In a batch, a number the gateway refuses (malformed, or no route serves its prefix) does not fail the
request: Jasmin answers 200, then hands each number to its HTTP API and sends the refusal to the
errback with the HTTP API's answer as text (``'HTTPAPI error: %s' % answer.strip('"')``, recorded in
reference/jasmin/rest_api.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .config import Account
from .model import MessageSpec

__all__ = ["MSISDN", "NO_ROUTE", "Invalid", "errback_text", "parse_batch", "parse_single", "to_errback_text"]

MSISDN = re.compile(r"855[1-9]\d{7,8}")
SENDER_MAX = 11


class Invalid(Exception):
    """The request is invalid; ``errors`` maps field names to messages (400)."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {', '.join(v)}" for k, v in errors.items()))
        self.errors = errors


NO_ROUTE = 'Error "No route found"'  # Jasmin's HTTP API answer (412) for a number no route serves


def errback_text(answer: str) -> str:
    """Return the errback statusText of a number whose HTTP API ``answer`` was a refusal (Jasmin's form:
    the answer with its surrounding quotes stripped, so the closing quote is lost)."""
    return f"HTTPAPI error: {answer.strip(chr(34))}"


def to_errback_text(to: object) -> str:
    """Return the errback statusText Jasmin gives an invalid number in a batch."""
    return errback_text(f'Error "Argument [to] has an invalid value: [{to}]."')


def _add(errors: dict[str, list[str]], key: str, message: str) -> None:
    """Record one error for ``key``."""
    errors.setdefault(key, []).append(message)


def check_sender(value: object, account: Account, key: str, errors: dict[str, list[str]]) -> str:
    """Validate a sender id for ``account``."""
    if value is None or value == "":
        _add(errors, key, "This field is required.")
        return ""
    if not isinstance(value, str):
        _add(errors, key, "Must be a string.")
        return ""
    if len(value) > SENDER_MAX:
        _add(errors, key, f"Ensure this field has no more than {SENDER_MAX} characters.")
    elif value not in account.senders:
        _add(errors, key, f"Sender '{value}' is not approved for this account.")
    return value


def check_content(value: object, key: str, errors: dict[str, list[str]]) -> str:
    """Validate message content (a non-empty string)."""
    if not isinstance(value, str) or not value.strip():
        _add(
            errors,
            key,
            "Must be a string."
            if value and not isinstance(value, str)
            else "This field is required and may not be blank.",
        )
        return ""
    return value


def check_dlr(data: dict[str, Any], prefix: str, errors: dict[str, list[str]]) -> tuple[str | None, int, str]:
    """Validate dlr, dlr_url, dlr_level, dlr_method; return (url or None when off, level, method)."""
    dlr = data.get("dlr")
    if dlr is not None and str(dlr).lower() not in ("yes", "no", "1", "0", "true", "false"):
        _add(errors, f"{prefix}dlr", f"Invalid value {dlr!r}: use 'yes' or 'no'.")
    url = data.get("dlr_url")
    if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
        _add(errors, f"{prefix}dlr_url", f"Invalid URL {url!r}: use http:// or https://.")
        url = None
    raw_level = data.get("dlr_level", 1)
    try:
        level = int(raw_level)
        if isinstance(raw_level, bool) or level not in (1, 2, 3):
            raise ValueError(raw_level)
    except (TypeError, ValueError):
        _add(errors, f"{prefix}dlr_level", f"Invalid value {raw_level!r}: use 1, 2 or 3.")
        level = 1
    method = str(data.get("dlr_method", "POST")).upper()
    if method not in ("GET", "POST"):
        _add(errors, f"{prefix}dlr_method", f"Invalid value {data.get('dlr_method')!r}: use GET or POST.")
    if dlr is not None and str(dlr).lower() in ("no", "0", "false"):
        url = None
    return url, level, method


def _object(body: object, errors: dict[str, list[str]]) -> dict[str, Any]:
    """Require a JSON object."""
    if not isinstance(body, dict):
        _add(errors, "body", "Expected a JSON object.")
        return {}
    return body


def parse_single(body: object, account: Account) -> MessageSpec:
    """Validate a /rest/send (or /api/send) body."""
    errors: dict[str, list[str]] = {}
    data = _object(body, errors)
    sender = check_sender(data.get("sender"), account, "sender", errors)
    to = data.get("to")
    if to is None or to == "":
        _add(errors, "to", "This field is required.")
    elif not isinstance(to, str) or not MSISDN.fullmatch(to):
        _add(errors, "to", f"Invalid phone number {to!r}: use 855 followed by 8 or 9 digits.")
    content = check_content(data.get("content"), "content", errors)
    url, level, method = check_dlr(data, "", errors)
    if errors:
        raise Invalid(errors)
    return MessageSpec([str(to)], content, sender, url, level, method)


def parse_batch(
    body: object, account: Account, *, reject_invalid: bool, routed: Callable[[str], bool] = lambda to: True
) -> tuple[list[MessageSpec], dict[str, Any]]:
    """Validate a /rest/batch-send body; return the messages and the batch_config.

    A message inherits ``globals`` and may override any of them. Invalid numbers go to the errback
    (Jasmin's behaviour) unless ``reject_invalid``, which makes them a 400; valid numbers that are not
    ``routed`` always go to the errback (``No route found``).
    """
    errors: dict[str, list[str]] = {}
    data = _object(body, errors)
    base = data.get("globals") or {}
    if not isinstance(base, dict):
        _add(errors, "globals", "Expected a JSON object.")
        base = {}
    config = data.get("batch_config") or {}
    if not isinstance(config, dict):
        _add(errors, "batch_config", "Expected a JSON object.")
        config = {}
    for key in ("callback_url", "errback_url"):
        url = config.get(key)
        if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
            _add(errors, f"batch_config.{key}", f"Invalid URL {url!r}: use http:// or https://.")
    messages = data.get("messages")
    if not isinstance(messages, list):
        _add(errors, "messages", "This field is required and must be a list.")
        messages = []
    specs: list[MessageSpec] = []
    match = MSISDN.fullmatch
    for i, message in enumerate(messages):
        prefix = f"messages[{i}]."
        if not isinstance(message, dict):
            _add(errors, f"messages[{i}]", "Expected a JSON object.")
            continue
        merged = {**base, **message}
        sender = check_sender(merged.get("sender"), account, prefix + "sender", errors)
        content = check_content(merged.get("content"), prefix + "content", errors)
        url, level, method = check_dlr(merged, prefix, errors)
        to = merged.get("to")
        tos = [to] if isinstance(to, str) else to
        if not isinstance(tos, list) or not tos:
            _add(errors, prefix + "to", "This field is required: a number or a list of numbers.")
            continue
        good = [t for t in tos if isinstance(t, str) and match(t)]
        bad = [t for t in tos if not (isinstance(t, str) and match(t))] if len(good) != len(tos) else []
        if bad and reject_invalid:
            _add(errors, prefix + "to", f"Invalid phone numbers: {', '.join(map(repr, bad[:5]))}.")
        refused = [(str(t), to_errback_text(t)) for t in bad]
        if not all(map(routed, good)):
            refused += [(t, errback_text(NO_ROUTE)) for t in good if not routed(t)]
            good = [t for t in good if routed(t)]
        specs.append(MessageSpec(good, content, sender, url, level, method, refused))
    if errors:
        raise Invalid(errors)
    return specs, config
