"""The benchmark suite keeps working: every workload runs at a tiny size.

Only structure is checked (what the reports hold and how they are
derived) and the correctness checks the workloads make (exact totals,
zero strict overshoot), never a time: a benchmark reports, it does not
judge.
"""

from __future__ import annotations

import importlib
import runpy
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
NAMES = [
    "chain",
    "fanout",
    "map",
    "concurrent_runs",
    "durable_chain",
    "governor_race",
    "cancel",
    "journal_growth",
    "idle_actors",
    "long_lived",
    "observe",
    "postgres_journal",
    "postgres_workers",
]
#: The workloads timed by repetitions (long_lived runs one pass; its samples are windows).
REPEATED = [name for name in NAMES if name != "long_lived"]


@pytest.fixture(scope="module")
def run() -> Iterator[ModuleType]:
    """``bench/run.py``: ``bench`` is a folder of scripts, imported with it on the path."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCH))
        yield importlib.import_module("run")


@pytest.fixture(scope="module")
def reports(run: ModuleType) -> dict[str, Any]:
    """Every workload's report at its tiny size, one timed repetition each."""
    return {workload.name: workload.run(1, tiny=True) for workload in run.WORKLOADS}


def test_the_suite_lists_the_plans_workloads_in_order(run: ModuleType) -> None:
    assert [workload.name for workload in run.WORKLOADS] == NAMES
    assert [workload.number for workload in run.WORKLOADS] == list(range(1, 14))


@pytest.mark.parametrize("name", REPEATED)
def test_each_report_holds_both_variants_and_their_ratio(
    reports: dict[str, Any], name: str
) -> None:
    report = reports[name]
    comparison = report.comparison

    assert report.name == name
    assert len(comparison.trioflow.values) == 1
    assert len(comparison.floor.values) == 1
    assert comparison.ratio == comparison.trioflow.median / comparison.floor.median
    assert comparison.trioflow_peak_mb > 0
    assert comparison.floor_peak_mb > 0
    assert report.notes


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("chain", 1.3),
        ("fanout", 1.5),
        ("map", 1.5),
        ("concurrent_runs", 1.5),
        ("durable_chain", 1.5),
        ("cancel", 2.0),
    ],
)
def test_ratio_workloads_are_judged_on_issue_16s_ratio(
    reports: dict[str, Any], name: str, target: float
) -> None:
    report = reports[name]
    ratio = report.comparison.ratio

    assert report.value == f"{ratio:.2f}x"
    assert report.target == f"ratio <= {target:.1f}x"
    assert report.met == (ratio <= target)


def test_each_repetition_gives_one_sample_per_variant(run: ModuleType) -> None:
    chain = run.workloads.chain
    report = chain.measure(chain.Size(steps=2, runs=1), repeats=3)

    assert len(report.comparison.trioflow.values) == 3
    assert len(report.comparison.floor.values) == 3


def test_the_trace_cost_is_the_difference_of_the_two_sinks(run: ModuleType) -> None:
    chain = run.workloads.chain
    trace = chain.measure_trace_cost(chain.Size(steps=3, runs=2), repeats=1)

    assert trace.difference_us == trace.memory_sink.median - trace.null_sink.median


def test_concurrent_runs_sum_to_the_exact_cost(run: ModuleType, reports: dict[str, Any]) -> None:
    concurrent_runs = run.workloads.concurrent_runs
    tiny = concurrent_runs.WORKLOAD.tiny

    assert tiny.expected_cost == Decimal("0.001") * tiny.runs * tiny.steps
    assert any(
        f"total cost over every run's result: {tiny.expected_cost} " in note
        for note in reports["concurrent_runs"].notes
    )
    # The check is exact down to the printed digits, not only numerically equal.
    with pytest.raises(AssertionError, match="expected exactly"):
        concurrent_runs.check_total(tiny.expected_cost.quantize(Decimal("0.0001")), tiny, "x")
    with pytest.raises(AssertionError, match="expected exactly"):
        concurrent_runs.check_total(tiny.expected_cost + Decimal("0.001"), tiny, "x")


def test_strict_budgeting_never_overshoots(reports: dict[str, Any]) -> None:
    report = reports["governor_race"]

    assert report.met
    assert report.value == "strict overshoot $0.00"


def test_idle_memory_is_the_peak_difference_per_waiting_step(
    run: ModuleType, reports: dict[str, Any]
) -> None:
    report = reports["idle_actors"]
    comparison = report.comparison
    waiters = run.workloads.idle_actors.WORKLOAD.tiny.waiters
    kb = (comparison.trioflow_peak_mb - comparison.floor_peak_mb) * 1e3 / waiters

    assert report.value == f"{kb:.2f} KB/step"
    assert report.target == "<= 3 KB/step"
    assert report.met == (kb <= 3.0)


