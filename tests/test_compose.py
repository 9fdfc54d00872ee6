"""Tests for plasgate_nb.compose: rendering, missing values, masking, counting, warnings, preview, cost."""

from __future__ import annotations

import datetime as dt
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plasgate_nb._masking import finish
from plasgate_nb._template import compile_template, to_template_value
from plasgate_nb.compose import (
    CostEstimate,
    EmptyMessageWarning,
    LongMessageWarning,
    estimate_cost,
    preview,
    render_messages,
)
from plasgate_nb.errors import ConfigError, OptionError, TemplateError
from plasgate_nb.segments import count_segments, strip_markers


def customers() -> pd.DataFrame:
    """A small audience with the awkward values real exports have."""
    return pd.DataFrame(
        {
            "first_name": ["Dara", "សុភា", None, "Vanna"],
            "city": ["Phnom Penh", "Siem Reap", "Battambang", "Phnom Penh"],
            "coupon": ["K7Q2", "M9X4", "Z1", None],
            "otp": ["1234", "5678", "9012", "3456"],
            "points": [10, None, 3, 250],
            "last_purchase": pd.to_datetime(["2024-05-01", None, "2024-06-02", "2023-12-31"]),
        },
        index=pd.Index([101, 102, 103, 104], name="customer_id"),
    )


def render(df: pd.DataFrame, template: str, **kwargs: object) -> pd.DataFrame:
    """Render while turning any warning into a failure (tests that expect one catch it themselves)."""
    return render_messages(df, template, **kwargs)  # type: ignore[arg-type]


def test_renders_each_row_into_a_copy() -> None:
    df = customers()
    before = df.copy()
    out = render(df, "Hi {{ first_name }} from {{ city }}")
    assert out["content"].tolist() == [
        "Hi Dara from Phnom Penh",
        "Hi សុភា from Siem Reap",
        "Hi  from Battambang",
        "Hi Vanna from Phnom Penh",
    ]
    assert list(out.index) == [101, 102, 103, 104]
    pd.testing.assert_frame_equal(df, before)
    assert "content" not in df.columns
    assert list(out.columns[-5:]) == ["content", "content_report", "encoding", "units", "segments"]


def test_missing_values_render_empty_and_ints_without_decimals() -> None:
    df = pd.DataFrame(
        {
            "a": [None, np.nan, pd.NA, "x"],
            "n": [10.0, np.nan, 3.0, 2.5],
            "t": pd.to_datetime([None, "2024-01-02", None, "2024-03-04"]),
        },
        dtype=object,
    )
    df["t"] = pd.to_datetime(df["t"])
    out = render(df, "[{{ a }}|{{ n }}|{{ t }}]")
    assert out["content"].tolist() == ["[|10|]", "[||2024-01-02]", "[|3|]", "[x|2.5|2024-03-04]"]
    for text in out["content"]:
        assert "nan" not in text and "None" not in text and "NaT" not in text and "<NA>" not in text


def test_nullable_and_numpy_types() -> None:
    df = pd.DataFrame(
        {
            "i": pd.array([1, None, 3], dtype="Int64"),
            "b": pd.array([True, None, False]),
            "f": np.array([1.0, 2.0, 3.0], dtype=np.float32),
        }
    )
    out = render(df, "{{ i }}/{{ b }}/{{ f }}")
    assert out["content"].tolist() == ["1/True/1", "//2", "3/False/3"]


def test_dates_iso_by_default_and_formatted_by_the_template() -> None:
    out = render(customers(), "{{ last_purchase }}|{{ last_purchase.strftime('%d %b') }}")
    assert out["content"].tolist() == ["2024-05-01|01 May", "|", "2024-06-02|02 Jun", "2023-12-31|31 Dec"]
    times = pd.DataFrame({"t": pd.to_datetime(["2024-05-01 14:30", "2024-05-02 00:00"])})
    assert render(times, "{{ t }}")["content"].tolist() == ["2024-05-01 14:30:00", "2024-05-02"]
    objects = pd.DataFrame({"d": [dt.date(2024, 1, 2), None]}, dtype=object)
    assert render(objects, "{{ d }}!")["content"].tolist() == ["2024-01-02!", "!"]


def test_missing_value_helpers_default_and_tests() -> None:
    out = render(
        customers(),
        "{{ points|default('no') }} {% if points is defined %}y{% else %}n{% endif %}"
        "{% if points > 100 %} VIP{% endif %}",
    )
    assert out["content"].tolist() == ["10 y", "no n", "3 y", "250 y VIP"]


