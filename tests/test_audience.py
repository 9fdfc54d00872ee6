"""Tests for plasgate_nb.audience: number normalization, statuses, duplicates, suppression, no mutation."""

from __future__ import annotations

import copy
import importlib.util
import logging
import re
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberType
from phonenumbers import carrier as pn_carrier

from plasgate_nb.audience import STATUSES, is_mobile_msisdn, normalize_msisdn, prepare_audience
from plasgate_nb.batch import build_batches
from plasgate_nb.errors import AudienceError, PlasgateError

ANY = object()  # carrier not asserted (phonenumbers has no carrier for the range)

# raw cell, expected msisdn, expected status, expected carrier
NUMBERS: list[tuple[object, str | None, str, object]] = [
    # Smart
    ("010 234 567", "85510234567", "ok", "Smart"),
    ("015 234 567", "85515234567", "ok", "Smart"),
    ("016 234 567", "85516234567", "ok", "Smart"),
    ("069 234 567", "85569234567", "ok", "Smart"),
    ("070 234 567", "85570234567", "ok", "Smart"),
    ("081 234 567", "85581234567", "ok", "Smart"),
    ("086 234 567", "85586234567", "ok", "Smart"),
    ("087 234 567", "85587234567", "ok", ANY),
    ("093 234 567", "85593234567", "ok", "Smart"),
    ("096 234 5678", "855962345678", "ok", "Smart"),
    ("098 234 567", "85598234567", "ok", "Smart"),
    # Cellcard
    ("011 234 567", "85511234567", "ok", "Cellcard"),
    ("012 345 678", "85512345678", "ok", "Cellcard"),
    ("012 234 5678", "855122345678", "ok", "Cellcard"),
    ("014 234 567", "85514234567", "ok", "Cellcard"),
    ("017 234 567", "85517234567", "ok", "Cellcard"),
    ("061 234 567", "85561234567", "ok", "Cellcard"),
    ("076 234 5678", "855762345678", "ok", "Cellcard"),
    ("077 234 567", "85577234567", "ok", "Cellcard"),
    ("078 234 567", "85578234567", "ok", "Cellcard"),
    ("085 234 567", "85585234567", "ok", "Cellcard"),
    ("089 234 567", "85589234567", "ok", "Cellcard"),
    ("092 234 567", "85592234567", "ok", "Cellcard"),
    ("095 234 567", "85595234567", "ok", "Cellcard"),
    ("099 234 567", "85599234567", "ok", "Cellcard"),
    # Metfone
    ("031 234 5678", "855312345678", "ok", "Metfone"),
    ("060 234 567", "85560234567", "ok", "Metfone"),
    ("066 234 567", "85566234567", "ok", "Metfone"),
    ("067 234 567", "85567234567", "ok", "Metfone"),
    ("068 234 567", "85568234567", "ok", "Metfone"),
    ("071 234 5678", "855712345678", "ok", "Metfone"),
    ("088 234 5678", "855882345678", "ok", "Metfone"),
    ("090 234 567", "85590234567", "ok", "Metfone"),
    ("097 234 567", "85597234567", "ok", "Metfone"),
    ("097 234 5678", "855972345678", "ok", "Metfone"),
    # Seatel
    ("018 234 567", "85518234567", "ok", "Seatel"),
    ("018 234 5678", "855182345678", "ok", "Seatel"),
    # landlines and other non-mobile numbers keep their msisdn but are not sent
    ("023 212 345", "85523212345", "not_mobile", None),  # Phnom Penh
    ("023 880 123", "85523880123", "not_mobile", None),
    ("053 952 123", "85553952123", "not_mobile", None),  # Battambang
    ("063 963 123", "85563963123", "not_mobile", None),  # Siem Reap
    ("+855 23 212 345", "85523212345", "not_mobile", None),
    ("1800 123 456", "8551800123456", "not_mobile", None),  # toll-free
    # the many spellings of one Cellcard number
    ("+85512345678", "85512345678", "ok", "Cellcard"),
    ("+855 12 345 678", "85512345678", "ok", "Cellcard"),
    ("+855 012 345 678", "85512345678", "ok", "Cellcard"),
    ("855012345678", "85512345678", "ok", "Cellcard"),
    ("855 012 345 678", "85512345678", "ok", "Cellcard"),
    ("855-12-345-678", "85512345678", "ok", "Cellcard"),
    ("(012) 345-678", "85512345678", "ok", "Cellcard"),
    ("012.345.678", "85512345678", "ok", "Cellcard"),
    ("012-345-678", "85512345678", "ok", "Cellcard"),
    ("12345678", "85512345678", "ok", "Cellcard"),
    ("85512345678.0", "85512345678", "ok", "Cellcard"),
    (85512345678.0, "85512345678", "ok", "Cellcard"),
    (12345678.0, "85512345678", "ok", "Cellcard"),
    (85512345678, "85512345678", "ok", "Cellcard"),
    (np.int64(12345678), "85512345678", "ok", "Cellcard"),
    (855012345678, "85512345678", "ok", "Cellcard"),
    ("00855 12 345 678", "85512345678", "ok", "Cellcard"),
    ("001 855 12 345 678", "85512345678", "ok", "Cellcard"),
    ("'012345678", "85512345678", "ok", "Cellcard"),  # Excel's text apostrophe
    ("\u00a0012\u00a0345\u00a0678 ", "85512345678", "ok", "Cellcard"),  # no-break spaces
    ("012\u200b345\u200b678", "85512345678", "ok", "Cellcard"),  # zero-width spaces
    ("០១២ ៣៤៥ ៦៧៨", "85512345678", "ok", "Cellcard"),  # Khmer digits
    ("٠١٢٣٤٥٦٧٨", "85512345678", "ok", "Cellcard"),  # Arabic-Indic digits
    ("＋８５５ １２ ３４５ ６７８", "85512345678", "ok", "Cellcard"),  # full-width
    ("0 12 345 678", "85512345678", "ok", "Cellcard"),
    # invalid
    ("012 345 67", None, "invalid", None),
    ("0123", None, "invalid", None),
    ("012 345 678 901", None, "invalid", None),
    ("855 855 12 345 678", None, "invalid", None),
    ("abc", None, "invalid", None),
    ("012-ABC-678", None, "invalid", None),
    ("012 345 678 ext 5", None, "invalid", None),
    ("012@345678", None, "invalid", None),
    ("012+345678", None, "invalid", None),
    ("8.55123E+10", None, "invalid", None),
    ("12345678.5", None, "invalid", None),
    (12345678.5, None, "invalid", None),
    ("+66 81 234 5678", None, "invalid", None),  # Thai mobile: not Cambodian
    ("0066 81 234 5678", None, "invalid", None),
    ("020 123 456", None, "invalid", None),
    ("012 345 678 / 097 123 456", None, "invalid", None),
    (True, None, "invalid", None),
    # missing
    (None, None, "missing", None),
    (np.nan, None, "missing", None),
    (pd.NA, None, "missing", None),
    ("", None, "missing", None),
    ("   ", None, "missing", None),
    ("--", None, "missing", None),
]


