"""Tests of the public surface: sorted __all__, every name importable, the accessor and its doctests."""

from __future__ import annotations

import doctest
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

import plasgate_nb
from plasgate_nb import CallbackServer, Campaign, ConfigError, Ledger, OptionError, PlasgateError, Simulator, accessor
from plasgate_nb.report import wait_for_reports
from plasgate_nb.simulator import SimulatorConfig
from tests.conftest import gateway_for

T = TypeVar("T")


LIGHT_IMPORT = """
import sys
import pandas as pd
import plasgate_nb
heavy = {'matplotlib', 'sqlalchemy', 'jinja2', 'ipywidgets', 'httpx', 'phonenumbers'}
print(sorted({m.split('.')[0] for m in sys.modules} & heavy))
df = pd.DataFrame({'phone': ['012 345 678']}).sms.prepare()
print(df['msisdn'].tolist())
import plasgate_nb.simulator
print('matplotlib' in sys.modules, 'sqlalchemy' in sys.modules)
print(plasgate_nb.callbacks.callback_urls('https://x.example', 1, 't')['callback_url'])
namespace = {}
exec('from plasgate_nb import *', namespace)
print(sorted(set(plasgate_nb.__all__) - set(namespace)))
"""


def test_importing_the_package_is_light_and_every_name_still_resolves() -> None:
    """``import plasgate_nb`` registers ``df.sms`` without loading the charts, the ledger or Jinja; the
    simulator's child process does not load them either; names and submodules resolve on first use."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", LIGHT_IMPORT], capture_output=True, text=True, check=True, timeout=120)
    lines = out.stdout.splitlines()
    assert lines[0] == "[]", out.stdout  # nothing heavy on import
    assert lines[1] == "['85512345678']"  # the accessor works (it imports what it needs then)
    assert lines[2] == "False False"  # the simulator needs neither matplotlib nor SQLAlchemy
    assert lines[3].startswith("https://x.example/batch/1/t")
    assert lines[4] == "[]"  # a star import gets every public name


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
    assert result.attempted >= 30  # collect, summary and plot included
    assert result.failed == 0


def unchanged(df: pd.DataFrame, step: Callable[[pd.DataFrame], T]) -> T:
    """Run an accessor ``step`` on ``df`` and check that ``df`` (values, dtypes, index, attrs) is as before."""
    before = df.copy(deep=True)
    result = step(df)
    pd.testing.assert_frame_equal(df, before, check_exact=True)
    assert not df.attrs
    return result


def test_accessor_is_stateless_and_does_not_mutate(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "phone": ["012 345 678", "bad", "097 123 4567", "016 222 333"],
            "name": ["A", "B", "C", "D"],
            "region": ["north", "north", "south", "south"],
        },
        index=pd.Index(["k1", "k2", "k3", "k4"], name="customer"),
    )
    assert df.sms is not df.sms  # pandas builds a fresh accessor each time: nothing can live on it
    prepared = unchanged(df, lambda f: f.sms.prepare())
    assert prepared["audience_status"].tolist() == ["ok", "invalid", "ok", "ok"]
    rendered = unchanged(prepared, lambda f: f.sms.render("Hi {{ name }}"))
    unchanged(rendered, lambda f: f.sms.preview())
    unchanged(rendered, lambda f: f.sms.estimate(price_per_segment=0.01))
    config = SimulatorConfig(seed=1, clock_speed=100.0, callback_retry_delay=0.05)
    with (
        Ledger(tmp_path / "ledger.db") as ledger,
        Simulator(config, mode="thread") as sim,
        CallbackServer(ledger, mode="thread") as receiver,
    ):
        campaign = Campaign("nomut", gateway=gateway_for(sim), ledger=ledger, receiver=receiver, progress=False)
        sent = unchanged(rendered, lambda f: f.sms.send(campaign))
        assert sent.accepted == 3
        assert wait_for_reports(campaign, timeout=20, until=1.0, poll=0.05, progress=False)["done"]
        collected = unchanged(rendered, lambda f: f.sms.collect(campaign))
    assert collected["send_state"].tolist() == ["accepted", "not_sent", "accepted", "accepted"]
    assert collected["delivery_status"].notna().sum() == 3
    summary = unchanged(collected, lambda f: f.sms.summary(by="region"))
    assert summary["rows"].tolist() == [2, 2]
    unchanged(collected, lambda f: f.sms.summary(by="region", tidy=True))
    for kind, by in [
        ("delivery_rate", "region"),
        ("status_breakdown", "region"),
        ("status_breakdown", None),
        ("time_to_deliver", "region"),
        ("time_to_deliver", None),
        ("funnel", None),
    ]:
        ax = unchanged(collected, lambda f, kind=kind, by=by: f.sms.plot(kind, by=by, ax=Figure().subplots()))
        assert isinstance(ax, Axes), kind


def test_accessor_plot_time_to_deliver_draws_a_curve_per_by_group() -> None:
    start = pd.Timestamp("2026-01-05 02:00", tz="UTC")
    results = pd.DataFrame(
        {
            "region": ["north", "north", "south", "south"],
            "send_state": ["accepted"] * 4,
            "delivery_status": ["DELIVRD", "DELIVRD", "DELIVRD", "UNDELIV"],
            "submitted_at": [start] * 4,
            "delivered_at": [start + pd.Timedelta(seconds=s) for s in (3, 5, 8)] + [pd.NaT],
        }
    )
    overall = results.sms.plot("time_to_deliver", ax=Figure().subplots())
    assert len(overall.get_lines()) == 1
    by_region = results.sms.plot("time_to_deliver", by="region", ax=Figure().subplots())
    labels = [line.get_label() for line in by_region.get_lines()]
    assert len(labels) == 2 and labels[0].startswith("north: 100.0%") and labels[1].startswith("south: 50.0%")
    assert "region" in by_region.get_title()


def test_accessor_plot_refuses_unknown_kind_and_unusable_by() -> None:
    with pytest.raises(ValueError, match="delivery_rate"):  # still a ValueError for existing callers
        pd.DataFrame().sms.plot("pie")
    with pytest.raises(OptionError, match="delivery_rate") as info:
        pd.DataFrame().sms.plot("pie")
    assert isinstance(info.value, PlasgateError) and isinstance(info.value, ConfigError)
    with pytest.raises(OptionError, match="needs by"):
        pd.DataFrame().sms.plot()
    with pytest.raises(OptionError, match="funnel"):
        pd.DataFrame().sms.plot("funnel", by="carrier")