def test_arithmetic_on_a_missing_value_names_column_and_row() -> None:
    with pytest.raises(TemplateError, match=r"row 102.*'points' is missing"):
        render(customers(), "{{ points + 1 }}")


def test_missing_variable_names_variable_and_first_failing_row() -> None:
    with pytest.raises(TemplateError, match=r"'frist_name' is not a column.*row: 101"):
        render(customers(), "Hi {{ frist_name }}")
    with pytest.raises(TemplateError, match=r"'bonus' is not a column.*row: 104"):
        render(customers(), "{% if points > 100 %}{{ bonus }}{% endif %}")
    with pytest.raises(TemplateError, match="not columns of the frame: 'dead'"):
        render(customers(), "{% if false %}{{ dead }}{% endif %}")


def test_first_failing_row_is_the_earliest_across_the_template() -> None:
    df = pd.DataFrame({"a": [1, 1, 0], "b": [1, 0, 1]}, index=["r1", "r2", "r3"])
    with pytest.raises(TemplateError, match="row 'r2'"):
        render(df, "{{ 1 // a }} {{ 1 // b }}")


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(TemplateError, match="line 3"):
        render(customers(), "Hello\n{{ first_name }}\n{% if x %}")


def test_sandbox_refuses_unsafe_attributes() -> None:
    with pytest.raises(TemplateError, match="row 101"):
        render(customers(), "{{ first_name.__class__.__mro__[1].__subclasses__() }}")


def test_masking_wraps_outputs_even_through_filters() -> None:
    out = render(
        customers(),
        "{{ otp }}|{{ coupon|upper }}|{{ otp ~ '!' }}|{{ 'Code: ' ~ coupon }}|{{ city }}",
        mask=["otp", "coupon"],
    )
    row = out.loc[101]
    assert row["content"] == "#ma#1234#ma#|#ma#K7Q2#ma#|#ma#1234!#ma#|#ma#Code: K7Q2#ma#|Phnom Penh"
    assert row["content_report"] == "******|******|******|******|Phnom Penh"
    assert strip_markers(row["content"]) == "1234|K7Q2|1234!|Code: K7Q2|Phnom Penh"
    # A missing coupon leaves no empty masked area behind.
    assert out.loc[104, "content"].startswith("#ma#3456#ma#||#ma#3456!#ma#|#ma#Code: #ma#|")


def test_masking_follows_assignments_loops_and_macros() -> None:
    template = (
        "{% set c = coupon %}{{ c }} {% for ch in otp %}{{ ch }}{% endfor %} "
        "{% macro show(v) %}[{{ v }}]{% endmacro %}{{ show(coupon) }}"
    )
    out = render(customers(), template, mask=["otp", "coupon"])
    assert "K7Q2" not in out.loc[101, "content_report"] and "1" not in out.loc[101, "content_report"]
    assert strip_markers(out.loc[101, "content"]) == "K7Q2 1234 [K7Q2]"


def test_masking_inside_blocks() -> None:
    out = render(customers(), "{% if coupon %}Code {{ coupon }}{% else %}none{% endif %}", mask="coupon")
    assert out["content"].tolist() == ["Code #ma#K7Q2#ma#", "Code #ma#M9X4#ma#", "Code #ma#Z1#ma#", "none"]
    assert out["content_report"].tolist() == ["Code ******"] * 3 + ["none"]


def test_data_cannot_open_or_close_a_masked_area() -> None:
    df = pd.DataFrame({"name": ["x#ma#y", "#ma", "#ma#ma#", "a\ue000b"], "code": ["1#ma#2", "9", "8", "7"]})
    out = render(df, "{{ name }}{{ code }}", mask=["code"])
    assert out["content"].tolist() == ["x#ma_#y#ma#1#ma_#2#ma#", "#ma_#ma#9#ma#", "#ma_#ma_##ma#8#ma#", "ab#ma#7#ma#"]
    for sent, report in zip(out["content"], out["content_report"], strict=True):
        assert sent.count("#ma#") == 2
        assert report.endswith("******") and report.count("******") == 1


def test_literal_markers_in_the_template_text_are_honoured() -> None:
    out = render(customers(), "PIN #ma#{{ otp }}#ma# for {{ first_name }}", mask=["otp"])
    assert out.loc[101, "content"] == "PIN #ma#1234#ma# for Dara"
    assert out.loc[101, "content_report"] == "PIN ****** for Dara"
    with pytest.raises(TemplateError, match="never closes"):
        render(customers(), "PIN #ma#{{ otp }}")


