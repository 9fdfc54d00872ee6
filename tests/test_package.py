"""Tests of the public surface: sorted __all__, every name importable, the accessor and its doctests."""

from __future__ import annotations

import doctest

import pandas as pd
import pytest

import plasgate_nb
from plasgate_nb import accessor


def test_all_is_sorted_and_importable() -> None:
    assert plasgate_nb.__all__ == sorted(plasgate_nb.__all__)
    assert len(set(plasgate_nb.__all__)) == len(plasgate_nb.__all__)
    for name in plasgate_nb.__all__:
        assert getattr(plasgate_nb, name) is not None, name


def test_public_callables_have_docstrings() -> None:
    for name in plasgate_nb.__all__:
        doc = getattr(plasgate_nb, name).__doc__
        assert doc and doc.strip().splitlines()[0], name


def test_accessor_doctests_pass() -> None:
    result = doctest.testmod(accessor, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 8
    assert result.failed == 0


def test_accessor_is_stateless_and_does_not_mutate() -> None:
    df = pd.DataFrame({"phone": ["012 345 678", "bad"], "name": ["A", "B"]})
    before = df.copy()
    prepared = df.sms.prepare()
    assert df.sms is not df.sms  # pandas builds a fresh accessor each time: nothing can live on it
    pd.testing.assert_frame_equal(df, before)
    assert prepared["audience_status"].tolist() == ["ok", "invalid"]
    assert not df.attrs


def test_accessor_plot_refuses_unknown_kind() -> None:
    with pytest.raises(ValueError, match="delivery_rate"):
        pd.DataFrame().sms.plot("pie")
