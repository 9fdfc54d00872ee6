"""Quiet hours in Phnom Penh time and frequency caps: parsing, windows across midnight, ledger counts."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from plasgate_nb.errors import ConfigError
from plasgate_nb.ledger import Ledger
from plasgate_nb.pacing import PHNOM_PENH, FrequencyCap, QuietHours
from tests.test_ledger import frame, sent, url  # noqa: F401  (url: SQLite and PostgreSQL)


def local(day: int, hour: int, minute: int = 0) -> datetime:
    """A Phnom Penh wall-clock time in December 2026."""
    return datetime(2026, 12, day, hour, minute, tzinfo=PHNOM_PENH)


@pytest.mark.parametrize(
    ("when", "inside", "opens"),
    [
        (local(1, 20, 59), False, local(1, 20, 59)),
        (local(1, 21, 0), True, local(2, 8, 0)),
        (local(1, 23, 30), True, local(2, 8, 0)),
        (local(2, 0, 0), True, local(2, 8, 0)),
        (local(2, 7, 59), True, local(2, 8, 0)),
        (local(2, 8, 0), False, local(2, 8, 0)),
    ],
)
def test_quiet_hours_span_midnight_in_phnom_penh_time(when: datetime, inside: bool, opens: datetime) -> None:
    quiet = QuietHours("21:00", "08:00")
    assert quiet.contains(when) is inside
    assert quiet.opens_at(when) == opens
    assert quiet.opens_at(when.astimezone(UTC)) == opens  # any zone: the instant counts


def test_quiet_hours_within_a_day_and_the_next_closing() -> None:
    lunch = QuietHours(time(12, 0), "13:30")
    assert not lunch.contains(local(1, 11, 59)) and lunch.contains(local(1, 12, 0))
    assert lunch.opens_at(local(1, 12, 45)) == local(1, 13, 30)
    assert lunch.closes_at(local(1, 14, 0)) == local(2, 12, 0)
    assert lunch.closes_at(local(1, 9, 0)) == local(1, 12, 0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), (("21:00", "08:00"), "21:00-08:00"), ("21:00-08:00", "21:00-08:00"), ("9.30-10h15", "09:30-10:15")],
)
def test_quiet_hours_parse(value: object, expected: str | None) -> None:
    parsed = QuietHours.parse(value)
    assert (None if parsed is None else f"{parsed.start:%H:%M}-{parsed.end:%H:%M}") == expected


@pytest.mark.parametrize("value", ["21:00", "25:00-08:00", ("08:00", "08:00"), 21, "nine-ten"])
def test_bad_quiet_hours_are_clear_errors(value: object) -> None:
    with pytest.raises(ConfigError, match="quiet"):
        QuietHours.parse(value)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ConfigError, match="timezone-aware"):
        QuietHours("21:00", "08:00").contains(datetime(2026, 12, 1, 22, 0))


def test_frequency_cap_parse_and_errors() -> None:
    assert FrequencyCap.parse("2/7D") == FrequencyCap(2, timedelta(days=7))
    assert FrequencyCap.parse((3, "24h")).window == timedelta(hours=24)
    for bad in ["2", "x/7D", (0, "7D"), (2, "-1D"), (2, "soon"), (True, "7D")]:
        with pytest.raises(ConfigError, match="frequency cap"):
            FrequencyCap.parse(bad)


def test_accepted_since_counts_every_campaign_of_the_ledger(url: str) -> None:  # noqa: F811
    with Ledger(url) as led:
        led.plan("a", frame(3))
        led.plan("b", frame(2))
        sent(led, "a", ["k00000", "k00001"])
        sent(led, "b", ["k00000"])
        led.mark_submitting("b", ["k00001"], batch_id="b2")
        led.settle("b", ["k00001"], state="rejected", status=400, body="{}")
        now = datetime.now(UTC)
        recent = led.accepted_since(now - timedelta(minutes=5))
        assert sorted(zip(recent["msisdn"], recent["campaign"], strict=True)) == [
            ("855120000000", "a"),
            ("855120000000", "b"),
            ("855120000001", "a"),
        ]
        assert led.accepted_since(now - timedelta(minutes=5), numbers=["855120000001"])["campaign"].tolist() == ["a"]
        assert led.accepted_since(now + timedelta(minutes=5)).empty
