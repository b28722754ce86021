"""bench/chain.py keeps working: its functions run at a tiny size.

Only structure is checked (what the reports hold and how they are
derived), never a time: a benchmark reports, it does not judge.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

BENCH_CHAIN = Path(__file__).resolve().parents[1] / "bench" / "chain.py"
TINY = {"steps": 3, "runs": 2, "repeats": 1}


def _load(path: Path) -> ModuleType:
    """Import a script by path: ``bench`` is a folder of scripts, not a package."""
    spec = importlib.util.spec_from_file_location("bench_chain", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def chain() -> ModuleType:
    return _load(BENCH_CHAIN)


def test_chain_report_holds_both_timings_and_their_ratio(chain: ModuleType) -> None:
    report = chain.measure_chain(**TINY)

    assert (report.steps, report.runs) == (3, 2)
    assert len(report.trioflow.samples_us) == 1
    assert len(report.floor.samples_us) == 1
    assert report.ratio == report.trioflow.median_us / report.floor.median_us
    assert isinstance(report.trioflow_peak_mb, float)
    assert isinstance(report.floor_peak_mb, float)


def test_each_repetition_gives_one_sample_per_variant(chain: ModuleType) -> None:
    report = chain.measure_chain(steps=2, runs=1, repeats=3)

    assert len(report.trioflow.samples_us) == 3
    assert len(report.floor.samples_us) == 3


def test_trace_cost_is_the_difference_of_the_two_sinks(chain: ModuleType) -> None:
    report = chain.measure_trace_cost(**TINY)

    assert len(report.memory_sink.samples_us) == 1
    assert len(report.null_sink.samples_us) == 1
    assert report.difference_us == report.memory_sink.median_us - report.null_sink.median_us


@pytest.mark.parametrize(("flag", "marker"), [([], "-----"), (["--markdown"], "|---|")])
def test_main_prints_a_table(
    chain: ModuleType, capsys: pytest.CaptureFixture[str], flag: list[str], marker: str
) -> None:
    chain.main(["--steps", "3", "--runs", "2", "--repeats", "1", *flag])

    out = capsys.readouterr().out
    assert marker in out
    for measure in ("trioflow chain", "trio floor", "ratio", "MemoryTraceSink", "no-op sink"):
        assert measure in out