def _ids(case: tuple[object, str | None, str, object]) -> str:
    """A readable test id for one table row."""
    return repr(case[0])


@pytest.mark.parametrize("case", NUMBERS, ids=_ids)
def test_number_table_through_prepare_audience(case: tuple[object, str | None, str, object]) -> None:
    """Each tricky cell yields the expected msisdn, status and carrier."""
    raw, msisdn, status, carrier = case
    out = prepare_audience(pd.DataFrame({"phone": pd.Series([raw], dtype=object)}))
    row = out.iloc[0]
    assert row["audience_status"] == status
    if msisdn is None:
        assert pd.isna(row["msisdn"])
    else:
        assert row["msisdn"] == msisdn
    if carrier is not ANY:
        assert pd.isna(row["carrier"]) if carrier is None else row["carrier"] == carrier
    assert (row["audience_reason"] == "") == (status == "ok")


def test_table_is_big_and_single_values_agree() -> None:
    """The table holds 40+ numbers, and normalize_msisdn agrees with prepare_audience on each."""
    assert len(NUMBERS) >= 40
    for raw, msisdn, status, _ in NUMBERS:
        expected = msisdn if status in ("ok", "not_mobile") else None
        assert normalize_msisdn(raw) == expected, raw


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("023 212 345", "landline number (not mobile)"),
        ("1800 123 456", "toll-free number (not mobile)"),
        ("012 345 67", "too short for a Cambodian number"),
        ("012 345 678 901", "too long for a Cambodian number"),
        ("020 123 456", "not a valid Cambodian number"),
        ("abc", "contains letters"),
        ("012@345678", "unexpected character '@'"),
        ("012+345678", "misplaced '+'"),
        ("+66 81 234 5678", "not a Cambodian number (country code is not +855)"),
        ("8.55123E+10", "written in scientific notation (Excel lost digits)"),
        (12345678.5, "a decimal number, not a phone number"),
        (None, "no phone number"),
    ],
)
def test_reasons_are_human_words(raw: object, words: str) -> None:
    """Each rejected row says why in plain words."""
    out = prepare_audience(pd.DataFrame({"phone": pd.Series([raw], dtype=object)}))
    assert out["audience_reason"].iloc[0] == words


