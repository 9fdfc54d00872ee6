"""Tests for the frame stages on Dask DataFrames: prepare, render, cost, preview and ``ddf.sms``.

Each result is compared with the pandas path on the same data (``assert_frame_equal`` after compute),
on a LocalCluster of 2 worker processes, with numbers repeated across partitions.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

dd = pytest.importorskip("dask.dataframe", reason="Dask tests need the [dask] extra")
dask = pytest.importorskip("dask")

from plasgate_nb import (  # noqa: E402
    AudienceError,
    Ledger,
    NumericTextWarning,
    TemplateError,
    estimate_cost,
    prepare_audience,
    preview,
    render_messages,
)
from plasgate_nb.errors import OptionError  # noqa: E402

SPELLINGS = ["012 345 678", "+855 12 345 678", "85512345678", "(012) 345-678", "855012345678"]
OTHERS = ["+855 97 123 4567", "096 777 8888", "023 123 456", "12", "", None, "1800 123 456", "010 234 567"]


def audience(n: int, *, seed: int = 7) -> pd.DataFrame:
    """``n`` customers with mixed spellings, many repeats, consent answers, text labels in no order."""
    rng = np.random.default_rng(seed)
    pool = np.array(
        [*SPELLINGS, *OTHERS, *(f"0{p} {i:03d} {j:03d}" for p in (11, 15, 77) for i, j in [(1, 2), (3, 4)])]
    )
    return pd.DataFrame(
        {
            "phone": rng.choice(np.asarray(pool, dtype=object), n),
            "name": rng.choice(np.asarray(["Dara", "សុភា", "Sokha", None], dtype=object), n),
            "coupon": [f"K{i:04d}" for i in range(n)],
            "language": rng.choice(["en", "km", "fr"], n),
            "opt_in": rng.choice(["yes", "no", "y", "", "ចាស"], n),
        },
        index=pd.Index([f"c{i}" for i in rng.permutation(n)], name="customer"),
    )


def split(df: pd.DataFrame, npartitions: int) -> Any:
    """``df`` as a Dask frame, rows kept in their order (unsorted labels)."""
    return dd.from_pandas(df, npartitions=npartitions, sort=False)


TEMPLATES = {"en": "Hi {{ name|default('friend') }}, code {{ coupon }}", "km": "សួស្តី {{ name }} {{ coupon }}"}


@pytest.mark.parametrize("npartitions", [3, 5, 7])
def test_prepare_equals_pandas_across_partitions(npartitions: int, dask_client: Any, tmp_path: Path) -> None:
    df = audience(300)
    ddf = split(df, npartitions)
    with Ledger(tmp_path / "l.db") as led:
        led.suppress(["010 234 567"], reason="complaint")
        got = prepare_audience(ddf, consent="opt_in", suppress=["096 777 8888"], ledger=led)
        assert isinstance(got, dd.DataFrame)  # lazy
        base = ddf.compute()
        want = prepare_audience(base, consent="opt_in", suppress=["096 777 8888"], ledger=led)
    assert got.dtypes.equals(want.dtypes)  # meta, before compute
    out = got.compute()
    pd.testing.assert_frame_equal(out, want)
    assert set(out["audience_status"]) >= {"ok", "duplicate", "suppressed", "no_consent", "invalid", "missing"}
    # the same number in several partitions: one ok row, the rest name it
    first = out.index[out["msisdn"].eq("85512345678") & out["audience_status"].eq("ok")]
    assert len(first) == 1
    dupes = out[out["msisdn"].eq("85512345678") & out["audience_status"].eq("duplicate")]
    assert set(dupes["audience_reason"]) == {f"same number as row {first[0]}"}
    assert dupes.index.map(base.index.get_loc).min() > base.index.get_loc(first[0])


def test_prepare_without_conversion_equals_pandas_on_the_original_frame(dask_client: Any) -> None:
    df = pd.DataFrame({"phone": np.array([85512345678.0, "012 345 678", 12, None, 855971234567], dtype=object)})
    with dask.config.set({"dataframe.convert-string": False}):
        ddf = dd.from_pandas(df, npartitions=3, sort=False)
        out = prepare_audience(ddf).compute()
    pd.testing.assert_frame_equal(out, prepare_audience(df))
    assert out["audience_status"].tolist() == ["ok", "duplicate", "invalid", "missing", "ok"]


def test_duplicate_heavy_audience_is_exact_and_keeps_one_entry_per_number(
    dask_client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    df = pd.DataFrame(  # 2,100 rows, 12 numbers: every number in every partition, many times each
        {"phone": [f"0{p} {i:03d} {i:03d}" for _ in range(175) for p in (12, 97) for i in range(101, 107)]},
        index=pd.Index(np.arange(2100)[::-1] * 3, name="row"),
    )
    ddf = split(df, 7)
    with caplog.at_level(logging.DEBUG, logger="plasgate_nb"):
        got = prepare_audience(ddf)
    assert "7 partitions: 12 numbers sit in several partitions" in caplog.text  # not 2,100 rows
    out = got.compute()
    pd.testing.assert_frame_equal(out, prepare_audience(ddf.compute()))
    assert (out["audience_status"] == "ok").sum() == 12


def test_row_without_consent_does_not_win_its_number_across_partitions(dask_client: Any) -> None:
    df = pd.DataFrame(
        {"phone": ["012 345 678", "012 345 678", "85512345678"], "opt_in": ["no", "yes", "yes"]},
        index=["a", "b", "c"],
    )
    ddf = split(df, 3)
    out = prepare_audience(ddf, consent="opt_in").compute()
    assert out["audience_status"].tolist() == ["no_consent", "ok", "duplicate"]
    assert out.loc["c", "audience_reason"] == "same number as row b"
    pd.testing.assert_frame_equal(out, prepare_audience(ddf.compute(), consent="opt_in"))


def test_bad_consent_values_in_several_partitions_raise_at_call_time_like_pandas(dask_client: Any) -> None:
    df = audience(70)
    df.iloc[[3, 20, 21, 40, 55, 60, 69], df.columns.get_loc("opt_in")] = ["maybe", "?", "maybe", "2", "x", "y?", "z"]
    with pytest.raises(AudienceError) as pandas_error:
        prepare_audience(df, consent="opt_in")
    with pytest.raises(AudienceError) as dask_error:
        prepare_audience(split(df, 5), consent="opt_in")  # raised before any compute() of the result
    assert str(dask_error.value) == str(pandas_error.value)
    assert "'maybe', '?', '2', 'x', 'y?' in 7 row(s)" in str(dask_error.value)


def test_prepare_checks_columns_and_region_at_call_time() -> None:
    ddf = split(pd.DataFrame({"tel": ["012 345 678"]}), 1)
    with pytest.raises(AudienceError, match="no phone column 'phone'"):
        prepare_audience(ddf)
    with pytest.raises(AudienceError, match="no consent column 'opt_in'"):
        prepare_audience(ddf, phone="tel", consent="opt_in")
    with pytest.raises(AudienceError, match="unknown region"):
        prepare_audience(ddf, phone="tel", region="XX")


def test_opt_out_list_may_be_a_dask_series(dask_client: Any) -> None:
    ddf = split(audience(60), 4)
    opt_out = split(pd.DataFrame({"phone": ["+855 12 345 678", "not a number"]}), 2)["phone"]
    out = prepare_audience(ddf, suppress=opt_out).compute()
    want = prepare_audience(ddf.compute(), suppress=["+855 12 345 678", "not a number"])
    pd.testing.assert_frame_equal(out, want)
    assert "on the opt-out list" in set(out["audience_reason"])


@pytest.mark.parametrize("npartitions", [3, 7])
def test_render_equals_pandas_with_mask_and_templates_by_language(npartitions: int, dask_client: Any) -> None:
    ddf = prepare_audience(split(audience(200), npartitions), consent="opt_in")
    got = render_messages(ddf, TEMPLATES, by="language", default="en", mask=["coupon"])
    want = render_messages(ddf.compute(), TEMPLATES, by="language", default="en", mask=["coupon"])
    assert isinstance(got, dd.DataFrame)
    assert got.dtypes.equals(want.dtypes)
    pd.testing.assert_frame_equal(got.compute(), want)
    assert want["content"].str.contains("#ma#K").all()


def test_render_reads_a_template_file_on_the_client(dask_client: Any, tmp_path: Path) -> None:
    path = tmp_path / "offer.j2"
    path.write_text("Hi {{ name|default('friend') }}, code {{ coupon }}", encoding="utf-8")
    ddf = split(audience(40), 3)
    pd.testing.assert_frame_equal(
        render_messages(ddf, path, mask="coupon").compute(), render_messages(ddf.compute(), path, mask="coupon")
    )


def test_template_key_column_keeps_one_dtype_for_every_partition(dask_client: Any) -> None:
    df = pd.DataFrame({"tier": [1, 1, 2, 2, 1, 2]})
    got = render_messages(split(df, 3), {1: "gold", 2: "silver"}, by="tier")
    assert got.dtypes["template"] == np.dtype(object)
    pd.testing.assert_frame_equal(got.compute(), render_messages(df, {1: "gold", 2: "silver"}, by="tier"))


def test_template_errors_are_raised_at_call_time() -> None:
    ddf = split(audience(20), 2)
    with pytest.raises(TemplateError, match="line 1"):
        render_messages(ddf, "Hi {{ name ")
    with pytest.raises(TemplateError, match="not columns of the frame: 'points'"):
        render_messages(ddf, "Hi {{ points }}")
    with pytest.raises(TemplateError, match="mask names columns the frame does not have: 'pin'"):
        render_messages(ddf, "Hi", mask=["pin"])
    with pytest.raises(TemplateError, match="by names a column the frame does not have"):
        render_messages(ddf, TEMPLATES, by="lang")


def test_row_errors_surface_as_template_errors_on_compute(dask_client: Any) -> None:
    got = render_messages(split(audience(30), 3), TEMPLATES, by="language")  # 'fr' has no template, no default
    with pytest.raises(TemplateError, match="no template for language 'fr'"):
        got.compute()


def test_numeric_masked_column_warns_at_call_time() -> None:
    ddf = split(pd.DataFrame({"pin": [1234, 99]}), 2)
    with pytest.warns(NumericTextWarning, match="masked column 'pin' is numeric"):
        render_messages(ddf, "PIN {{ pin }}", mask="pin")


def test_long_and_blank_messages_are_logged_on_the_workers_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    ddf = split(pd.DataFrame({"text": ["x" * 900, "", "short"]}, index=["long", "blank", "ok"]), 3)
    with dask.config.set(scheduler="sync"), caplog.at_level(logging.WARNING, logger="plasgate_nb"):
        out = render_messages(ddf, "{{ text }}").compute()  # filterwarnings=error: no warning escapes
    with pytest.warns(UserWarning) as raised:  # pandas raises them
        want = render_messages(ddf.compute(), "{{ text }}")
    pd.testing.assert_frame_equal(out, want)
    assert [w.category.__name__ for w in raised] == ["LongMessageWarning", "EmptyMessageWarning"]
    assert "partition 0 of the Dask frame: LongMessageWarning: 1 row(s): 'long' need more than 5 parts" in caplog.text
    assert "partition 1 of the Dask frame: EmptyMessageWarning: 1 row(s): 'blank' render to empty text" in caplog.text


def test_cost_equals_pandas(dask_client: Any) -> None:
    ddf = render_messages(prepare_audience(split(audience(250), 6)), TEMPLATES, by="language", default="en")
    pandas_frame = ddf.compute()
    got = estimate_cost(ddf, price_per_segment=0.012, currency="USD")
    assert got == estimate_cost(pandas_frame, price_per_segment=0.012, currency="USD")
    assert got.messages + got.skipped == 250 and set(got.by_encoding) == {"GSM-7", "UCS-2"}
    with pytest.raises(TemplateError, match="run render_messages"):
        estimate_cost(split(audience(5), 1), price_per_segment=0.01)


@pytest.mark.parametrize("n", [None, 1, 9, 500])
def test_preview_shows_the_rows_pandas_shows(n: int | None, dask_client: Any) -> None:
    ddf = render_messages(prepare_audience(split(audience(120), 5)), TEMPLATES, by="language", default="en")
    pd.testing.assert_frame_equal(preview(ddf, n), preview(ddf.compute(), n))


def test_accessor_on_dask_frames(dask_client: Any) -> None:
    ddf = split(audience(80), 4)
    df = ddf.compute()
    ready = ddf.sms.prepare(consent="opt_in").sms.render(TEMPLATES, by="language", default="en", mask="coupon")
    assert isinstance(ready, dd.DataFrame)
    want = df.sms.prepare(consent="opt_in").sms.render(TEMPLATES, by="language", default="en", mask="coupon")
    pd.testing.assert_frame_equal(ready.compute(), want)
    assert ready.sms.estimate(price_per_segment=0.01) == want.sms.estimate(price_per_segment=0.01)
    pd.testing.assert_frame_equal(ready.sms.preview(), want.sms.preview())
    with pytest.raises(OptionError, match=r"call \.compute\(\)"):
        ready.sms.summary()
    assert "content" not in df.columns and "content" not in ddf.columns  # the inputs are untouched


HAS_SMS = "assert dd.from_pandas(pd.DataFrame({'phone': ['012 345 678']}), npartitions=1).sms.prepare() is not None"


@pytest.mark.parametrize(
    "code",
    [
        "import plasgate_nb, sys; assert not [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')]",
        "import plasgate_nb; import dask.dataframe as dd, pandas as pd; " + HAS_SMS,
        "import dask.dataframe as dd, pandas as pd; import plasgate_nb; " + HAS_SMS,
    ],
    ids=["import-does-not-import-dask", "plasgate-first", "dask-first"],
)
def test_import_registers_the_accessor_lazily(code: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-W", "error", "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")  # dask read_parquet: inplace= (pandas 3.1)
def test_fused_parquet_partitions_keep_duplicates_exact(dask_client: Any, tmp_path: Path) -> None:
    df = audience(400)
    for i in range(8):  # 8 files; reading two of five columns, Dask fuses them into fewer partitions
        df.iloc[i * 50 : (i + 1) * 50].to_parquet(tmp_path / f"part{i}.parquet")
    ddf = dd.read_parquet(tmp_path)[["phone", "opt_in"]]
    fused = ddf.map_partitions(lambda part: part.head(1)).optimize().npartitions
    assert fused < ddf.npartitions == 8  # what the dedupe must not be fooled by: ddf.partitions[i] is a file
    got = prepare_audience(ddf, consent="opt_in")
    pd.testing.assert_frame_equal(got.compute(), prepare_audience(ddf.compute(), consent="opt_in"))


def test_empty_partitions_and_frames_without_ok_rows(dask_client: Any) -> None:
    df = audience(90)
    ddf = split(df, 6)
    some = ddf[ddf["language"] == "km"]  # a filter: partitions of any length, some maybe empty
    some = some.map_partitions(lambda part: part.iloc[:0] if part.index.str.endswith("7").any() else part)
    pd.testing.assert_frame_equal(prepare_audience(some).compute(), prepare_audience(some.compute()))
    none_ok = split(pd.DataFrame({"phone": ["12", None, "abc", ""]}), 2)
    out = prepare_audience(none_ok).compute()
    assert out["audience_status"].tolist() == ["invalid", "missing", "invalid", "missing"]
    empty = split(df.iloc[:0], 1)
    rendered = render_messages(prepare_audience(empty), TEMPLATES, by="language", default="en")
    assert len(rendered.compute()) == 0
    assert estimate_cost(rendered, price_per_segment=0.01).messages == 0
