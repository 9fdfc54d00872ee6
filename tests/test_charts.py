"""Tests for plasgate_nb.charts and the Khmer font fallback: real renders to PNG, real properties."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from plasgate_nb import _fonts
from plasgate_nb.charts import (
    STATUS_COLORS,
    plot_delivery_rate,
    plot_funnel,
    plot_status_breakdown,
    plot_time_to_deliver,
)
from plasgate_nb.errors import ConfigError
from plasgate_nb.ledger import Ledger
from plasgate_nb.report import collect, delivery_summary

NAME = "charts"
CITIES = ["ភ្នំពេញ", "សៀមរាប", "Kampot"]


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """30 rows over three cities: 27 planned and accepted, DLRs for most, 3 skipped by the audience."""
    n = 30
    df = pd.DataFrame(
        {
            "msisdn": [f"855120000{i:02d}" for i in range(n)],
            "content": [f"hello {i}" for i in range(n)],
            "city": [CITIES[i % 3] for i in range(n)],
            "audience_status": ["ok"] * 27 + ["invalid"] * 3,
        },
        index=[f"k{i}" for i in range(n)],
    )
    with Ledger(tmp_path_factory.mktemp("charts") / "ledger.db") as ledger:
        ok = df.iloc[:27]
        ledger.plan(
            NAME,
            pd.DataFrame({"message_key": ok.index, "msisdn": ok["msisdn"], "content": ok["content"], "segments": 1}),
        )
        ledger.mark_submitting(NAME, list(ok.index), batch_id="b")
        ledger.settle(NAME, list(ok.index), state="accepted", message_ids={k: f"id-{k}" for k in ok.index})
        start = datetime.now(UTC)
        events = []
        for i, key in enumerate(ok.index):
            if i % 9 == 8:
                continue  # pending
            status = "UNDELIV" if i % 5 == 0 else "DELIVRD"
            events.append(
                {
                    "source": "dlr",
                    "message_id": f"id-{key}",
                    "level": 2,
                    "status": status,
                    "done_at": start + timedelta(seconds=5 + 3 * i),
                }
            )
        ledger.record_events(events)
        return collect(df, (ledger, NAME))


def axes() -> object:
    """Fresh Axes on a Figure made without pyplot (nothing global to leak between tests)."""
    return Figure(figsize=(7, 4), layout="constrained").subplots()


def png(ax: object, path: Path) -> Path:
    """Render ``ax``'s figure to ``path`` and check it is a non-trivial PNG."""
    ax.figure.savefig(path, dpi=80)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    return path


def test_delivery_rate_bars_per_group_with_percentages_and_intervals(collected: pd.DataFrame, tmp_path: Path) -> None:
    ax = plot_delivery_rate(collected, "city", ax=axes())
    summary = delivery_summary(collected, "city")
    delivered, waiting = ax.containers[1].patches, ax.containers[2].patches  # [0]: the interval bars
    assert len(delivered) == len(waiting) == len(summary) == 3
    labels = [t.get_text() for t in ax.texts]
    for name, row in summary.iterrows():
        assert any(f"{row['delivered_rate'] * 100:.1f}%" in t for t in labels), name
    heights = sorted(round(p.get_height(), 6) for p in delivered)
    assert heights == sorted(round(v * 100, 6) for v in summary["delivered_rate"])
    # the rows awaiting reports sit on top of the delivered part, in their own colour
    expected = (summary["pending"] / summary["sent"] * 100).round(6).tolist()
    assert [round(p.get_height(), 6) for p in waiting] == expected and sum(expected) > 0
    assert [round(p.get_y(), 6) for p in waiting] == [round(p.get_height(), 6) for p in delivered]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["delivered", "awaiting reports"]
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(v) for v in summary.index]
    assert "city" in ax.get_title()
    png(ax, tmp_path / "rate.png")