def test_the_long_lived_runtime_is_judged_on_drift_and_memory(
    run: ModuleType, reports: dict[str, Any]
) -> None:
    long_lived = run.workloads.long_lived
    tiny = long_lived.WORKLOAD.tiny
    report = reports["long_lived"]
    comparison = report.comparison
    windows = tiny.runs // tiny.window
    trioflow = comparison.trioflow.values

    assert comparison.unit == "CPU µs/step"
    assert len(trioflow) == windows
    assert len(comparison.floor.values) == windows
    assert comparison.trioflow_peak_mb > 0
    assert comparison.floor_peak_mb > 0
    assert report.target == "drift <= 1.10x, memory <= 1.05x"
    assert report.value.startswith(f"drift {trioflow[-1] / trioflow[0]:.2f}x / ")
    assert any(f"held exactly {tiny.retained} runs" in note for note in report.notes)


def test_the_long_lived_drift_and_memory_growth_compare_the_right_windows(
    run: ModuleType,
) -> None:
    windows = run.workloads.long_lived.Windows([10.0, 12.0, 11.0], [100, 200, 210])

    assert windows.drift == 1.1
    assert windows.memory_growth == 210 / 200


def test_the_durable_chain_reports_per_step_against_the_floor(
    run: ModuleType, reports: dict[str, Any]
) -> None:
    report = reports["durable_chain"]

    assert report.comparison.unit == "µs/step"
    assert report.comparison.trioflow.median > 0
    assert report.comparison.floor.median > 0
    for note in (
        "in-memory store",
        "workload 1's floor",
        "no chain",
        "worker thread",
        "opening and closing",
        "checked",
    ):
        assert any(note in text for text in report.notes)


def test_the_durable_chains_row_check_fails_on_a_missing_row(
    run: ModuleType, tmp_path: Path
) -> None:
    durable_chain = run.workloads.durable_chain
    path = tmp_path / "floor.db"
    connection = durable_chain.floor_connection(path)
    try:
        durable_chain.insert_step(connection, 0, 0, 1)
        durable_chain.insert_step(connection, 0, 1, 1)
    finally:
        connection.close()

    durable_chain.check_rows(path, "steps", 2, "floor")
    with pytest.raises(RuntimeError, match="floor: 2 rows in steps, expected 3"):
        durable_chain.check_rows(path, "steps", 3, "floor")


def test_journal_growth_is_judged_on_the_long_chain_against_the_short(
    run: ModuleType, reports: dict[str, Any]
) -> None:
    journal_growth = run.workloads.journal_growth
    tiny = journal_growth.WORKLOAD.tiny
    report = reports["journal_growth"]
    comparison = report.comparison
    growth = comparison.trioflow.median / comparison.floor.median

    assert comparison.unit == f"bytes/step, {tiny.large:,} vs {tiny.small:,} steps"
    assert report.value == f"{growth:.2f}x"
    assert report.met == (growth <= journal_growth.TARGET_GROWTH)
    # Sizes in bytes over steps: each column times its steps is a whole file size.
    for per_step, steps in (
        (comparison.trioflow.median, tiny.large),
        (comparison.floor.median, tiny.small),
    ):
        assert per_step * steps == pytest.approx(round(per_step * steps))
        assert per_step * steps > 0
    assert any("empty journal" in note for note in report.notes)


def test_a_longer_chain_makes_a_larger_journal(run: ModuleType) -> None:
    journal_growth = run.workloads.journal_growth

    empty = journal_growth.journal_size(0)

    assert 0 < empty < journal_growth.journal_size(50)


def test_main_prints_the_table_and_writes_markdown(
    run: ModuleType, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    written = tmp_path / "results.md"
    reports = run.main(["--tiny", "--repeats", "1", "--markdown", str(written)])

    assert [report.name for report in reports] == NAMES
    out = capsys.readouterr().out
    markdown = written.read_text(encoding="utf-8")
    for text in (out, markdown):
        for name in NAMES:
            assert name in text
        assert "pending" not in text
    assert "|---:|" in markdown
    for machine in ("Machine:", "CPUs", "Python", "trio", "UTC", "Code:", "Load average"):
        assert machine in markdown


def test_some_workloads_print_only(
    run: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(run, "RESULTS", tmp_path / "RESULTS.md")
    reports = run.main(["cancel", "chain", "--tiny", "--repeats", "1"])

    assert [report.name for report in reports] == ["chain", "cancel"]
    assert not (tmp_path / "RESULTS.md").exists()


def test_an_unknown_workload_is_refused(run: ModuleType) -> None:
    with pytest.raises(SystemExit):
        run.main(["nonesuch"])


def test_bench_chain_runs_the_chain_workload(
    run: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["chain.py", "--tiny", "--repeats", "1"])
    runpy.run_path(str(BENCH / "chain.py"), run_name="__main__")

    out = capsys.readouterr().out
    assert "chain" in out
    assert "trace sink" in out
    assert "fanout" not in out
