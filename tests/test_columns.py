"""Tests for plasgate_nb._columns: the Arrow text path renders, masks and counts exactly what Jinja does.

The reference renders every row through the whole compiled template with Jinja, then finishes and
counts the text; the vectorized renderer (Arrow text columns, pieces per distinct value) must give
the same sent text, report view, encoding, units, parts and blank flags on adversarial data.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plasgate_nb._columns import TextColumn, arrow_text, greedy_parts
from plasgate_nb._masking import finish
from plasgate_nb._render import render_frame
from plasgate_nb._template import compile_template, to_template_value
from plasgate_nb.compose import EmptyMessageWarning, render_messages
from plasgate_nb.errors import TemplateError
from plasgate_nb.segments import count_segments, split_parts, strip_markers

FLAVOURS = {
    "str": "str",  # pandas' Arrow-backed text: the Arrow path
    "arrow": pd.ArrowDtype(pa.string()),  # 32-bit offsets, cast on the way
    "object": object,  # Python objects: the per-distinct-value path
}


def reference(df: pd.DataFrame, template: str, mask: set[str]) -> list[tuple[str, str, str, int, int, bool]]:
    """Render row by row with Jinja through the whole template: sent, report, encoding, units, parts, blank."""
    compiled = compile_template(template, mask=mask)
    rows = []
    for record in df.to_dict("records"):
        raw = compiled.template.render({k: to_template_value(v) for k, v in record.items()})
        sent, report = finish(raw)
        counted = count_segments(sent)
        blank = not strip_markers(sent).strip()
        rows.append((sent, report, counted.encoding, counted.units, counted.segments, blank))
    return rows


def rendered(df: pd.DataFrame, template: str, mask: set[str]) -> list[tuple[str, str, str, int, int, bool]]:
    """Render with the vectorized renderer (the frame-level result, blank flags included)."""
    out, failure = render_frame(compile_template(template, mask=mask), df)
    assert failure is None and out is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = render_messages(df, template, mask=sorted(mask), max_parts=None)
    assert frame["content"].tolist() == out.content.to_pylist()
    assert frame["content_report"].tolist() == out.report.to_pylist()
    encodings = np.where(out.gsm, "GSM-7", "UCS-2").tolist()
    assert frame["encoding"].tolist() == encodings
    assert str(frame["content"].dtype) == "str" and str(frame["encoding"].dtype) == "str"
    return list(
        zip(
            out.content.to_pylist(),
            out.report.to_pylist(),
            encodings,
            out.units.tolist(),
            out.segments.tolist(),
            out.blank.tolist(),
            strict=True,
        )
    )


TEMPLATES = [
    "{{ a }}{{ b }}{{ c }}",
    "Hi {{ a }}, code {{ b }} in {{ c }}.",
    "{{ b }}",
    "{{ b }}#ma{{ a }}#",
    "#{{ a }}{{ b }}ma#{{ c }}",
    "{{ a }} {{ c|upper }} {{ b|default('-') }}",
    "{% if c %}{{ c }}:{% endif %}{{ a }}{{ b }}",
    "Dear {{ a }}, #ma#{{ c }}#ma# then {{ b }}",
    "{{ a|upper }}-{{ b|lower|upper }}-{{ c|lower }}",
    "{{ b|upper }}{{ a|lower }}",
]
PIECES = [
    *"aBb#mM€{}[]~^|\\ សéÇ`$@_😀\n\t\fßǅ",
    "#ma#",
    "ma#",
    "#ma",
    "\ue000",
    "\ue001",
    "\ue002",
    "\u3000",
    "\u2028",
    "€" * 90,
    "x" * 150,
    "😀" * 40,
    "ស" * 60,
    "{{ a }}",
]
text = st.lists(st.sampled_from(PIECES), max_size=6).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.tuples(st.none() | text, text, st.none() | text), min_size=1, max_size=8),
    template=st.sampled_from(TEMPLATES),
    masked=st.sampled_from([set(), {"b"}, {"a", "b"}, {"c"}]),
    flavour=st.sampled_from(sorted(FLAVOURS)),
)
def test_the_fast_paths_equal_jinja_row_by_row(rows: list, template: str, masked: set[str], flavour: str) -> None:
    df = pd.DataFrame(rows, columns=["a", "b", "c"]).astype(FLAVOURS[flavour])
    assert rendered(df, template, masked) == reference(df, template, masked)


def test_adversarial_values_in_every_flavour() -> None:
    values = [
        None,
        "",
        "   ",
        "\t\u3000\n",
        "#ma#",
        "x#ma#y",
        "#ma",
        "ma#",
        "{{ a }}",
        "€[]{}",
        "សុភា",
        "\ue000open",
        "😀",
        "Dara",
        "€" * 80,
        "ស" * 70,
    ]
    for flavour, dtype in FLAVOURS.items():
        df = pd.DataFrame({"a": values, "b": values[::-1], "c": ["c"] * len(values)}).astype(dtype)
        for template in TEMPLATES:
            for masked in (set(), {"a"}, {"a", "b"}):
                assert rendered(df, template, masked) == reference(df, template, masked), (flavour, template, masked)


def test_ascii_values_take_the_vectorized_case_filters() -> None:
    values = [None, "", " ", "#ma#", "x#MA#y", "#Ma", "mA#", "{{ a }}", "[]{}~", "Dara", "a" * 170, "\t\n\r\f"]
    df = pd.DataFrame({"a": values, "b": values[::-1], "c": ["c"] * len(values)}, dtype="str")
    piece = next(p for p in compile_template("{{ a|upper }}", mask=set()).pieces if p.kind == "column")
    assert piece.filters == ("upper",)
    column = TextColumn(arrow_text(df["a"]), masked=False)  # type: ignore[arg-type]
    assert column.ascii and column.cased(["upper"]).text.to_pylist()[9] == "DARA"
    for flavour, dtype in FLAVOURS.items():
        frame = df.astype(dtype)
        for template in TEMPLATES:
            for masked in (set(), {"a"}, {"a", "b"}):
                assert rendered(frame, template, masked) == reference(frame, template, masked), (flavour, template)


def test_missing_values_numbers_and_dates_equal_jinja() -> None:
    df = pd.DataFrame(
        {
            "a": [1.0, 1.5, np.nan, 2.0, None],
            "b": pd.array([10, None, 3, 250, 7], dtype="Int64"),
            "c": pd.to_datetime(["2024-05-01", None, "2024-06-02 13:45", "2023-12-31", "2024-01-01"], format="ISO8601"),
            "d": pd.Series(["x", pd.NA, "y", "z", "w"], dtype="string"),
            "e": [pd.NA, None, np.nan, pd.NaT, "ok"],
            "f": pd.to_datetime(["2024-05-01"] * 5).tz_localize("Asia/Phnom_Penh"),
        }
    )
    for template in [
        "{{ a }}|{{ b }}|{{ c }}|{{ d }}|{{ e }}|{{ f }}",
        "{{ c.strftime('%d/%m') }} {{ a|default('-') }}",
    ]:
        for masked in (set(), {"a", "b"}, {"c", "d", "e"}):
            got = rendered(df, template, masked)
            assert got == reference(df, template, masked)
    out = render_messages(df, "{{ a }}|{{ b }}|{{ c }}|{{ e }}")
    assert out["content"].tolist() == [
        "1|10|2024-05-01|",
        "1.5|||",
        "|3|2024-06-02 13:45:00|",
        "2|250|2023-12-31|",
        "|7|2024-01-01|ok",
    ]


def test_gsm_extension_characters_count_two_and_long_messages_are_split_exactly() -> None:
    df = pd.DataFrame({"a": ["€[]{}", "€" * 80, "ab", "€" * 76 + "x"]}, dtype="str")
    out = render_messages(df, "{{ a }}", max_parts=None)
    assert out["units"].tolist() == [10, 160, 2, 153]
    assert out["segments"].tolist() == [1, 1, 1, 1]
    out = render_messages(df, "x{{ a }}", max_parts=None)
    assert out["units"].tolist() == [11, 161, 3, 154]
    assert out["segments"].tolist() == [count_segments("x" + v).segments for v in df["a"]]
    assert out["segments"].tolist()[1] == 2  # 161 septets: two parts, never an escape pair split


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_control_characters_fail_the_same_way_on_every_path(flavour: str) -> None:
    df = pd.DataFrame({"a": ["ok", "fine", "bad\x00", "bad\x85"]}, index=[10, 11, 12, 13]).astype(FLAVOURS[flavour])
    with pytest.raises(TemplateError, match=r"row 12: .*control character U\+0000 \(from 'a'\)"):
        render_messages(df, "Hi {{ a }}", mask=["a"])
    df = pd.DataFrame({"a": ["ok", "bad\x85"]}, index=[10, 11]).astype(FLAVOURS[flavour])
    with pytest.raises(TemplateError, match=r"row 11: .*control character U\+0085"):
        render_messages(df, "Hi {{ a }}")


def test_blank_rows_are_flagged_on_the_arrow_path() -> None:
    df = pd.DataFrame({"a": ["", " \u3000", "x", None], "b": ["", "\n", "", None]}, dtype="str")
    with pytest.warns(EmptyMessageWarning, match=r"3 row\(s\): 0, 1, 3"):
        render_messages(df, "{{ a }}{{ b }}", mask=["a"])


def test_sliced_and_chunked_arrow_columns() -> None:
    chunked = pa.chunked_array([["Dara", None, "#ma#"], ["សុភា", "€", "x"]])
    df = pd.DataFrame({"a": pd.Series(pd.arrays.ArrowExtensionArray(chunked)), "b": list("uvwxyz")})
    df["c"] = df["b"].astype("str")
    template = "{{ a }}:{{ c }}"
    whole = render_messages(df, template, mask=["a"])
    for start in (1, 2, 4):
        part = render_messages(df.iloc[start:], template, mask=["a"])
        pd.testing.assert_frame_equal(part, whole.iloc[start:])
        assert rendered(df.iloc[start:], template, {"a"}) == reference(df.iloc[start:], template, {"a"})


def test_text_column_views_and_sentinels() -> None:
    values = arrow_text(pd.Series(["a\ue000b", None, ""], dtype="str"))
    assert values is not None and values.to_pylist() == ["a\ue000b", "", ""]
    column = TextColumn(values, masked=True)
    assert column.text.to_pylist() == ["ab", "", ""]  # data never carries sentinels
    assert column.lengths.tolist() == [2, 0, 0]
    (report,) = column.arrow("report")
    assert report.to_pylist() == ["******", "", ""]
    assert arrow_text(pd.Series([1, 2])) is None
    assert arrow_text(pd.Series(["a"], dtype=object)) is None
    assert arrow_text(pd.Series(["a"], dtype=pd.StringDtype("python"))) is None


def test_several_templates_with_arrow_columns_put_rows_back_in_order() -> None:
    df = pd.DataFrame(
        {
            "name": ["Dara", "សុភា", "Vanna", "Bopha", "Chan"],
            "language": ["en", "km", "en", "km", None],
            "otp": ["004821", "000007", "120000", "000001", "777777"],
        },
        dtype="str",
    )
    templates = {"en": "Hi {{ name }}, code {{ otp }}", "km": "សួស្តី {{ name }} កូដ {{ otp }}"}
    out = render_messages(df, templates, by="language", default="en", mask="otp")
    for i in range(len(df)):
        key = df.loc[i, "language"] if df.loc[i, "language"] in templates else "en"
        one = render_messages(df.iloc[[i]], templates[key], mask="otp")
        assert out.loc[i, "content"] == one["content"].iloc[0]
        assert out.loc[i, "content_report"] == one["content_report"].iloc[0]
        assert out.loc[i, "units"] == one["units"].iloc[0]


def test_arrow_text_keeps_the_callers_frame_untouched() -> None:
    df = pd.DataFrame({"a": ["x\ue001", None]}, dtype="str")
    before = df.copy()
    with pytest.warns(EmptyMessageWarning):
        out = render_messages(df, "{{ a }}", mask="a")
    assert out["content"].tolist() == ["#ma#x#ma#", ""]
    pd.testing.assert_frame_equal(df, before)


long_text = st.lists(st.sampled_from(["a", "€", "[", "😀", "ស", "\f", "x" * 40, "€" * 30, "😀" * 20]), max_size=60).map(
    "".join
)


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(long_text, max_size=8))
def test_greedy_parts_of_many_texts_equal_count_segments(texts: list[str]) -> None:
    counted = [count_segments(t) for t in texts]
    long = [t for t, c in zip(texts, counted, strict=True) if c.units > (160 if c.encoding == "GSM-7" else 70)]
    gsm = np.asarray([count_segments(t).encoding == "GSM-7" for t in long], dtype=bool)
    expected = [count_segments(t).segments for t in long]
    assert greedy_parts(pa.array(long, pa.large_string()), gsm).tolist() == expected
    sliced = pa.array(["x", *long], pa.large_string()).slice(1)  # an offset into the data
    assert greedy_parts(sliced, gsm, batch_chars=200).tolist() == expected


def test_long_messages_with_escapes_on_every_path_count_like_split_parts() -> None:
    names = ["", "a", "ab", "abc", "€", "សុភា", "😀"]
    for flavour, dtype in FLAVOURS.items():
        df = pd.DataFrame({"a": names * 3, "b": [f"C{i:03}" for i in range(21)]}).astype(dtype)
        for template in ["€" * 75 + "{{ a }}{{ b }}" + "[" * 10, "😀" * 33 + "{{ a }}#{{ b }}"]:
            out = render_messages(df, template, mask=["b"], max_parts=None)
            for sent, segments in zip(out["content"], out["segments"], strict=True):
                assert segments == len(split_parts(sent)) == count_segments(sent).segments, flavour