def test_status_breakdown_stacks_to_100_percent(collected: pd.DataFrame, tmp_path: Path) -> None:
    ax = plot_status_breakdown(collected, "city", ax=axes())
    tops: dict[float, float] = {}
    for patch in ax.patches:
        x = round(patch.get_x(), 6)
        tops[x] = max(tops.get(x, 0.0), patch.get_y() + patch.get_height())
    assert len(tops) == 3 and all(top == pytest.approx(100) for top in tops.values())
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["DELIVRD (delivered)", "UNDELIV (undeliverable)", "awaiting reports", "not sent"]
    assert any(t.get_text().endswith("%") for t in ax.texts)
    png(ax, tmp_path / "status.png")


def breakdown_frame() -> pd.DataFrame:
    """Two variants with known shares: A 50% DELIVRD, 20% UNDELIV, 10% EXPIRED, 10% pending, 10% not sent;
    B 50% DELIVRD and 10% each of REJECTD, DELETED, pending (an interim ACCEPTD), uncertain, refused at send.
    """
    a = (
        [("accepted", "DELIVRD")] * 10
        + [("accepted", "UNDELIV")] * 4
        + [("accepted", "EXPIRED")] * 2
        + [("accepted", None)] * 2
        + [("not_sent", None)] * 2
    )
    b = [("accepted", "DELIVRD")] * 5 + [
        ("accepted", "REJECTD"),
        ("accepted", "DELETED"),
        ("accepted", "ACCEPTD"),
        ("uncertain", None),
        ("rejected", None),
    ]
    rows = [("A", *r) for r in a] + [("B", *r) for r in b]
    return pd.DataFrame(rows, columns=["variant", "send_state", "delivery_status"])