def test_duplicates_name_the_first_row_label() -> None:
    """The first occurrence wins across spellings; later ones name its index label."""
    df = pd.DataFrame(
        {"phone": ["012 345 678", "097 123 4567", "+855 12 345 678", "855012345678", "0971234567"]},
        index=["r17", "r18", "r19", "r20", "r21"],
    )
    out = prepare_audience(df)
    assert out["audience_status"].tolist() == ["ok", "ok", "duplicate", "duplicate", "duplicate"]
    assert out["audience_reason"].tolist()[2:] == [
        "same number as row r17",
        "same number as row r17",
        "same number as row r18",
    ]
    assert out["msisdn"].tolist() == ["85512345678", "855971234567", "85512345678", "85512345678", "855971234567"]


def test_duplicate_counts_only_sendable_rows_as_first() -> None:
    """An invalid or suppressed row never makes a later good row a duplicate; landlines stay not_mobile."""
    df = pd.DataFrame({"phone": ["023 212 345", "023212345", "012 345 678", "012345678"]}, index=[5, 6, 7, 8])
    out = prepare_audience(df)
    assert out["audience_status"].tolist() == ["not_mobile", "not_mobile", "ok", "duplicate"]
    assert out["audience_reason"].iloc[3] == "same number as row 7"


@pytest.mark.parametrize(
    "make",
    [list, tuple, set, pd.Series, pd.Index, lambda xs: (x for x in xs), lambda xs: pd.Series(xs, dtype="str")],
    ids=["list", "tuple", "set", "Series", "Index", "generator", "str-Series"],
)
def test_suppression_in_mixed_formats(make: object) -> None:
    """Opt-out numbers in any spelling suppress every row with that number, not only the first."""
    df = pd.DataFrame({"phone": ["012 345 678", "+855 97 123 4567", "855012345678", "010 234 567", "abc"]})
    opt_out = ["+85512345678", "0971234567", "garbage", "099 999 999"]
    out = prepare_audience(df, suppress=make(opt_out))  # type: ignore[operator]
    assert out["audience_status"].tolist() == ["suppressed", "suppressed", "suppressed", "ok", "invalid"]
    assert out["audience_reason"].iloc[0] == "on the opt-out list"


def test_suppression_of_excel_floats_and_logging(caplog: pytest.LogCaptureFixture) -> None:
    """A float opt-out column from Excel works; unusable entries are counted in a warning."""
    df = pd.DataFrame({"phone": [85512345678.0, np.nan, 85597123456.0]})
    opt_out = pd.Series([85512345678.0, np.nan, 1.5])
    with caplog.at_level(logging.WARNING, logger="plasgate_nb"):
        out = prepare_audience(df, suppress=opt_out)
    assert out["audience_status"].tolist() == ["suppressed", "missing", "ok"]
    assert "1 distinct entries" in caplog.text


def test_suppress_wrong_types_raise() -> None:
    """A single string, a whole frame or a number as opt-out list is a clear AudienceError."""
    df = pd.DataFrame({"phone": ["012 345 678"]})
    for bad in ["012345678", pd.DataFrame({"phone": ["012345678"]}), 12]:
        with pytest.raises(AudienceError, match="suppress"):
            prepare_audience(df, suppress=bad)  # type: ignore[arg-type]


def test_input_frame_is_not_mutated() -> None:
    """The caller's frame, its columns and its values are untouched; a new frame comes back."""
    df = pd.DataFrame(
        {"customer_id": ["C1", "C2", "C3"], "phone": ["012 345 678", None, "012345678"], "points": [1.0, None, 3.0]},
        index=[10, 20, 30],
    )
    before = copy.deepcopy(df)
    out = prepare_audience(df, suppress=["012 345 678"])
    pd.testing.assert_frame_equal(df, before)
    assert out is not df
    assert list(out.columns) == [*df.columns, "msisdn", "carrier", "audience_status", "audience_reason"]
    pd.testing.assert_frame_equal(out[df.columns], df)
    out.loc[10, "phone"] = "changed"
    assert df.loc[10, "phone"] == "012 345 678"


