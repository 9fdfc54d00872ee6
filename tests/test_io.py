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


# The command line reads its input the same way, and composes with consent and one template per value.


@pytest.fixture
def cli_files(tmp_path: Path) -> dict[str, Path]:
    customers = tmp_path / "customers.csv"
    customers.write_text(
        "customer_id,phone,name,language,otp,opt_in,due\n"
        "0001,012 345 678,Sokha,en,004821,yes,2026-05-01\n"
        "0002,097 123 4567,ដារា,km,000007,true,2026-05-02\n"
        "0003,016 222 333,Chan,en,123456,no,2026-05-03\n"
        "0004,010 234 567,Bopha,en,654321,,2026-05-04\n",
        encoding="utf-8",
    )
    (tmp_path / "en.j2").write_text("Hi {{ name }}, OTP {{ otp }}", encoding="utf-8")
    (tmp_path / "km.j2").write_text("សួស្តី {{ name }} {{ otp }}", encoding="utf-8")
    (tmp_path / "due.j2").write_text("{{ name }}: pay by {{ due.strftime('%d %b') }}", encoding="utf-8")
    return {"customers": customers, "dir": tmp_path}


def run_cli(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from plasgate_nb.cli import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_sends_codes_with_their_zeros_one_template_per_language_and_only_with_consent(
    cli_files: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from plasgate_nb.simulator import RateLimits, Simulator, SimulatorConfig

    d = cli_files["dir"]
    with Simulator(SimulatorConfig(seed=5, rate_limits=RateLimits.off()), mode="thread") as sim:
        creds = sim.credentials
        monkeypatch.setenv("PLASGATE_BASE_URL", sim.url)
        monkeypatch.setenv("PLASGATE_PRIVATE_KEY", creds.private_key)
        monkeypatch.setenv("PLASGATE_SECRET", creds.secret)
        monkeypatch.setenv("PLASGATE_SENDER", creds.sender)
        code, out, err = run_cli(
            "send", str(cli_files["customers"]),
            "--template", f"en={d / 'en.j2'}", "--template", f"km={d / 'km.j2'}", "--template-by", "language",
            "--mask", "otp", "--consent", "opt_in", "--key", "customer_id",
            "--campaign", "zeros", "--ledger", str(d / "cli.db"), "--json",
            capsys=capsys,
        )  # fmt: skip
        assert code == 0, err
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["accepted"] == 2 and summary["skipped_reasons"] == {"no_consent": 2}
        sent = {r["to"]: r["content"] for r in sim.records()}
    assert sent == {"85512345678": "Hi Sokha, OTP #ma#004821#ma#", "855971234567": "សួស្តី ដារា #ma#000007#ma#"}


def test_cli_preview_parses_dates_only_on_request(
    cli_files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    d = cli_files["dir"]
    args = ["preview", str(cli_files["customers"]), "--template", str(d / "due.j2"), "--json"]
    code, _, err = run_cli(*args, capsys=capsys)
    assert code == 2 and "failed on row 0" in err  # a text column has no strftime
    code, out, err = run_cli(*args, "--parse-dates", "due", capsys=capsys)
    assert code == 0, err
    shown = json.loads(out.strip().splitlines()[-1])["preview"]
    assert [row["content"] for row in shown][:1] == ["Sokha: pay by 01 May"]
    code, _, err = run_cli(*args, "--parse-dates", "nope", capsys=capsys)
    assert code == 2 and "'nope'" in err and "columns: customer_id, phone" in err


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--template", "x=km.j2"], ["needs --template-by COLUMN"]),
        (["--template", "km.j2", "--template-by", "language"], ["one --template VALUE=FILE per value"]),
        (["--template", "en.j2", "--template", "km.j2"], ["given several times", "--template-by"]),
        (["--template", "en=en.j2", "--template-by", "lang"], ["--template-by column 'lang'", "columns: customer_id"]),
        (["--template", "en=en.j2", "--template-by", "language"], ["no template for language 'km'", "default="]),
        (["--template", "en.j2", "--consent", "consent"], ["no consent column 'consent'"]),
    ],
)
def test_cli_template_and_consent_mistakes_are_one_line(
    cli_files: dict[str, Path], capsys: pytest.CaptureFixture[str], extra: list[str], words: list[str]
) -> None:
    d = cli_files["dir"]
    extra = [str(d / e) if e.endswith(".j2") and "=" not in e else e for e in extra]
    extra = [f"{e.split('=')[0]}={d / e.split('=')[1]}" if e.endswith(".j2") and "=" in e else e for e in extra]
    code, out, err = run_cli("preview", str(cli_files["customers"]), *extra, capsys=capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert all(word in err for word in words), err


def test_a_campaign_warns_when_its_key_column_is_numeric(tmp_path: Path) -> None:
    from plasgate_nb import Campaign, Gateway, prepare_audience

    df = prepare_audience(pd.DataFrame({"customer_id": [17, 1019], "phone": ["012 345 678", "097 123 4567"]}))
    rendered = render_messages(df, "Hi")
    gateway = Gateway(base_url="http://127.0.0.1:9", private_key="k", secret="s")
    campaign = Campaign("keys", gateway=gateway, ledger=tmp_path / "l.db", key="customer_id", progress=False)
    with pytest.warns(NumericTextWarning, match=r"key column 'customer_id' is numeric .*\(0\)"):
        campaign.send(rendered, dry_run=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        campaign.send(rendered.assign(customer_id=["00017", "01019"]), dry_run=True)
    campaign.ledger.close()
