"""The simulator's compact record: numbers, derived ids and messages read back as they were recorded."""

from __future__ import annotations

import random
import re

import pytest

from plasgate_nb.simulator.clock import SimClock
from plasgate_nb.simulator.config import RateLimits, SimulatorConfig
from plasgate_nb.simulator.model import Gateway, MessageSpec, Submission, mask_report
from plasgate_nb.simulator.record import CHUNK, MessageIds, Messages, Numbers

UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def test_ids_are_distinct_uuid4_strings_that_read_back_the_same() -> None:
    ids = MessageIds()
    first = ids.issue(3)
    rest = ids.issue(2_000)
    issued = first + rest
    assert len(ids) == 2_003
    assert all(UUID4.fullmatch(i) for i in issued)
    assert len(set(issued)) == len(issued)
    assert [ids[k] for k in range(len(ids))] == issued
    with pytest.raises(IndexError):
        ids[2_003]


def test_two_records_issue_different_ids() -> None:
    assert MessageIds().issue(5) != MessageIds().issue(5)


def test_numbers_keep_digits_and_any_other_text() -> None:
    values = ["85512345678", "855969876543", "012345678", "+85512345678", "abc", "", "١٢٣", "9" * 19]
    numbers = Numbers()
    numbers.extend(values[:3])
    numbers.extend(values[3:])
    assert len(numbers) == len(values)
    assert [numbers[k] for k in range(len(values))] == values


def _sub(k: int, *, seq: int, dlr: bool) -> Submission:
    """A submission whose content, url and request differ with ``k``."""
    content = f"សួស្តី {k}, code #ma#K{k:05d}#ma# \ud800" if k % 7 == 0 else f"Hi {k}, code #ma#K{k:05d}#ma#"
    return Submission(
        "batch",
        "demo",
        f"b{seq}",
        "SMS Info",
        content,
        mask_report(content),
        content.replace("#ma#", ""),
        "UCS-2" if k % 7 == 0 else "GSM-7",
        1,
        0.012,
        1_000.0 + seq,
        1_000.0 + seq,
        f"http://127.0.0.1:9/dlr/{k}" if dlr else None,
        3,
        "POST",
        "http://127.0.0.1:9/cb" if seq % 2 else None,
        None,
        seq,
        frozenset({"duplicate_callbacks"}) if seq == 3 else frozenset(),
        None,
    )


def test_messages_read_back_equal_in_any_order() -> None:
    subs = [_sub(k, seq=k // 100, dlr=k % 3 == 0) for k in range(3 * CHUNK + 17)]
    messages = Messages(report=mask_report, deliver=lambda content: content.replace("#ma#", ""))
    messages.extend(subs[:10])
    for sub in subs[10:]:
        messages.append(sub)
    assert len(messages) == len(subs)
    order = list(range(len(subs)))
    random.Random(1).shuffle(order)
    for k in order:
        assert messages[k] == subs[k]
    with pytest.raises(IndexError):
        messages[len(subs)]


def test_gateway_records_personalized_messages_across_chunks() -> None:
    config = SimulatorConfig(seed=3, rate_limits=RateLimits.off())
    gateway = Gateway(config, SimClock())
    account = config.accounts[0]
    n = 2 * CHUNK + 5
    specs = [
        MessageSpec(to=[f"8551{k:07d}"], content=f"Hi {k}, your code #ma#{k:04d}#ma#", sender="SMS Info")
        for k in range(n)
    ]
    ids, _ = gateway.submit(account, "batch", specs[: CHUNK + 1], batch_id="one")
    more, _ = gateway.submit(account, "batch", specs[CHUNK + 1 :], batch_id="two")
    records = list(gateway.records())
    assert [r["message_id"] for r in records] == [i[0] for i in ids + more]
    assert [r["to"] for r in records] == [s.to[0] for s in specs]
    assert [r["content"] for r in records] == [s.content for s in specs]
    assert [r["content_report"] for r in records] == [f"Hi {k}, your code ******" for k in range(n)]
    assert [r["delivered_text"] for r in records] == [f"Hi {k}, your code {k:04d}" for k in range(n)]
    assert [r["batch_id"] for r in records] == ["one"] * (CHUNK + 1) + ["two"] * (n - CHUNK - 1)
    assert [r["request_seq"] for r in records] == [1] * (CHUNK + 1) + [2] * (n - CHUNK - 1)


def test_record_false_keeps_out_requests_nothing_follows() -> None:
    config = SimulatorConfig(seed=3, rate_limits=RateLimits.off(), record=False)
    gateway = Gateway(config, SimClock())
    account = config.accounts[0]
    balance = gateway.balances[account.username]
    quiet = [MessageSpec(to=[f"8551{k:07d}"], content=f"Hi {k}", sender="SMS Info") for k in range(300)]
    ids, events = gateway.submit(account, "batch", quiet, batch_id="quiet")
    assert events == [] and gateway.unrecorded == 300 and list(gateway.records()) == []
    flat = [i for per in ids for i in per]
    assert len(flat) == 300 and len(set(flat)) == 300 and all(UUID4.fullmatch(i) for i in flat)
    assert gateway.balances[account.username] == pytest.approx(balance - 300 * account.price_per_segment)
    asked = [MessageSpec(to=["85512345678"], content="Hi", sender="SMS Info", dlr_url="http://127.0.0.1:9/dlr/1")]
    more, _ = gateway.submit(account, "batch", asked, batch_id="asked")
    assert [r["message_id"] for r in gateway.records()] == more[0] and gateway.scheduled > 0
    assert gateway.unrecorded == 300 and not set(flat) & set(more[0])
