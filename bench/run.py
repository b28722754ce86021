"""trioflow's benchmark suite: each workload against its plain-trio floor.

    python bench/run.py                      # every workload; writes bench/RESULTS.md
    python bench/run.py chain cancel         # some of them; prints only
    python bench/run.py --markdown out.md    # write the table elsewhere
    python bench/run.py --tiny               # every workload at a tiny size (a smoke run)

Each workload (one module in ``bench/workloads/``) runs trioflow and its
floor in this process, the repetitions alternating, and reports medians,
the ratio, peak memory (tracemalloc, in a separate untimed repetition)
and the value its target judges. See ``bench/harness.py`` for how, and
each workload's docstring for what and why. Nothing asserts on a time; the
correctness checks the workloads make (exact totals, merged contexts,
outputs in order) do fail the run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import harness
import workloads.cancel
import workloads.chain
import workloads.concurrent_runs
import workloads.durable_chain
import workloads.fanout
import workloads.governor_race
import workloads.idle_actors
import workloads.journal_growth
import workloads.long_lived
import workloads.map
import workloads.observe
import workloads.postgres_journal
import workloads.postgres_workers
from harness import Report, Workload

#: Every workload the suite runs, in the plan's order.
WORKLOADS: tuple[Workload[Any], ...] = (
    workloads.chain.WORKLOAD,
    workloads.fanout.WORKLOAD,
    workloads.map.WORKLOAD,
    workloads.concurrent_runs.WORKLOAD,
    workloads.durable_chain.WORKLOAD,
    workloads.governor_race.WORKLOAD,
    workloads.cancel.WORKLOAD,
    workloads.journal_growth.WORKLOAD,
    workloads.idle_actors.WORKLOAD,
    workloads.long_lived.WORKLOAD,
    workloads.observe.WORKLOAD,
    workloads.postgres_journal.WORKLOAD,
    workloads.postgres_workers.WORKLOAD,
)

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
DEFAULT_REPEATS = 5


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    names = [workload.name for workload in WORKLOADS]
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"workloads to run (default: all of {names})"
    )
    parser.add_argument(
        "--repeats", type=_positive, default=DEFAULT_REPEATS, help="timed repetitions"
    )
    parser.add_argument(
        "--markdown",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"write a markdown table (default when running all at full size: {RESULTS})",
    )
    parser.add_argument(
        "--tiny", action="store_true", help="run at tiny sizes: a check that everything works"
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(names))
    if unknown:
        parser.error(f"unknown workload(s) {unknown}; choose from {names}")
    return args


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def selected(names: Sequence[str]) -> list[Workload[Any]]:
    """The workloads named, in plan order; every one when none is named."""
    return [workload for workload in WORKLOADS if not names or workload.name in names]


def table_rows(reports: Sequence[Report]) -> list[tuple[str, ...]]:
    """One row per report, in plan order."""
    ordered = sorted(reports, key=lambda report: report.number)
    return [harness.report_row(report) for report in ordered]


def render_notes(reports: Sequence[Report], *, markdown: bool) -> str:
    """Each workload's size and notes, under its name."""
    blocks = []
    for report in reports:
        if markdown:
            heading = f"**{report.number}. {report.name}** ({report.size})"
            lines = [heading, "", *(f"- {note}" for note in report.notes)]
        else:
            lines = [f"{report.number}. {report.name} ({report.size})"]
            lines += [f"   - {note}" for note in report.notes]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


HOW_TO_READ = """\
- Each workload runs trioflow and its plain-trio floor in one process; the
  timed repetitions alternate (trioflow, floor, trioflow, ...) and the medians
  are shown. The floor is the least the same work costs on trio, in the shape
  the design asks for where it applies (a task per step, messages over memory
  channels), so the ratio is trioflow's own overhead. For 5 the floor is 1's,
  each step's task also committing one apsw INSERT in its own transaction
  (WAL, synchronous=NORMAL) before it sends its result on; the INSERTs alone,
  without the chain, are in its notes. For 8 both columns are trioflow: the
  long chain's journal bytes per step against the short chain's (sizes, not
  times: each runs once).
- Peak MB is tracemalloc's peak over one extra, untimed repetition of each
  variant, run first (tracemalloc slows allocation, so it never runs while time
  is measured; that repetition is also the warm-up).
- Targets (issue 16): ratio at most 1.3x for 1, 1.5x for 2-5, 2x for 7;
  strict overshoot zero for 6; constant journal bytes per step for 8 (the
  1,000-step chain's at most 1.5x the 10-step chain's); at most 3 KB per
  waiting step for 9; for 10, the last window's time per step within 10%
  of the first's (both passes) and memory within 5% of the second window's.
  Workload 10 runs one pass of each variant: its samples are the windows,
  timed in the process's CPU time (other processes' load moves wall time).
  No time is asserted; correctness checks (exact totals, merged contexts,
  outputs in order, a journal row per step) are."""


def describe_load(before: float | None, after: float | None) -> str:
    """The load averages around the run, or why there are none."""
    if before is None or after is None:
        return "Load average: not available on this platform."
    return (
        f"Load average (1 min): {before:.2f} before, {after:.2f} after "
        "(other processes make times noisier; ratios less so)."
    )


def render_markdown(reports: Sequence[Report], *, repeats: int, everything: bool, load: str) -> str:
    """The whole results file: machine, table, notes, how to read it."""
    names = "" if everything else " " + " ".join(report.name for report in reports)
    return "\n".join(
        [
            "# trioflow benchmark results",
            "",
            f"Machine: {harness.describe_machine()}.",
            "",
            f"Code: {harness.describe_code()}.",
            "",
            f"Command: `python bench/run.py{names}`, median of {repeats} timed repetitions.",
            "",
            load,
            "",
            harness.render_markdown_table(table_rows(reports)),
            "",
            "## Notes",
            "",
            render_notes(reports, markdown=True),
            "",
            "## How to read this",
            "",
            HOW_TO_READ,
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> list[Report]:
    args = parse_args(argv)
    workloads = selected(args.names)
    everything = len(workloads) == len(WORKLOADS)
    print(f"{harness.describe_machine()}; median of {args.repeats} repetitions")
    print(harness.describe_code(), flush=True)
    load_before = harness.load_average()
    reports = []
    for workload in workloads:
        print(f"running {workload.number}. {workload.name} ...", file=sys.stderr, flush=True)
        reports.append(workload.run(args.repeats, tiny=args.tiny))
    print()
    print(harness.render_text(table_rows(reports)))
    print()
    print(render_notes(reports, markdown=False))
    load = describe_load(load_before, harness.load_average())
    print(f"\n{load}")
    markdown = args.markdown
    if markdown is None and everything and not args.tiny:
        markdown = RESULTS
    if markdown is not None:
        text = render_markdown(reports, repeats=args.repeats, everything=everything, load=load)
        markdown.write_text(text, encoding="utf-8")
        print(f"\nwrote {markdown}")
    return reports


if __name__ == "__main__":
    main(sys.argv[1:])