def test_unknown_mask_columns_are_named() -> None:
    with pytest.raises(TemplateError, match="'pin'"):
        render(customers(), "{{ otp }}", mask=["otp", "pin"])


def test_encoding_units_and_segments() -> None:
    df = pd.DataFrame({"t": ["Hello", "€" * 3, "សួស្តី", "a" * 161, "a" * 152 + "{" + "a" * 152, None]})
    out = render_messages(df.iloc[:5], "{{ t }}")
    assert out["encoding"].tolist() == ["GSM-7", "GSM-7", "UCS-2", "GSM-7", "GSM-7"]
    assert out["units"].tolist() == [5, 6, 6, 161, 306]
    assert out["segments"].tolist() == [1, 1, 1, 2, 3]
    for text, enc, units, parts in zip(out["content"], out["encoding"], out["units"], out["segments"], strict=True):
        assert count_segments(text) == (count_segments(text).__class__(enc, units, parts))


def test_markers_are_not_counted() -> None:
    out = render(pd.DataFrame({"c": ["1234"]}), "Code {{ c }}", mask="c")
    assert out.loc[0, "units"] == len("Code 1234")


def test_long_messages_warn_naming_rows() -> None:
    df = pd.DataFrame({"t": ["a" * 900, "short", "b" * 1000]}, index=["x", "y", "z"])
    with pytest.warns(LongMessageWarning, match=r"2 row\(s\): 'x', 'z'"):
        out = render_messages(df, "{{ t }}")
    assert out["segments"].tolist() == [6, 1, 7]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        render_messages(df, "{{ t }}", max_parts=7)
        render_messages(df, "{{ t }}", max_parts=None)


def test_empty_messages_warn_naming_rows() -> None:
    df = pd.DataFrame({"t": ["x", None, "  "]}, index=["a", "b", "c"])
    with pytest.warns(EmptyMessageWarning, match=r"2 row\(s\): 'b', 'c'"):
        out = render_messages(df, "{{ t }}")
    assert out["content"].tolist() == ["x", "", "  "]
    assert out["units"].tolist() == [1, 0, 2]


def test_empty_frame_keeps_columns() -> None:
    out = render(customers().iloc[:0], "Hi {{ first_name }}", mask=["coupon"])
    assert len(out) == 0 and "content_report" in out.columns
    with pytest.raises(TemplateError, match="nope"):
        render(customers().iloc[:0], "{{ nope }}")