def test_status_breakdown_stacks_each_delivery_status(tmp_path: Path) -> None:
    df = breakdown_frame()
    ax = plot_status_breakdown(df, "variant", ax=axes())
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [
        "DELIVRD (delivered)",
        "UNDELIV (undeliverable)",
        "EXPIRED (validity ended)",
        "REJECTD (refused by the network)",
        "DELETED (deleted by the SMSC)",
        "awaiting reports",
        "uncertain",
        "refused at send",
        "not sent",
    ]
    groups: dict[float, list[object]] = {}
    for patch in ax.patches:  # drawn bottom to top, one part at a time
        groups.setdefault(round(patch.get_x() + patch.get_width() / 2), []).append(patch)
    assert sorted(groups) == [0, 1] and all(len(parts) == len(legend) for parts in groups.values())
    heights = {x: [round(p.get_height(), 6) for p in parts] for x, parts in groups.items()}
    assert heights[0] == [50, 20, 10, 0, 0, 10, 0, 0, 10]  # A
    assert heights[1] == [50, 0, 0, 10, 10, 10, 10, 10, 0]  # B
    for parts in groups.values():
        bottoms = [p.get_y() for p in parts]
        assert bottoms == pytest.approx([0, *list(np.cumsum([p.get_height() for p in parts]))[:-1]])
    assert to_hex(groups[0][0].get_facecolor()) == STATUS_COLORS["DELIVRD"]
    assert to_hex(groups[0][1].get_facecolor()) == STATUS_COLORS["UNDELIV"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["A", "B"] and "variant" in ax.get_title()
    png(ax, tmp_path / "statuses.png")
    labelled: dict[float, list[str]] = {x: [] for x in groups}
    for text in ax.texts:  # each percentage is drawn inside the part it names
        if not text.get_text():
            continue
        centre = text.get_window_extent().frozen()
        cx, cy = (centre.x0 + centre.x1) / 2, (centre.y0 + centre.y1) / 2
        ((x, part),) = [(x, p) for x, parts in groups.items() for p in parts if p.get_window_extent().contains(cx, cy)]
        assert text.get_text() == f"{part.get_height():.0f}%"
        labelled[x].append(text.get_text())
    assert labelled == {0: ["50%", "20%", "10%", "10%", "10%"], 1: ["50%", "10%", "10%", "10%", "10%", "10%"]}


def test_status_breakdown_overall_leaves_out_empty_parts(tmp_path: Path) -> None:
    df = breakdown_frame()
    ax = plot_status_breakdown(df[df["variant"] == "A"], ax=axes())
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [
        "DELIVRD (delivered)",
        "UNDELIV (undeliverable)",
        "EXPIRED (validity ended)",
        "awaiting reports",
        "not sent",
    ]
    assert [round(p.get_height(), 6) for p in ax.patches] == [50, 20, 10, 10, 10]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["all"] and ax.get_title() == "Message outcomes"
    png(ax, tmp_path / "overall.png")


def test_time_to_deliver_ends_at_the_delivered_rate(collected: pd.DataFrame, tmp_path: Path) -> None:
    ax = plot_time_to_deliver(collected, ax=axes())
    (line,) = ax.get_lines()
    rate = delivery_summary(collected).loc["all", "delivered_rate"] * 100
    assert line.get_ydata()[-1] == pytest.approx(rate)
    assert list(line.get_ydata()) == sorted(line.get_ydata())
    assert "(s)" in ax.get_xlabel()
    by_city = plot_time_to_deliver(collected, ax=axes(), by="city")
    assert len(by_city.get_lines()) == 3
    png(by_city, tmp_path / "time.png")
    with pytest.raises(ConfigError):
        plot_time_to_deliver(collected, ax=axes(), by="nope")


def test_funnel_counts_and_percentages(collected: pd.DataFrame, tmp_path: Path) -> None:
    ax = plot_funnel(collected, ax=axes())
    widths = [p.get_width() for p in ax.patches]
    delivered = int((collected["delivery_status"] == "DELIVRD").sum())
    assert widths == [30, 27, 27, delivered]
    assert ax.texts[0].get_text() == "30 (100%)"
    waiting = int((collected["send_state"].eq("accepted") & collected["delivery_status"].isna()).sum())
    assert waiting == 3 and ax.texts[-1].get_text() == f"{delivered} ({delivered / 30:.0%}); 3 awaiting reports"
    png(ax, tmp_path / "funnel.png")


def test_without_ax_a_pyplot_figure_is_made(collected: pd.DataFrame) -> None:
    import matplotlib.pyplot as plt

    ax = plot_funnel(collected)
    try:
        assert plt.fignum_exists(ax.figure.number)
    finally:
        plt.close(ax.figure)


def test_khmer_labels_use_a_khmer_capable_font_when_one_exists(collected: pd.DataFrame) -> None:
    ax = plot_delivery_rate(collected, "city", ax=axes())
    family = _fonts.khmer_family()
    if family is None:
        pytest.skip("no Khmer-capable font on this machine (the fallback is tested below)")
    assert family in ax.get_xticklabels()[0].get_fontfamily()
    ax.figure.canvas.draw()  # would raise on a missing-glyph warning (filterwarnings = error)


def test_khmer_labels_render_without_any_khmer_font(
    collected: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_fonts, "_package_font", lambda: None)
    monkeypatch.setattr(_fonts, "_installed_font", lambda: None)
    _fonts.khmer_family.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="plasgate_nb"):
            ax = plot_delivery_rate(collected, "city", ax=axes())
            plot_status_breakdown(collected, "city", ax=axes())
        assert sum("no font with Khmer glyphs" in r.getMessage() for r in caplog.records) == 1
        png(ax, tmp_path / "fallback.png")  # matplotlib's missing-glyph warning is not raised
    finally:
        _fonts.khmer_family.cache_clear()


def test_has_khmer() -> None:
    assert _fonts.has_khmer("ភ្នំពេញ") and _fonts.has_khmer("city ក")
    assert not _fonts.has_khmer("Phnom Penh") and not _fonts.has_khmer(None)
