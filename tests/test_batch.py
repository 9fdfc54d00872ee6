"""Tests for plasgate_nb.batch: grouping, limits, determinism, dlr URLs, schedule_at and validation."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta, timezone

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from plasgate_nb import batch as batch_module
from plasgate_nb._keys import key_digest
from plasgate_nb.batch import (
    GROUP_KEY,
    build_batches,
    build_requests,
    build_singles,
    dumps,
    format_schedule_at,
    iter_recipients,
    iter_requests,
)
from plasgate_nb.errors import AudienceError, ConfigError, TemplateError

NOW = datetime(2026, 11, 25, 3, 0, 0, tzinfo=UTC)  # 10:00:00 in Phnom Penh


def frame(n: int, *, same: int = 0) -> pd.DataFrame:
    """Return n rows; the first ``same`` rows share one content, the rest are personalized."""
    return pd.DataFrame(
        {
            "message_key": [f"k{i}" for i in range(n)],
            "msisdn": [f"85512{i:06d}" for i in range(n)],
            "content": ["Promo for everyone" if i < same else f"Hi {i}, code #ma#{i:04d}#ma#" for i in range(n)],
        }
    )


def recipients(batches: list) -> list[tuple[str, str]]:
    """Flatten all (key, msisdn) pairs of a list of batches."""
    return [pair for b in batches for pair in iter_recipients(b)]


def test_grouping_identical_content_shares_one_entry() -> None:
    df = frame(6, same=4)
    [batch] = build_batches(df, sender="SMS Info")
    messages = batch.payload["messages"]
    assert messages[0] == {"to": [f"85512{i:06d}" for i in range(4)], "content": "Promo for everyone"}
    assert [m["to"] for m in messages[1:]] == [["85512000004"], ["85512000005"]]
    assert batch.recipients == 6 and batch.keys == tuple(f"k{i}" for i in range(6))
    assert batch.payload["globals"] == {"sender": "SMS Info"}
    assert "batch_config" not in batch.payload
    assert batch.bytes == len(dumps(batch.payload))


def test_every_row_lands_exactly_once_in_order() -> None:
    df = frame(2500, same=1300)
    batches = build_batches(df, sender="SMS Info", max_recipients=700)
    pairs = recipients(batches)
    assert pairs == list(zip(df["message_key"], df["msisdn"], strict=True))
    assert all(b.recipients <= 700 for b in batches)
    assert [b.recipients for b in batches] == [700, 700, 700, 400]


def test_max_messages_limits_entries_not_recipients() -> None:
    df = frame(130, same=100)  # one group of 100 numbers, then 30 personalized rows
    batches = build_batches(df, sender="SMS Info", max_messages=12, max_recipients=1000)
    assert [len(b.payload["messages"]) for b in batches] == [12, 12, 7]
    assert [b.recipients for b in batches] == [111, 12, 7]  # the group is one entry of 100 numbers
    assert recipients(batches) == list(zip(df["message_key"], df["msisdn"], strict=True))
    unlimited = build_batches(df, sender="SMS Info", max_recipients=1000)
    assert len(unlimited) == 1 and len(unlimited[0].payload["messages"]) == 31
    with pytest.raises(ConfigError, match="max_messages"):
        build_batches(df, sender="SMS Info", max_messages=0)


def test_max_bytes_is_respected_and_exact() -> None:
    df = frame(3000, same=1500)
    batches = build_batches(
        df,
        sender="SMS Info",
        max_bytes=20_000,
        dlr=True,
        dlr_url="https://cb.example/dlr/{key}?token=abc",
        callback_url="https://cb/x",
    )
    assert len(batches) > 5
    for b in batches:
        assert b.encoded() == dumps(b.payload)
        assert b.bytes == len(dumps(b.payload)) <= 20_000
    assert len(recipients(batches)) == 3000
    # batches are packed: no two consecutive batches could have been one
    assert all(a.bytes + b.bytes > 20_000 for a, b in itertools.pairwise(batches))


def test_a_row_bigger_than_max_bytes_is_an_error() -> None:
    df = frame(2)
    df.loc[1, "content"] = "x" * 5000
    with pytest.raises(ConfigError, match="'k1' alone is larger"):
        build_batches(df, sender="SMS Info", max_bytes=2000)


def test_deterministic_ids_and_payloads() -> None:
    df = frame(1200, same=300)
    a = build_batches(df, sender="SMS Info", max_recipients=500, campaign="spring")
    b = build_batches(df.copy(), sender="SMS Info", max_recipients=500, campaign="spring")
    assert [x.batch_id for x in a] == [y.batch_id for y in b]
    assert [dumps(x.payload) for x in a] == [dumps(y.payload) for y in b]
    assert len({x.batch_id for x in a}) == len(a)
    other = build_batches(df, sender="SMS Info", max_recipients=500, campaign="autumn")
    assert {x.batch_id for x in a}.isdisjoint(x.batch_id for x in other)


def test_frame_is_not_mutated() -> None:
    df = frame(10, same=3)
    before = df.copy()
    build_batches(df, sender="SMS Info", dlr=True, dlr_url="https://h/{key}")
    pd.testing.assert_frame_equal(df, before)


def test_personalized_rows_carry_their_keyed_dlr_url_and_groups_the_marker() -> None:
    df = frame(4, same=2)
    df.loc[3, "message_key"] = "a/b c?&"
    [batch] = build_batches(
        df,
        sender="SMS Info",
        dlr=True,
        dlr_url="https://h/dlr/spring/{key}?token=abc",
        dlr_level=2,
        dlr_method="get",
        callback_url="https://h/cb",
    )
    g = batch.payload["globals"]
    assert g == {
        "sender": "SMS Info",
        "dlr": "yes",
        "dlr_url": f"https://h/dlr/spring/{GROUP_KEY}?token=abc",
        "dlr_level": 2,
        "dlr_method": "GET",
    }
    grouped, single2, single3 = batch.payload["messages"]
    assert "dlr_url" not in grouped
    # the slot carries the key's digest (32 hex characters), whatever the key holds
    assert single2["dlr_url"] == f"https://h/dlr/spring/{key_digest('k2')}?token=abc"
    assert single3["dlr_url"] == f"https://h/dlr/spring/{key_digest('a/b c?&')}?token=abc"
    assert batch.payload["batch_config"] == {"callback_url": "https://h/cb"}


def test_dlr_option_errors() -> None:
    df = frame(2)
    with pytest.raises(ConfigError, match="dlr_url"):
        build_batches(df, sender="SMS Info", dlr=True)
    with pytest.raises(ConfigError, match="dlr=True"):
        build_batches(df, sender="SMS Info", dlr_url="https://h/{key}")
    with pytest.raises(ConfigError, match="dlr_level"):
        build_batches(df, sender="SMS Info", dlr=True, dlr_url="https://h/{key}", dlr_level=4)
    with pytest.raises(ConfigError, match="dlr_method"):
        build_batches(df, sender="SMS Info", dlr=True, dlr_url="https://h/{key}", dlr_method="PUT")


def test_grouped_dlr_without_callback_url_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="plasgate_nb"):
        build_batches(frame(3, same=2), sender="SMS Info", dlr=True, dlr_url="https://h/{key}")
    assert "callback_url" in caplog.text


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        ({"msisdn": "012345678"}, AudienceError, "invalid msisdn.*'k1'"),
        ({"msisdn": "8551234567890"}, AudienceError, "invalid msisdn"),
        ({"msisdn": None}, AudienceError, "invalid msisdn"),
        ({"content": "  "}, TemplateError, "empty content.*'k1'"),
        ({"content": None}, TemplateError, "empty content"),
        ({"message_key": "k0"}, AudienceError, "duplicate message keys: 'k0'"),
        ({"message_key": GROUP_KEY}, AudienceError, "reserved"),
    ],
)
def test_row_validation_names_rows(bad: dict, error: type, match: str) -> None:
    df = frame(3).astype(object)
    for column, value in bad.items():
        df.loc[1, column] = value
    with pytest.raises(error, match=match):
        build_batches(df, sender="SMS Info")


def test_sender_and_columns_validation() -> None:
    with pytest.raises(ConfigError, match="at most 11"):
        build_batches(frame(1), sender="TwelveChars!")
    with pytest.raises(ConfigError, match="sender is empty"):
        build_singles(frame(1), sender="")
    with pytest.raises(AudienceError, match="content"):
        build_batches(frame(1).drop(columns="content"), sender="SMS Info")


def test_nothing_built_on_bad_input_many_rows_named_briefly() -> None:
    df = frame(30)
    df["msisdn"] = "123"
    with pytest.raises(AudienceError, match="and 20 more"):
        build_batches(df, sender="SMS Info")


# --------------------------------------------------------------------------------------- schedule_at
def test_schedule_naive_is_phnom_penh() -> None:
    assert format_schedule_at(datetime(2026, 11, 25, 18, 30), now=NOW) == "2026-11-25 18:30:00"


def test_schedule_aware_is_converted() -> None:
    utc = datetime(2026, 11, 25, 11, 30, 15, 999, tzinfo=UTC)
    assert format_schedule_at(utc, now=NOW) == "2026-11-25 18:30:15"
    paris = datetime(2026, 11, 26, 1, 0, tzinfo=timezone(timedelta(hours=1)))
    assert format_schedule_at(paris, now=NOW) == "2026-11-26 07:00:00"


def test_schedule_timedelta_counts_from_now() -> None:
    assert format_schedule_at(timedelta(hours=2, minutes=5), now=NOW) == "2026-11-25 12:05:00"


def test_schedule_string_and_real_clock() -> None:
    assert format_schedule_at("2026-11-25 10:00:01", now=NOW) == "2026-11-25 10:00:01"
    soon = format_schedule_at(timedelta(minutes=10))
    assert datetime.strptime(soon, "%Y-%m-%d %H:%M:%S") > datetime.now(UTC).replace(tzinfo=None)


@pytest.mark.parametrize(
    "past",
    [
        datetime(2026, 11, 25, 9, 59),  # naive Phnom Penh, a minute ago
        datetime(2026, 11, 25, 2, 0, tzinfo=UTC),
        timedelta(seconds=-5),
        timedelta(0),
        "2021-09-30 09:00:00",
    ],
)
def test_schedule_in_the_past_is_refused(past: object) -> None:
    with pytest.raises(ConfigError, match=r"past|future"):
        format_schedule_at(past, now=NOW)  # type: ignore[arg-type]


def test_schedule_bad_string_and_type() -> None:
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        format_schedule_at("2030-09-30T09:00:00", now=NOW)
    with pytest.raises(ConfigError, match="datetime, timedelta"):
        format_schedule_at(12345, now=NOW)  # type: ignore[arg-type]


def test_schedule_in_batch_config_and_past_refused_before_building() -> None:
    [batch] = build_batches(frame(2), sender="SMS Info", schedule_at=timedelta(hours=1), now=NOW)
    assert batch.payload["batch_config"] == {"schedule_at": "2026-11-25 11:00:00"}
    with pytest.raises(ConfigError, match="past"):
        build_batches(frame(2), sender="SMS Info", schedule_at=datetime(2020, 1, 1))


# --------------------------------------------------------------------------------------- singles
def test_single_and_http_bodies() -> None:
    df = frame(2)
    singles = build_singles(df, sender="SMS Info", dlr=True, dlr_url="https://h/d/{key}", dlr_level=1)
    assert [s.path for s in singles] == ["single", "single"]
    assert singles[0].payload == {
        "sender": "SMS Info",
        "to": "85512000000",
        "content": "Hi 0, code #ma#0000#ma#",
        "dlr": "yes",
        "dlr_url": f"https://h/d/{key_digest('k0')}",
        "dlr_level": 1,
        "dlr_method": "POST",
    }
    assert singles[1].keys == ("k1",) and singles[1].recipients == 1
    http = build_requests(df, sender="SMS Info", path="http")
    assert http[0].path == "http" and http[0].payload == {
        "sender": "SMS Info",
        "to": "85512000000",
        "content": "Hi 0, code #ma#0000#ma#",
    }
    assert "password" not in json.dumps([h.payload for h in http])
    assert http[0].batch_id != singles[0].batch_id
    assert list(iter_recipients(http[1])) == [("k1", "85512000001")]
    with pytest.raises(ConfigError, match="only apply"):
        build_requests(df, sender="SMS Info", path="single", max_bytes=10)


@given(
    content=st.text(),
    numbers=st.lists(st.from_regex(r"855[0-9]{8,9}", fullmatch=True), min_size=1, max_size=5),
    url=st.one_of(st.none(), st.text()),
)
def test_fast_entry_encoding_is_byte_identical_to_json(content: str, numbers: list[str], url: str | None) -> None:
    from plasgate_nb.batch import _encode_entry, dumps

    entry: dict[str, object] = {"to": numbers, "content": content}
    if url is not None:
        entry["dlr_url"] = url
    assert _encode_entry(entry) == dumps(entry)


# ------------------------------------------------------------------------------ numbers, keys, control characters
@pytest.mark.parametrize(
    "number",
    [
        "855\u17e1\u17e2\u17e3\u17e4\u17e5\u17e6\u17e7\u17e8",  # Khmer digits: prepare_audience normalizes them
        "855\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668",  # Arabic-Indic digits
        "855\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18",  # full-width digits
        "85512\u17e3\u17e4\u17e5\u17e6\u17e7\u17e8",  # ASCII and Khmer mixed
        "855012345678",  # the trunk 0 kept after 855
        "85523212345",  # a Phnom Penh landline
        "8559912345",  # too short for a mobile
        "+85512345678",
        "85512345678.0",
    ],
)
def test_numbers_are_checked_as_strictly_as_the_gateway_does(number: str) -> None:
    df = frame(3).astype(object)
    df.loc[1, "msisdn"] = number
    with pytest.raises(AudienceError, match=r"invalid msisdn.*'k1'") as info:
        build_batches(df, sender="SMS Info")
    assert repr(number) in str(info.value)
    with pytest.raises(AudienceError, match="'k1'"):
        build_singles(df, sender="SMS Info", path="http")


def test_every_mobile_range_and_integer_numbers_pass() -> None:
    numbers = ["85512345678", "855962345678", "85510000001", "85597000002", "855234812345", "855881234567"]
    df = pd.DataFrame({"message_key": range(6), "msisdn": numbers, "content": "Hi"})
    assert [n for _, n in recipients(build_batches(df, sender="SMS Info"))] == numbers
    as_int = df.assign(msisdn=df["msisdn"].astype("int64"))
    assert [n for _, n in recipients(build_batches(as_int, sender="SMS Info"))] == numbers


def test_keys_are_canonical_in_requests_and_dlr_urls() -> None:
    df = frame(3)
    df["message_key"] = [101.0, 102.0, 103.5]
    batches = build_batches(df, sender="SMS Info", dlr=True, dlr_url="https://r.example/dlr/{key}")
    assert batches[0].keys == ("101", "102", "103.5")
    assert [m["dlr_url"] for m in batches[0].payload["messages"]] == [
        f"https://r.example/dlr/{key_digest(k)}" for k in ("101", "102", "103.5")
    ]
    texts = df.assign(message_key=[" 101", "102.0 ", "103.5"])
    assert build_batches(texts, sender="SMS Info")[0].batch_id == build_batches(df, sender="SMS Info")[0].batch_id
    with pytest.raises(AudienceError, match=r"duplicate message keys: '101'"):
        build_singles(df.assign(message_key=[101, "101.0", 7]), sender="SMS Info")


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x08", "\x0b", "\x1b", "\x7f", "\x85", "\x9f", "\ud800"])
def test_control_characters_in_content_are_refused_naming_the_row(char: str) -> None:
    df = frame(3).astype(object)  # an object column can hold a lone surrogate (a pyarrow string column cannot)
    df.loc[2, "content"] = f"Hi{char}there"
    with pytest.raises(TemplateError, match=rf"control characters.*'k2' \(.*U\+{ord(char):04X}\)"):
        build_batches(df, sender="SMS Info")
    with pytest.raises(TemplateError, match="'k2'"):
        build_singles(df, sender="SMS Info")


def test_tab_newline_carriage_return_and_form_feed_are_message_content() -> None:
    df = frame(2)
    df["content"] = ["Line one\nline two\r\nend", "Col\tcol\fpage"]
    (batch,) = build_batches(df, sender="SMS Info")
    assert [m["content"] for m in batch.payload["messages"]] == list(df["content"])
    assert json.loads(batch.encoded())["messages"][1]["content"] == "Col\tcol\fpage"


@pytest.mark.parametrize("key", ["k\x00", "a\x1fb", "esc\x1b[0m", "\x7f", "c1\x9b"])
def test_control_characters_in_keys_are_refused(key: str) -> None:
    df = frame(3).astype(object)
    df.loc[1, "message_key"] = key
    with pytest.raises(AudienceError, match="control characters"):
        build_batches(df, sender="SMS Info")


# ---------------------------------------------------------------------------------- built as they are taken
def test_requests_built_in_chunks_are_those_built_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Groups spread over the frame (first appearance order), a group larger than a chunk, and personalized rows."""
    n = 2000
    df = frame(n, same=0)
    df["content"] = [
        "Promo for everyone" if i % 3 == 0 else ("Second offer" if i % 7 == 0 else f"Hi {i}, code #ma#{i:04d}#ma#")
        for i in range(n)
    ]
    df["content"] = df["content"].astype("str")  # pyarrow strings, as render_messages writes them
    options = {"sender": "SMS Info", "max_recipients": 150, "dlr": True, "dlr_url": "https://h/d/{key}"}
    whole = build_batches(df.astype(object), **options)
    monkeypatch.setattr(batch_module, "CHUNK_ROWS", 64)
    chunked = list(iter_requests(df, **options))
    assert [b.encoded() for b in chunked] == [b.encoded() for b in whole]
    assert [(b.batch_id, b.keys) for b in chunked] == [(b.batch_id, b.keys) for b in whole]
    singles = build_singles(df.astype(object), sender="SMS Info")
    assert [b.encoded() for b in iter_requests(df, sender="SMS Info", path="single")] == [b.encoded() for b in singles]


def test_iter_requests_validates_every_row_before_returning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch_module, "CHUNK_ROWS", 10)
    df = frame(50)
    df.loc[37, "content"] = "   "
    with pytest.raises(TemplateError, match="k37"):
        iter_requests(df, sender="SMS Info")
    df = frame(50)
    df.loc[41, "content"] = "x" * 5000
    with pytest.raises(ConfigError, match="'k41' alone is larger than max_bytes=2000"):
        iter_requests(df, sender="SMS Info", max_bytes=2000)  # refused before any request is built
    df.loc[41, "content"] = "ok"
    df.loc[43, "content"] = "bad \x00 text"
    with pytest.raises(TemplateError, match="'k43' \\(control character U\\+0000\\)"):
        iter_requests(df, sender="SMS Info", path="single")
