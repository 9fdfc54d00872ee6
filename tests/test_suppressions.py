"""The suppression list: opt-out replies (English and Khmer), opt-in, manual changes, order-free updates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from plasgate_nb.errors import ConfigError, LedgerError
from plasgate_nb.ledger import Ledger
from plasgate_nb.optout import Keywords, fold
from tests.test_ledger import _downgrade, frame, url  # noqa: F401  (url: SQLite and PostgreSQL)

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def reply(msisdn: str, text: str, minutes: float = 0) -> dict[str, object]:
    """A reply from ``msisdn`` at T0 + ``minutes``."""
    return {"msisdn": msisdn, "to": "SMS Info", "text": text, "received_at": T0 + timedelta(minutes=minutes)}


@pytest.mark.parametrize(
    "text",
    ["STOP", "stop", " Stop! ", "S.T.O.P", "Ｓｔｏｐ", "stop\u200b", "UNSUBSCRIBE", "quit.", "ឈប់", "ឈប់។", " ឈប់ "],
)
def test_opt_out_keywords_ignore_case_spaces_and_punctuation(text: str) -> None:
    assert Keywords().match(text) == "stop"


@pytest.mark.parametrize("text", ["stop sending me offers", "stopp", "thanks", "", "ឈ", "endless"])
def test_other_replies_are_not_keywords(text: str) -> None:
    assert Keywords().match(text) is None


def test_keywords_are_configurable_and_checked() -> None:
    words = Keywords(stop=("BASTA",), start=("VENGA",))
    assert (words.match("basta!"), words.match("STOP"), words.match("venga")) == ("stop", None, "start")
    with pytest.raises(ConfigError, match="both"):
        Keywords(stop=("GO",), start=("go!",))
    with pytest.raises(ConfigError, match="empty"):
        Keywords(stop=("!!",))
    with pytest.raises(ConfigError, match="list"):
        Keywords(stop="STOP")  # type: ignore[arg-type]
    assert fold("ឈប់។") == "ឈប់"  # Khmer vowel signs and coeng stay, the Khmer full stop goes


def test_stop_reply_suppresses_and_start_lifts(url: str) -> None:  # noqa: F811
    with Ledger(url) as led:
        led.plan("spring", frame(2))
        assert led.record_replies("spring", [reply("85512000001", "Stop!"), reply("85597000002", "ឈប់", 1)]) == 2
        led.record_replies(None, [reply("85512000003", "what is this?", 2)])
        listed = led.suppressions()
        assert listed["msisdn"].tolist() == ["85512000001", "85597000002"]
        assert listed["source"].tolist() == ["reply", "reply"]
        assert listed["campaign"].tolist() == ["spring", "spring"]
        assert listed["text"].tolist() == ["Stop!", "ឈប់"]
        assert listed["since"].tolist() == [T0, T0 + timedelta(minutes=1)]
        led.record_replies(None, [reply("85512000001", "stop", 5)])  # again: keeps the first date
        assert led.suppressions()["since"].tolist()[0] == T0
        led.record_replies(None, [reply("85597000002", "UNSTOP", 10)])
        assert led.suppressed_numbers() == {"85512000001"}
        history = led.suppressions(history=True).set_index("msisdn")
        assert not history.loc["85597000002", "active"] and history.loc["85597000002", "text"] == "UNSTOP"


def test_a_late_stop_never_overrides_a_newer_start(url: str) -> None:  # noqa: F811
    """The receiver can store replies out of order: the newest change wins whatever the arrival order."""
    with Ledger(url) as led:
        led.record_replies(None, [reply("85512000001", "START", 10)])
        led.record_replies(None, [reply("85512000001", "STOP", 5)])  # older, arrives later
        assert led.suppressed_numbers() == set()
        led.record_replies(None, [reply("85512000009", "STOP", 5), reply("85512000009", "START", 1)])
        assert led.suppressed_numbers() == {"85512000009"}  # within one batch, by time, not position


def test_manual_suppress_and_unsuppress_take_any_spelling(url: str) -> None:  # noqa: F811
    with Ledger(url) as led:
        assert led.suppress(["012 345 678", "+855 97 123 4567", "85512345678.0"], reason="complaint") == 2
        listed = led.suppressions()
        assert set(listed["msisdn"]) == {"85512345678", "855971234567"}
        assert set(listed["source"]) == {"manual"} and set(listed["text"]) == {"complaint"}
        assert listed["campaign"].isna().all()
        assert led.unsuppress(["0971234567"]) == 1
        assert led.unsuppress(["0971234567"]) == 0
        assert led.suppressed_numbers() == {"85512345678"}
        with pytest.raises(LedgerError, match="1 of 2 entries are not phone numbers: \\['abc'\\]"):
            led.suppress(["012 345 679", "abc"])
        assert led.suppressed_numbers() == {"85512345678"}  # nothing changed


def test_keywords_are_stored_in_the_ledger_for_every_process(url: str) -> None:  # noqa: F811
    with Ledger(url) as led:
        led.set_opt_out_keywords(Keywords(stop=("BASTA",), start=("VENGA",)))
    with Ledger(url) as other:  # the receiver's process opens the ledger on its own
        assert other.opt_out_keywords().stop == ("BASTA",)
        other.record_replies(None, [reply("85512000001", "STOP"), reply("85512000002", "basta")])
        assert other.suppressed_numbers() == {"85512000002"}


def test_version_3_ledger_gains_the_suppression_list(url: str) -> None:  # noqa: F811
    with Ledger(url) as led:
        led.plan("c", frame(1))
        engine = sa.create_engine(led.url)
    _downgrade(engine, 3)
    assert "plasgate_suppressions" not in sa.inspect(engine).get_table_names()
    with Ledger(url) as led:
        led.record_replies("c", [reply("85512000001", "STOP")])
        assert led.suppressed_numbers() == {"85512000001"}
    engine.dispose()


def test_suppression_list_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with Ledger(path) as led:
        led.suppress(["012 345 678"])
    with Ledger(path) as led:
        assert led.suppressed_numbers() == {"85512345678"}


def test_prepare_audience_reads_the_ledgers_suppression_list(tmp_path: Path) -> None:
    import pandas as pd

    from plasgate_nb import prepare_audience

    with Ledger(tmp_path / "l.db") as led:
        led.record_replies(None, [reply("85512345678", "ឈប់")])
        led.suppress(["097 123 4567"], reason="complaint")
        df = pd.DataFrame({"phone": ["012 345 678", "+855 97 123 4567", "012 999 888"]})
        out = prepare_audience(df, ledger=led)
        pd.testing.assert_frame_equal(df.sms.prepare(ledger=led), out)  # the accessor passes it through
    assert out["audience_status"].tolist() == ["suppressed", "suppressed", "ok"]
    today = datetime.now(UTC).astimezone(ZoneInfo("Asia/Phnom_Penh")).strftime("%Y-%m-%d")
    assert out["audience_reason"].tolist()[:2] == [
        f"replied ឈប់ on {T0.astimezone(ZoneInfo('Asia/Phnom_Penh')):%Y-%m-%d}",
        f"on the suppression list since {today} (complaint)",
    ]