def test_rerun_and_msisdn_as_input() -> None:
    """Preparing a prepared frame replaces the columns, and the msisdn column normalizes to itself."""
    df = pd.DataFrame({"phone": ["012 345 678", "023 212 345", "x"]})
    once = prepare_audience(df)
    twice = prepare_audience(once)
    pd.testing.assert_frame_equal(once, twice)
    again = prepare_audience(once, phone="msisdn")
    pd.testing.assert_series_equal(again["msisdn"], once["msisdn"])


def test_missing_phone_column_names_it_and_lists_columns() -> None:
    """A missing column raises an AudienceError (a PlasgateError) naming it and the available ones."""
    df = pd.DataFrame({"mobile": ["012 345 678"], "name": ["Dara"]})
    with pytest.raises(AudienceError, match=re.escape("'phone'")) as info:
        prepare_audience(df)
    assert "mobile" in str(info.value) and "name" in str(info.value)
    assert isinstance(info.value, PlasgateError)
    assert prepare_audience(df, phone="mobile")["audience_status"].iloc[0] == "ok"


def test_other_input_errors() -> None:
    """Duplicate column names, unknown regions and non-frames are AudienceErrors."""
    twin = pd.DataFrame([["012 345 678", "012 345 678"]], columns=["phone", "phone"])
    with pytest.raises(AudienceError, match="2 columns named 'phone'"):
        prepare_audience(twin)
    with pytest.raises(AudienceError, match="unknown region"):
        prepare_audience(pd.DataFrame({"phone": ["1"]}), region="ZZ")
    with pytest.raises(AudienceError, match="DataFrame"):
        prepare_audience(["012 345 678"])  # type: ignore[arg-type]


def test_empty_frame_and_column_types() -> None:
    """An empty frame gets the four columns; a float column with gaps (Excel) works."""
    empty = prepare_audience(pd.DataFrame({"phone": pd.Series([], dtype=object)}))
    assert len(empty) == 0 and "audience_status" in empty.columns
    floats = prepare_audience(pd.DataFrame({"phone": [85512345678.0, np.nan, 12345678.0]}))
    assert floats["audience_status"].tolist() == ["ok", "missing", "duplicate"]
    ints = prepare_audience(pd.DataFrame({"phone": np.array([85512345678, 12345678], dtype=np.int64)}))
    assert ints["audience_status"].tolist() == ["ok", "duplicate"]
    assert set(floats["audience_status"]) <= set(STATUSES)


def test_other_region() -> None:
    """The region option reads another numbering plan (Thailand here)."""
    out = prepare_audience(pd.DataFrame({"phone": ["081 234 5678", "012 345 678"]}), region="TH")
    assert out["msisdn"].iloc[0] == "66812345678"
    assert out["audience_status"].tolist() == ["ok", "invalid"]


# --- properties -------------------------------------------------------------------------------------

_national = st.text(alphabet="0123456789", min_size=6, max_size=11).filter(lambda s: s[0] != "0")


def _oracle(nsn: str) -> tuple[str | None, str, str | None]:
    """What phonenumbers itself says about +855 nsn: (msisdn, status, carrier)."""
    number = phonenumbers.parse("+855" + nsn)
    if not phonenumbers.is_valid_number(number):
        return None, "invalid", None
    kind = phonenumbers.number_type(number)
    msisdn = f"855{number.national_number}"
    if kind in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE):
        return msisdn, "ok", pn_carrier.name_for_number(number, "en") or None
    return msisdn, "not_mobile", None


@settings(max_examples=300, deadline=None)
@given(st.lists(_national, min_size=1, max_size=20, unique=True))
def test_classification_matches_phonenumbers(nsns: list[str]) -> None:
    """Validity, mobile-ness and carrier agree with phonenumbers' own API for any national digits."""
    out = prepare_audience(pd.DataFrame({"phone": ["0" + n for n in nsns]}))
    for nsn, (_, row) in zip(nsns, out.iterrows(), strict=True):
        msisdn, status, carrier = _oracle(nsn)
        got = (
            None if pd.isna(row["msisdn"]) else row["msisdn"],
            row["audience_status"],
            None if pd.isna(row["carrier"]) else row["carrier"],
        )
        assert got == (msisdn, status, carrier), nsn


