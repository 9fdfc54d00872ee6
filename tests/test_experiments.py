"""A/B variants: deterministic assignment with a holdout, and comparisons checked against textbook figures."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from plasgate_nb.errors import ConfigError
from plasgate_nb.experiments import HOLDOUT, assign_variants, compare_variants, plot_variants


def customers(n: int, *, start: int = 0) -> pd.DataFrame:
    """``n`` customers keyed C00000... with a phone column."""
    ids = [f"C{i:05d}" for i in range(start, start + n)]
    return pd.DataFrame({"customer_id": ids, "msisdn": [f"85512{i:06d}" for i in range(start, start + n)]})


def test_assignment_is_stable_under_reruns_shuffling_and_added_rows() -> None:
    df = customers(5000)
    first = assign_variants(df, {"A": "a", "B": "b"}, holdout=0.1, key="customer_id", seed="spring")
    again = assign_variants(df, {"A": "a", "B": "b"}, holdout=0.1, key="customer_id", seed="spring")
    pd.testing.assert_series_equal(first["variant"], again["variant"])
    shuffled = assign_variants(
        df.sample(frac=1, random_state=3), ["A", "B"], holdout=0.1, key="customer_id", seed="spring"
    )
    grown = assign_variants(
        pd.concat([customers(700, start=5000), df]), ["A", "B"], holdout=0.1, key="customer_id", seed="spring"
    )
    by_key = first.set_index("customer_id")["variant"].astype(str)
    assert (shuffled.set_index("customer_id")["variant"].astype(str).reindex(by_key.index) == by_key).all()
    assert (grown.set_index("customer_id")["variant"].astype(str).reindex(by_key.index) == by_key).all()
    other_seed = assign_variants(df, ["A", "B"], holdout=0.1, key="customer_id", seed="autumn")
    assert (other_seed["variant"].astype(str) != first["variant"].astype(str)).mean() > 0.3
    assert "variant" not in df.columns  # the caller's frame is untouched


def test_shares_follow_the_holdout_and_weights() -> None:
    df = customers(20000)
    out = assign_variants(df, ["A", "B", "C"], holdout=0.1, key="customer_id", seed="s", weights=[2, 1, 1])
    shares = out["variant"].value_counts(normalize=True)
    assert list(out["variant"].cat.categories) == ["A", "B", "C", HOLDOUT]
    assert shares[HOLDOUT] == pytest.approx(0.10, abs=0.01)
    assert shares["A"] == pytest.approx(0.45, abs=0.015)
    assert shares["B"] == pytest.approx(0.225, abs=0.015)
    none = assign_variants(df, ["A", "B"], key="customer_id", seed="s")
    assert HOLDOUT not in set(none["variant"].astype(str))


def test_bad_arguments_are_clear_errors() -> None:
    df = customers(10)
    with pytest.raises(ConfigError, match="holdout"):
        assign_variants(df, ["A"], holdout=1.0, key="customer_id", seed="s")
    with pytest.raises(ConfigError, match="holdout's name"):
        assign_variants(df, ["A", HOLDOUT], key="customer_id", seed="s")
    with pytest.raises(ConfigError, match="weights"):
        assign_variants(df, ["A", "B"], key="customer_id", seed="s", weights={"Z": 1})
    with pytest.raises(ConfigError, match="seed"):
        assign_variants(df, ["A", "B"], key="customer_id", seed="")
    with pytest.raises(ConfigError, match="0/1"):
        compare_variants(df.assign(variant="A", bought=[2] * 10), "bought")


def _frame(counts: dict[str, tuple[int, int]], column: str = "converted") -> pd.DataFrame:
    """A frame with ``successes`` ones among ``n`` rows per variant."""
    parts = [
        pd.DataFrame({"variant": name, column: np.r_[np.ones(k, int), np.zeros(n - k, int)]})
        for name, (k, n) in counts.items()
    ]
    return pd.concat(parts, ignore_index=True)


def test_wilson_and_newcombe_intervals_match_newcombe_1998() -> None:
    # Newcombe (1998), Statistics in Medicine 17: 81/263 -> Wilson 0.2553-0.3662; 56/70 - 48/80 ->
    # method 10 (hybrid score) 0.0524-0.3339.
    result = compare_variants(_frame({"A": (56, 70), "B": (48, 80)}), "converted", reference="B")
    diff = result.differences.iloc[0]
    assert (diff["variant"], diff["reference"]) == ("A", "B")
    assert diff["difference"] == pytest.approx(0.2)
    assert diff["ci_low"] == pytest.approx(0.0524, abs=5e-5)
    assert diff["ci_high"] == pytest.approx(0.3339, abs=5e-5)
    single = compare_variants(_frame({"A": (81, 263)}), "converted").variants.loc["A"]
    assert (single["ci_low"], single["ci_high"]) == (pytest.approx(0.2553, abs=5e-5), pytest.approx(0.3662, abs=5e-5))


def test_two_proportion_p_value_matches_the_textbook_example() -> None:
    # 118 of 3,303 against 80 of 3,303: z = 2.742, two-sided p = 0.00611 (normal table).
    result = compare_variants(_frame({"A": (80, 3303), "B": (118, 3303)}), "converted")
    diff = result.differences.iloc[0]
    assert diff["z"] == pytest.approx(2.742, abs=5e-4)
    assert diff["p_value"] == pytest.approx(0.00611, abs=5e-5)


def test_variants_are_compared_with_the_holdout_on_conversions() -> None:
    frame = _frame({"A": (60, 400), "B": (90, 400), HOLDOUT: (20, 200)})
    frame.loc[0, "converted"] = np.nan  # unknown conversions are left out
    result = compare_variants(frame, "converted")
    assert result.variants.loc["A", "n"] == 399
    pairs = list(zip(result.differences["variant"], result.differences["reference"], strict=True))
    assert pairs == [("B", "A"), ("A", HOLDOUT), ("B", HOLDOUT)]
    vs_holdout = result.differences.set_index(["variant", "reference"]).loc[("B", HOLDOUT)]
    assert vs_holdout["difference"] == pytest.approx(90 / 400 - 20 / 200)
    assert vs_holdout["p_value"] < 0.001


def test_delivered_and_replied_metrics_read_collected_frames() -> None:
    results = pd.DataFrame(
        {
            "variant": ["A", "A", "A", "B", "B", HOLDOUT],
            "msisdn": ["85512000001", "85512000002", "85512000003", "85512000004", "85512000005", "85512000006"],
            "send_state": ["accepted", "accepted", "rejected", "accepted", "accepted", "holdout"],
            "delivery_status": ["DELIVRD", "UNDELIV", None, "DELIVRD", "DELIVRD", None],
        }
    )
    delivered = compare_variants(results, "delivered").variants
    assert delivered.loc["A", ["n", "successes"]].tolist() == [2, 1]
    assert delivered.loc["B", ["n", "successes"]].tolist() == [2, 2]
    assert delivered.loc[HOLDOUT, "n"] == 0 and np.isnan(delivered.loc[HOLDOUT, "rate"])
    replies = pd.DataFrame({"msisdn": ["85512000004", "85512000006", "85599999999"]})
    replied = compare_variants(results, "replied", replies=replies).variants
    assert replied["successes"].tolist() == [0, 1, 1]
    assert replied["n"].tolist() == [3, 2, 1]
    with pytest.raises(ConfigError, match="replies"):
        compare_variants(results, "replied")


def test_plot_variants_draws_rates_with_intervals() -> None:
    result = compare_variants(_frame({"A": (60, 400), "B": (90, 400), HOLDOUT: (20, 200)}), "converted")
    ax = Figure().subplots()
    assert plot_variants(result, ax=ax) is ax
    heights = [round(p.get_height(), 4) for p in ax.patches]
    assert heights == [0.15, 0.225, 0.1]
    assert "Wilson" in ax.get_title()


def test_render_by_variant_gives_holdout_rows_no_message() -> None:
    from plasgate_nb import EmptyMessageWarning, render_messages

    df = assign_variants(customers(200), {"A": "a", "B": "b"}, holdout=0.2, key="customer_id", seed="s")
    out = render_messages(df, {"A": "Offer A for {{ customer_id }}", "B": "Offer B"}, by="variant")
    held = out["variant"].astype(str).eq(HOLDOUT)
    assert held.any() and (~held).any()
    assert (out.loc[held, "content"] == "").all() and (out.loc[held, "segments"] == 0).all()
    assert (out.loc[held, "template"] == HOLDOUT).all()
    assert (out.loc[~held, "template"] == out.loc[~held, "variant"].astype(str)).all()
    assert out.loc[out["template"] == "A", "content"].str.startswith("Offer A for C").all()
    with pytest.warns(EmptyMessageWarning):  # a real empty message still warns; holdout rows never do
        render_messages(df, {"A": "", "B": "Offer B"}, by="variant")
