"""Turn a user's send time into the gateway's ``schedule_at``: Asia/Phnom_Penh local 'YYYY-MM-DD HH:MM:SS'."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from .errors import ConfigError

__all__ = ["GATEWAY_TZ", "SCHEDULE_FORMAT", "format_schedule_at"]

GATEWAY_TZ = ZoneInfo("Asia/Phnom_Penh")
SCHEDULE_FORMAT = "%Y-%m-%d %H:%M:%S"


def format_schedule_at(value: datetime | timedelta | str, *, now: datetime | None = None) -> str:
    """Return ``value`` as gateway-local 'YYYY-MM-DD HH:MM:SS' (Asia/Phnom_Penh), refusing past times.

    A naive datetime (or string in that format) is taken as Phnom Penh time; an aware one is converted;
    a timedelta counts from ``now`` (default: the current time). Raises ConfigError for a time that is
    not in the future.
    """
    current = (now or datetime.now(UTC)).astimezone(GATEWAY_TZ)
    if isinstance(value, timedelta):
        if value <= timedelta(0):
            raise ConfigError(f"schedule_at={value!r} is not in the future")
        when = current + value
    elif isinstance(value, datetime):
        when = value.replace(tzinfo=GATEWAY_TZ) if value.tzinfo is None else value.astimezone(GATEWAY_TZ)
    elif isinstance(value, str):
        try:
            when = datetime.strptime(value, SCHEDULE_FORMAT).replace(tzinfo=GATEWAY_TZ)
        except ValueError as exc:
            raise ConfigError(f"schedule_at={value!r} is not 'YYYY-MM-DD HH:MM:SS'") from exc
    else:
        raise ConfigError(f"schedule_at must be a datetime, timedelta or string, not {type(value).__name__}")
    when = when.replace(microsecond=0)
    if when <= current:
        raise ConfigError(
            f"schedule_at {when.strftime(SCHEDULE_FORMAT)} (Asia/Phnom_Penh) is in the past; "
            f"it is now {current.strftime(SCHEDULE_FORMAT)} there"
        )
    return when.strftime(SCHEDULE_FORMAT)