def test_custom_column_name_and_template_file(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "t.j2"
    path.write_text("Hi {{ first_name }}\n", encoding="utf-8")
    out = render(customers(), path, column="sms")
    assert out.loc[101, "sms"] == "Hi Dara" and "sms_report" in out.columns


def test_preview_and_cost() -> None:
    df = customers()
    df["msisdn"] = ["85512345678", "85512345679", "85512345670", "85512345671"]
    df["audience_status"] = ["ok", "ok", "ok", "invalid"]
    out = render(df, "Hi {{ first_name }}, code {{ coupon }}", mask=["coupon"])
    shown = preview(out, 2)
    assert list(shown.columns) == ["msisdn", "content", "content_report", "encoding", "units", "segments"]
    assert len(shown) == 2 and shown.loc[101, "content_report"] == "Hi Dara, code ******"
    cost = estimate_cost(out, price_per_segment=0.02)
    assert isinstance(cost, CostEstimate)
    assert (cost.messages, cost.segments, cost.skipped) == (3, 3, 1)
    assert cost.by_encoding == {"GSM-7": {"messages": 2, "segments": 2}, "UCS-2": {"messages": 1, "segments": 1}}
    assert cost.total == pytest.approx(0.06) and "USD" in str(cost)
    with pytest.raises(ConfigError):
        estimate_cost(out, price_per_segment=-1)
    with pytest.raises(TemplateError, match="render_messages"):
        preview(customers())


@pytest.mark.parametrize(
    ("template", "column", "value", "row", "source"),
    [
        ("Hi {{ first_name }}", "first_name", "Da\x00ra", 102, "'first_name'"),
        ("Code {{ coupon|upper }}", "coupon", "K\x1b[0m", 103, "'coupon'"),
        ("Hi {{ first_name }}, {{ city }}", "city", "Siem\x85Reap", 104, "'city'"),
        ("Hi {{ first_name }}, code {{ otp }}", "otp", "12\x7f34", 101, "'otp'"),
        ("Hi\x07 {{ first_name }}", None, None, 101, "in the template text"),
    ],
)
def test_control_characters_are_a_template_error_naming_the_row(
    template: str, column: str | None, value: str | None, row: int, source: str
) -> None:
    df = customers()
    if column is not None:
        df.loc[row, column] = value
    with pytest.raises(TemplateError, match=rf"row {row}: the message holds control character U\+00") as info:
        render(df, template, mask=["otp"])
    assert source in str(info.value) and "tab, newline" in str(info.value)
    if value is not None:
        assert value not in str(info.value)  # a masked value never shows in an error


def test_tab_newline_carriage_return_and_form_feed_render() -> None:
    df = customers().assign(city=["Phnom\tPenh", "Siem\nReap", "A\r\nB", "page\fbreak"])
    out = render(df, "Hi {{ first_name|default('there') }},\n{{ city }}")
    assert out["content"].tolist()[2] == "Hi there,\nA\r\nB"
    assert out["encoding"].tolist() == ["UCS-2", "UCS-2", "GSM-7", "GSM-7"]  # 101: a tab is not GSM 03.38; 102: Khmer


@pytest.mark.parametrize("price", [float("nan"), float("inf"), float("-inf"), -0.01, np.float64("nan"), "0.01", True])
def test_a_price_must_be_a_finite_number_at_least_zero(price: object) -> None:
    out = render(customers(), "Hi {{ first_name }}")
    with pytest.raises(ConfigError, match=r"price_per_segment must be a (finite )?number >= 0"):
        estimate_cost(out, price_per_segment=price)  # type: ignore[arg-type]
    assert estimate_cost(out, price_per_segment=np.float32(0.5)).total == 2.0
    assert estimate_cost(out, price_per_segment=0).total == 0.0


def reference(df: pd.DataFrame, template: str, mask: set[str]) -> list[tuple[str, str, object]]:
    """Render row by row through the whole compiled template: what the piece renderer must equal."""
    compiled = compile_template(template, mask=mask)
    rows = []
    for record in df.to_dict("records"):
        raw = compiled.template.render({k: to_template_value(v) for k, v in record.items()})
        sent, report = finish(raw)
        rows.append((sent, report, count_segments(sent)))
    return rows


TEMPLATES = [
    "Hi {{ a }}, code {{ b }} in {{ c }}.",
    "{{ a }}{{ b }}{{ c|upper }}",
    "{% if c %}{{ c }}:{% endif %}{{ a ~ b }}#",
    "{{ b }}#ma{{ a }}",
    "x{% for ch in b %}{{ ch }}{% endfor %}{{ a|default('-') }}",
]

text = st.lists(st.sampled_from([*"ab#m€{ សa😀\n", "#ma#", "ma#", "#ma", "\ue000"]), max_size=8).map("".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.tuples(st.none() | text, text, st.none() | text), min_size=1, max_size=6),
    template=st.sampled_from(TEMPLATES),
    masked=st.sampled_from([set(), {"b"}, {"a", "b"}]),
)
def test_piece_renderer_equals_row_by_row_rendering(rows: list, template: str, masked: set[str]) -> None:
    df = pd.DataFrame(rows, columns=["a", "b", "c"], dtype=object)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = render_messages(df, template, mask=sorted(masked), max_parts=None)
    expected = reference(df, template, masked)
    got = list(zip(out["content"], out["content_report"], out["encoding"], out["units"], out["segments"], strict=True))
    assert got == [(s, r, c.encoding, c.units, c.segments) for s, r, c in expected]
    for sent in out["content"]:
        assert sent.count("#ma#") % 2 == 0


def languages() -> pd.DataFrame:
    """Customers in two languages (and one the templates do not cover), codes as text."""
    return pd.DataFrame(
        {
            "first_name": ["Dara", "សុភា", "Vanna", "Bopha", "Chan"],
            "language": ["en", "km", "en", "fr", None],
            "otp": ["004821", "000007", "120000", "000001", "777777"],
        },
        index=pd.Index(["c1", "c2", "c3", "c4", "c5"], name="customer_id"),
    )


TEMPLATES = {"en": "Hi {{ first_name }}, code {{ otp }}", "km": "សួស្តី {{ first_name }} កូដ {{ otp }}"}


