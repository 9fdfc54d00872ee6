"""The README's first command: the demo runs end to end on the simulator, and a second run sends nothing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from plasgate_nb.demo import compose_sample, find_sample_data, run_demo


def test_sample_is_composed_with_masked_coupons_in_both_languages() -> None:
    rendered = compose_sample(find_sample_data())
    ok = rendered[rendered["audience_status"] == "ok"]
    assert set(ok["encoding"]) == {"GSM-7", "UCS-2"}
    assert ok["content"].str.contains("#ma#").all()
    assert not ok["content_report"].str.contains("SPRING-").any()
    assert (ok["content_report"].str.contains(r"\*\*\*\*\*\*")).all()


@pytest.mark.slow
def test_demo_runs_end_to_end_twice(tmp_path: Path) -> None:
    lines: list[str] = []
    first = run_demo(tmp_path, wait=40, say=lines.append)
    assert first.summary.accepted == first.summary.recipients > 2000
    assert first.summary.skipped > 0 and first.summary.rejected == 0
    results = pd.read_csv(tmp_path / "demo_results.csv")
    assert len(results) == 2400
    delivered = (results["delivery_status"] == "DELIVRD").sum()
    assert delivered > 0.8 * first.summary.accepted
    ledger_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("demo_ledger.db*"))
    assert b"SPRING-" not in ledger_bytes  # masked coupons never reach the ledger
    assert (tmp_path / "demo_results.png").stat().st_size > 10_000
    assert any("delivery by carrier" in line for line in lines)
    second = run_demo(tmp_path, wait=5, say=lines.append)
    assert second.summary.recipients == 0 and second.summary.already_sent == first.summary.accepted
    assert any("nothing new to send" in line for line in lines)