_MOBILE_PREFIXES = [
    "10",
    "11",
    "12",
    "15",
    "16",
    "17",
    "18",
    "60",
    "61",
    "66",
    "67",
    "68",
    "69",
    "70",
    "77",
    "78",
    "81",
    "85",
    "86",
    "89",
    "90",
    "92",
    "93",
    "95",
    "97",
    "98",
    "99",
]
_mobile_prefix = st.sampled_from(_MOBILE_PREFIXES)


@st.composite
def _valid_mobile(draw: st.DrawFn) -> str:
    """A valid Cambodian mobile national number (8 digits after a mobile prefix)."""
    nsn = draw(_mobile_prefix) + draw(st.text(alphabet="0123456789", min_size=6, max_size=6))
    number = phonenumbers.parse("+855" + nsn)
    if not phonenumbers.is_valid_number(number):  # a few sub-ranges are unallocated
        nsn = "12" + nsn[2:]
    return nsn


def _spellings(nsn: str) -> list[object]:
    """The many ways a spreadsheet spells one number."""
    spaced = f"{nsn[:2]} {nsn[2:5]} {nsn[5:]}"
    return [
        "0" + nsn,
        f"0{spaced}",
        f"+855 {spaced}",
        "+855" + nsn,
        "855" + nsn,
        "8550" + nsn,
        f"855 0{spaced}",
        f"(0{nsn[:2]}) {nsn[2:5]}-{nsn[5:]}",
        f"0{nsn[:2]}.{nsn[2:5]}.{nsn[5:]}",
        nsn,
        f"{855}{nsn}.0",
        float("855" + nsn),
        int("855" + nsn),
        int(nsn),
        "00855" + nsn,
        ("0" + nsn).translate(str.maketrans("0123456789", "០១២៣៤៥៦៧៨៩")),
    ]


@settings(max_examples=100, deadline=None)
@given(_valid_mobile())
def test_every_spelling_gives_the_same_msisdn(nsn: str) -> None:
    """Any valid number written in any supported way normalizes to 855 + national number."""
    spellings = _spellings(nsn)
    out = prepare_audience(pd.DataFrame({"phone": pd.Series(spellings, dtype=object)}))
    assert set(out["msisdn"]) == {"855" + nsn}
    assert out["audience_status"].tolist() == ["ok"] + ["duplicate"] * (len(spellings) - 1)
    assert {normalize_msisdn(s) for s in spellings} == {"855" + nsn}


_messy = st.one_of(
    st.text(alphabet="0123456789 +-().'/៥x", max_size=20),
    st.text(max_size=15),
    st.integers(min_value=-10, max_value=10**14),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_messy, max_size=15))
def test_any_cell_gets_a_status_and_ok_means_plasgate_form(cells: list[object]) -> None:
    """Any cell yields a known status; ok rows carry 855 + digits; both entry points agree; idempotent."""
    out = prepare_audience(pd.DataFrame({"phone": pd.Series(cells, dtype=object)}))
    assert set(out["audience_status"]) <= set(STATUSES)
    for cell, (_, row) in zip(cells, out.iterrows(), strict=True):
        msisdn = None if pd.isna(row["msisdn"]) else row["msisdn"]
        if row["audience_status"] in ("ok", "duplicate", "suppressed"):
            assert msisdn is not None and re.fullmatch(r"855[1-9][0-9]{7,9}", msisdn)
        assert normalize_msisdn(cell) == msisdn
        if msisdn is not None:
            assert normalize_msisdn(msisdn) == msisdn
            assert normalize_msisdn("+" + msisdn) == msisdn
            assert normalize_msisdn(int(msisdn)) == msisdn


# --- numbers in other scripts, and the batch stage's check ---------------------------------------------

_DIGIT_SCRIPTS = {
    "Khmer": "០១២៣៤៥៦៧៨៩",
    "Arabic-Indic": "٠١٢٣٤٥٦٧٨٩",
    "Extended Arabic-Indic": "۰۱۲۳۴۵۶۷۸۹",
    "full-width": "０１２３４５６７８９",
    "Devanagari": "०१२३४५६७८९",
    "Thai": "๐๑๒๓๔๕๖๗๘๙",
    "Lao": "໐໑໒໓໔໕໖໗໘໙",
    "Myanmar": "၀၁၂၃၄၅၆၇၈၉",
}