def test_one_template_per_language() -> None:
    df = languages().iloc[:3]
    before = df.copy()
    out = render(df, TEMPLATES, by="language", mask=["otp"])
    pd.testing.assert_frame_equal(df, before)
    assert out["content"].tolist() == [
        "Hi Dara, code #ma#004821#ma#",
        "សួស្តី សុភា កូដ #ma#000007#ma#",
        "Hi Vanna, code #ma#120000#ma#",
    ]
    assert out["content_report"].tolist()[1] == "សួស្តី សុភា កូដ ******"
    assert out["template"].tolist() == ["en", "km", "en"]
    assert out["encoding"].tolist() == ["GSM-7", "UCS-2", "GSM-7"]
    for single in ("en", "km"):  # each row is exactly what its template alone renders
        rows = df[df["language"] == single]
        alone = render(rows, TEMPLATES[single], mask=["otp"])
        cols = ["content", "content_report", "encoding", "units", "segments"]
        pd.testing.assert_frame_equal(out.loc[rows.index, cols], alone[cols])


def test_a_value_without_a_template_is_an_error_naming_it_and_its_rows() -> None:
    with pytest.raises(TemplateError, match=r"no template for language 'fr', no value in 2 row\(s\): 'c4', 'c5'"):
        render(languages(), TEMPLATES, by="language")


def test_default_is_a_key_or_a_template_of_its_own() -> None:
    out = render(languages(), TEMPLATES, by="language", default="en")
    assert out["template"].tolist() == ["en", "km", "en", "en", "en"]
    assert out.loc["c4", "content"] == "Hi Bopha, code 000001"
    out = render(languages(), TEMPLATES, by="language", default="Hello {{ first_name }}")
    assert out["template"].tolist() == ["en", "km", "en", "default", "default"]
    assert out.loc["c5", "content"] == "Hello Chan"


def test_template_errors_name_the_template_and_the_row(tmp_path: object) -> None:
    broken = {**TEMPLATES, "km": "{{ first_name.nope() }}"}
    with pytest.raises(TemplateError, match=r"template 'km': template failed on row 'c2'"):
        render(languages().iloc[:3], broken, by="language")
    with pytest.raises(TemplateError, match=r"template 'km': .*'surname'"):  # even with no km row at all
        render(languages().iloc[[0]], {**TEMPLATES, "km": "{{ surname }}"}, by="language")
    with pytest.raises(TemplateError, match="by=<column>"):
        render(languages(), TEMPLATES)
    with pytest.raises(TemplateError, match="'lang'"):
        render(languages(), TEMPLATES, by="lang")
    with pytest.raises(TemplateError, match="several templates"):
        render(languages(), "Hi", by="language")


def test_templates_may_be_files_and_keys_any_value(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "b.j2"
    path.write_text("B {{ first_name }}", encoding="utf-8")
    df = languages().assign(variant=[1, 2, 1, 2, 1])
    out = render(df, {1: "A {{ first_name }}", 2: path}, by="variant")
    assert out["content"].tolist() == ["A Dara", "B សុភា", "A Vanna", "B Bopha", "A Chan"]
    assert out["template"].tolist() == [1, 2, 1, 2, 1]


def test_preview_shows_one_row_per_template_and_the_longest() -> None:
    df = languages().iloc[:3].copy()
    df.loc["c3", "first_name"] = "Vanna " * 40  # the longest message: three parts
    df["audience_status"] = ["ok", "ok", "ok"]
    out = render(df, TEMPLATES, by="language", mask=["otp"])
    shown = preview(out)
    assert list(shown.index) == ["c1", "c2", "c3"]
    assert list(shown.columns) == ["template", "language", "content", "content_report", "encoding", "units", "segments"]
    assert shown.loc["c3", "segments"] == 2
    assert preview(out, 1).index.tolist() == ["c1"]  # n: the first rows, as before
    assert preview(out, by="language").index.tolist() == ["c1", "c2", "c3"]
    with pytest.raises(OptionError):
        preview(out, by="nope")


def test_preview_displays_whole_messages_with_masked_areas_marked() -> None:
    df = languages().iloc[:2].assign(first_name=["D" * 120, "សុភា"])
    shown = preview(render(df, TEMPLATES, by="language", mask=["otp"]))
    whole = shown.loc["c1", "content"]
    assert len(whole) > 120 and whole in repr(shown)  # the text view is not cut at 50 characters
    page = shown._repr_html_()
    assert whole.replace("#ma#004821#ma#", "") in page and "..." not in page
    assert page.count("<mark") == 4  # two masked areas in the sent texts, two ****** in the reports
    assert ">#ma#004821#ma#</mark>" in page and ">******</mark>" in page
    assert type(shown[["content"]]) is pd.DataFrame  # what is derived from a preview is a plain frame
