"""Tests for plasgate_nb.io: customer files read with text kept as text, and the numeric-text warning."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest

from plasgate_nb import NumericTextWarning, read_customers, render_messages
from plasgate_nb.errors import ConfigError
from plasgate_nb.io import warn_numeric_text

CSV = (
    "customer_id,phone,otp,name,joined,points\n"
    "00017,012 345 678,004821,NA,2024-06-13,10\n"
    "00018,0971234567,000007,,2024-07-01,\n"
    "00019,,120000,None,,3\n"
)


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "customers.csv"
    path.write_text(CSV, encoding="utf-8")
    return path


def test_csv_keeps_every_column_as_text(csv_file: Path) -> None:
    df = read_customers(csv_file)
    assert df["otp"].tolist() == ["004821", "000007", "120000"]
    assert df["customer_id"].tolist() == ["00017", "00018", "00019"]
    assert df["phone"].iloc[1] == "0971234567"
    assert df["points"].iloc[0] == "10"  # numbers too: converted only on request
    assert all(pd.api.types.is_string_dtype(df[name]) for name in df.columns)


def test_only_empty_cells_are_missing(csv_file: Path) -> None:
    df = read_customers(csv_file)
    assert df["name"].iloc[0] == "NA" and df["name"].iloc[2] == "None"  # text, not missing
    assert df["name"].isna().tolist() == [False, True, False]
    assert df["phone"].isna().tolist() == [False, False, True]
    assert "" not in df["name"].dropna().tolist()


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    path = tmp_path / "excel_export.csv"
    path.write_bytes("\ufeffcustomer_id,otp\n001,0042\n".encode())
    assert list(read_customers(path).columns) == ["customer_id", "otp"]


def test_parse_dates_converts_only_the_named_columns(csv_file: Path) -> None:
    df = read_customers(csv_file, parse_dates=["joined"])
    assert pd.api.types.is_datetime64_any_dtype(df["joined"])
    assert df["joined"].iloc[0] == pd.Timestamp("2024-06-13") and pd.isna(df["joined"].iloc[2])
    assert df["otp"].iloc[0] == "004821"
    assert read_customers(csv_file, parse_dates="joined")["joined"].dtype == df["joined"].dtype


def test_parse_dates_errors_name_the_column(csv_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"'signup'.*columns: customer_id, phone"):
        read_customers(csv_file, parse_dates=["signup"])
    with pytest.raises(ConfigError, match=r"column 'name' .* is not a date column"):
        read_customers(csv_file, parse_dates=["name"])


def test_excel_text_cells_stay_text(tmp_path: Path) -> None:
    path = tmp_path / "customers.xlsx"
    frame = pd.DataFrame(
        {
            "otp": ["004821", "000007", None],
            "mixed": ["A1", 42, 7.0],  # a column with any text cell is text: numbers without ".0"
            "points": [10, None, 3],
            "joined": pd.to_datetime(["2024-06-13", "2024-07-01", None]),
        }
    )
    frame.to_excel(path, index=False)
    df = read_customers(path)
    assert df["otp"].tolist()[:2] == ["004821", "000007"] and pd.isna(df["otp"].iloc[2])
    assert df["mixed"].tolist() == ["A1", "42", "7"]
    assert pd.api.types.is_numeric_dtype(df["points"])
    assert pd.api.types.is_datetime64_any_dtype(df["joined"])


def test_parquet_strings_stay_strings(tmp_path: Path) -> None:
    path = tmp_path / "customers.parquet"
    pd.DataFrame({"otp": ["004821", None], "points": [1, 2]}).to_parquet(path)
    df = read_customers(path)
    assert df["otp"].iloc[0] == "004821" and pd.isna(df["otp"].iloc[1])
    assert pd.api.types.is_integer_dtype(df["points"])


def test_an_old_xls_workbook_is_refused_with_a_way_out(tmp_path: Path) -> None:
    path = tmp_path / "old.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0")
    with pytest.raises(ConfigError, match=r"save it as \.xlsx or CSV"):
        read_customers(path)


def test_the_pandas_recipe_loses_zeros_and_render_messages_says_so(csv_file: Path) -> None:
    guessed = pd.read_csv(csv_file)  # what pandas does on its own: otp becomes a number
    assert guessed["otp"].iloc[0] == 4821
    with pytest.warns(NumericTextWarning, match=r"masked column 'otp' is numeric .* read it as text") as caught:
        render_messages(guessed, "Code {{ otp }}", mask=["otp"])
    message = str(caught[0].message)
    assert "2 row(s) (0, 1) have fewer digits than the longest value (6)" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = render_messages(read_customers(csv_file), "Code {{ otp }}", mask=["otp"])
    assert out["content"].iloc[0] == "Code #ma#004821#ma#"


def test_key_columns_get_the_same_warning() -> None:
    df = pd.DataFrame({"customer_id": [17, 18, 1019], "flag": [True, False, True]})
    with pytest.warns(NumericTextWarning, match=r"key column 'customer_id'.*\(0, 1\)"):
        warn_numeric_text(df, ["customer_id"], role="key")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_numeric_text(df, ["flag", "absent"], role="key")  # booleans and absent columns are not numbers