@pytest.mark.parametrize("script", sorted(_DIGIT_SCRIPTS))
def test_digits_of_any_script_are_normalized_to_ascii_and_pass_the_batch_stage(script: str) -> None:
    table = str.maketrans("0123456789", _DIGIT_SCRIPTS[script])
    cells = ["012 345 678".translate(table), "+855 97 123 4567".translate(table), "855012345679".translate(table)]
    out = prepare_audience(pd.DataFrame({"phone": cells}))
    assert out["msisdn"].tolist() == ["85512345678", "855971234567", "85512345679"]
    assert all(m.isascii() for m in out["msisdn"])
    out["content"], out["message_key"] = "Hi", ["a", "b", "c"]
    (batch,) = build_batches(out[["message_key", "msisdn", "content"]], sender="SMS Info")
    assert batch.payload["messages"][0]["to"] == ["85512345678", "855971234567", "85512345679"]


@pytest.mark.parametrize(("cell", "char"), [("012 345 67²", "²"), ("①12345678", "①"), ("012 345 6७8x", "x")])
def test_digit_like_characters_that_are_not_decimal_digits_are_named(cell: str, char: str) -> None:
    out = prepare_audience(pd.DataFrame({"phone": [cell]}))
    assert out["audience_status"].tolist() == ["invalid"]
    reason = out["audience_reason"].iloc[0]
    assert reason in (f"unexpected character {char!r}", "contains letters"), reason


_form_candidates = st.one_of(
    st.text(alphabet="0123456789", min_size=8, max_size=13).map(lambda s: "855" + s),
    st.text(alphabet="0123456789០១២", min_size=8, max_size=13).map(lambda s: "855" + s),
    st.text(alphabet="0123456789+ .", max_size=15),
    st.integers(min_value=0, max_value=10**13),
    st.none(),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_form_candidates, max_size=20))
def test_the_batch_check_takes_exactly_what_prepare_audience_writes(cells: list[object]) -> None:
    """is_mobile_msisdn (vectorized, the batch stage's check) is True exactly for a number prepare_audience
    leaves unchanged and calls ok; and every ok number prepare_audience writes passes it."""
    out = prepare_audience(pd.DataFrame({"phone": pd.Series(cells, dtype=object)}))
    checked = is_mobile_msisdn(pd.Series(cells, dtype=object))
    for cell, ok, (_, row) in zip(cells, checked, out.iterrows(), strict=True):
        text = str(cell) if isinstance(cell, int) else cell
        same = row["audience_status"] in ("ok", "duplicate") and row["msisdn"] == text
        assert ok == same, (cell, row["msisdn"], row["audience_status"])
    sendable = out.loc[out["audience_status"] == "ok", "msisdn"]
    assert is_mobile_msisdn(sendable).all()


def test_the_batch_check_in_one_table() -> None:
    cells = ["85512345678", "855012345678", "855១២៣៤៥៦៧៨", "85523212345", "855962345678", None, 85512345678]
    assert is_mobile_msisdn(cells).tolist() == [True, False, False, False, True, False, True]
    assert is_mobile_msisdn(pd.Series(["66812345678", "85512345678"]), region="TH").tolist() == [True, False]


# --- sample data ------------------------------------------------------------------------------------

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"


def _sample_script() -> ModuleType:
    """Import sample_data/make_sample_data.py (a script, not a package module)."""
    spec = importlib.util.spec_from_file_location("make_sample_data", SAMPLE / "make_sample_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sample_data_is_reproducible(tmp_path: Path) -> None:
    """The committed CSVs are exactly what the seeded script writes."""
    assert _sample_script().main(["--out", str(tmp_path)]) == 0
    for name in ("customers.csv", "opt_out.csv"):
        assert (tmp_path / name).read_bytes() == (SAMPLE / name).read_bytes(), name


def test_sample_audience_has_the_promised_mix() -> None:
    """customers.csv: 2,000+ rows, exact columns, a few percent invalid, landline, duplicate, opted out."""
    df = pd.read_csv(SAMPLE / "customers.csv")
    assert list(df.columns) == [
        "customer_id",
        "first_name",
        "last_name",
        "phone",
        "city",
        "segment",
        "language",
        "coupon",
        "last_purchase",
        "points",
        "opt_in",
    ]
    assert len(df) >= 2000 and df["customer_id"].is_unique and df["coupon"].is_unique
    assert df["points"].dtype == "float64" and df["points"].isna().any()
    assert df["opt_in"].dtype == bool and set(df["segment"]) == {"gold", "silver", "bronze"}
    khmer = df["first_name"].str.contains("[\u1780-\u17ff]")
    assert 0.4 < khmer.mean() < 0.6
    assert (df.loc[khmer, "language"] == "km").mean() > 0.8 and (df.loc[~khmer, "language"] == "en").mean() > 0.7
    opt_out = pd.read_csv(SAMPLE / "opt_out.csv")
    assert list(opt_out.columns) == ["phone"] and 40 <= len(opt_out) <= 60
    shares = prepare_audience(df, suppress=opt_out["phone"])["audience_status"].value_counts(normalize=True)
    assert 0.02 <= shares["invalid"] <= 0.04
    assert 0.01 <= shares["not_mobile"] <= 0.03
    assert 0.01 <= shares["duplicate"] <= 0.03
    assert 0.005 <= shares["suppressed"] <= 0.03
    assert shares["ok"] > 0.85


def consent_frame(answers: list[object]) -> pd.DataFrame:
    """One distinct mobile number per answer."""
    phones = [f"012 345 {i:03d}" for i in range(len(answers))]
    return pd.DataFrame({"phone": phones, "opt_in": pd.Series(answers, dtype=object)})


def test_consent_column_marks_rows_without_consent() -> None:
    yes = [True, 1, 1.0, "true", "TRUE", " Yes ", "y", "1", "បាទ", "ចាស"]
    no = [False, 0, 0.0, "false", "False", "NO", "n", "0", "", "  ", None, np.nan, "ទេ"]
    df = consent_frame(yes + no)
    before = df.copy()
    out = prepare_audience(df, consent="opt_in")
    pd.testing.assert_frame_equal(df, before)  # the caller's frame is untouched
    assert out["audience_status"].tolist() == ["ok"] * len(yes) + ["no_consent"] * len(no)
    reasons = out["audience_reason"].tolist()
    assert reasons[len(yes)] == "no consent (opt_in is False)"
    assert reasons[len(yes) + 4] == "no consent (opt_in is 'False')"
    assert reasons[len(yes) + 8] == reasons[len(yes) + 10] == "no consent (opt_in is empty)"
    assert "no_consent" in STATUSES


def test_unknown_consent_values_name_their_rows() -> None:
    df = consent_frame(["yes", "maybe", "no", 2, "maybe"])
    with pytest.raises(AudienceError, match=r"'maybe', 2 in 3 row\(s\): 1, 3, 4"):
        prepare_audience(df, consent="opt_in")


def test_a_missing_consent_column_names_the_columns() -> None:
    with pytest.raises(AudienceError, match=r"no consent column 'consent'; available columns: \['phone', 'opt_in'\]"):
        prepare_audience(consent_frame(["yes"]), consent="consent")


def test_consent_comes_after_the_number_and_before_suppression_and_duplicates() -> None:
    df = pd.DataFrame(
        {
            "phone": ["bad", "012 345 678", "012345678", "097 123 4567", "097 123 4567"],
            "opt_in": ["no", "no", "yes", "no", "yes"],
        }
    )
    out = prepare_audience(df, consent="opt_in", suppress=["0971234567"])
    # an unusable number stays invalid; a refusing row does not make the next row with its number a duplicate
    assert out["audience_status"].tolist() == ["invalid", "no_consent", "ok", "no_consent", "suppressed"]


def test_a_consent_like_column_without_consent_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="plasgate_nb"):
        out = prepare_audience(consent_frame(["no"]))
    assert out["audience_status"].tolist() == ["ok"]
    assert "consent-like column 'opt_in' but consent= was not given" in caplog.text


def test_sample_audience_with_consent_and_opt_outs() -> None:
    from plasgate_nb import read_customers

    df = read_customers(SAMPLE / "customers.csv")
    opt_out = read_customers(SAMPLE / "opt_out.csv")["phone"]
    out = prepare_audience(df, consent="opt_in", suppress=opt_out)
    refused = df["opt_in"] == "false"
    assert refused.sum() > 50  # the sample has customers who did not opt in
    assert set(out.loc[refused, "audience_status"]) <= {"no_consent", "invalid", "not_mobile", "missing"}
    assert not out.loc[out["audience_status"] == "ok", "opt_in"].eq("false").any()
