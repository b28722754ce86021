"""Workload 13, worker scaling: queued 5-step runs through 1, 2 and 4 ``trioflow worker`` processes.

Each repetition, on a fresh database of a throwaway server (workload 12's
settings): ``runs`` runs of five no-op steps are submitted (not timed),
then ``workers`` worker processes (``--concurrency`` ``per_worker`` each)
are started and the clock runs from their start until every run is
``completed`` (checked by polling the database every 20 ms). Reported as
runs per second for 1, 2 and 4 workers; the comparison is 4 workers (the
"trioflow" column) against 1 (the "floor" column), so its ratio is the
time 4 workers take over the time 1 takes (1/speed-up); its peak MB are
the largest worker process's peak resident set (the work is in the
workers, which tracemalloc in this process cannot see). The value judged
is the speed-up from 1 to 4 workers: it has no target, it says where the
scaling stops on this machine (2 cores: each worker process is CPU-bound
on its steps' journal writes and its own event loop, and the server needs
CPU too, so beyond 2 processes they share the same cores). A worker's
start (importing trioflow, connecting) is inside the timing and measured
alone in the notes.
"""

from __future__ import annotations

import functools
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import attrs
import harness
import psycopg
import trio
from harness import Comparison, Report, Workload
from trioflow.runtime import open_runtime

from workloads.postgres_journal import SETTINGS, running_server
from workloads.queued_steps import five_steps

PIPELINE_FILE = Path(__file__).resolve().with_name("queued_steps.py")
TRIOFLOW = Path(sys.executable).with_name("trioflow")


@attrs.frozen
class Size:
    runs: int = 1000
    per_worker: int = 50

    def describe(self) -> str:
        return f"{self.runs} runs of 5 steps; 1, 2, 4 workers of --concurrency {self.per_worker}"


def submit(url: str, runs: int) -> None:
    sha = hashlib.sha256(PIPELINE_FILE.read_bytes()).hexdigest()

    async def queue() -> None:
        async with open_runtime(store=url) as runtime:
            for n in range(runs):
                await runtime.submit(
                    five_steps, n, target=f"{PIPELINE_FILE}:five_steps", target_sha256=sha
                )

    trio.run(queue)


def completed(url: str) -> int:
    with psycopg.connect(url) as connection:
        found = connection.execute(
            "SELECT count(*) FROM trioflow.runs WHERE status = 'completed'"
        ).fetchone()
    return 0 if found is None else int(found[0])


def through_workers(size: Size, workers: int, url: str, peaks: dict[int, float]) -> float:
    """Seconds from starting ``workers`` workers until every run is completed.

    ``peaks[workers]`` becomes the largest peak RSS (MB) of a worker so far.
    """
    submit(url, size.runs)
    env = {key: value for key, value in os.environ.items() if key != "TRIOFLOW_DB"}
    command = [str(TRIOFLOW), "worker", "--db", url, "--concurrency", str(size.per_worker)]
    started = time.perf_counter()
    processes = [
        subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env) for _ in range(workers)
    ]
    try:
        while completed(url) < size.runs:
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            _, status, usage = os.wait4(process.pid, 0)  # Popen.wait does not give its usage
            process.returncode = os.waitstatus_to_exitcode(status)  # reaped: Popen knows
            peaks[workers] = max(peaks.get(workers, 0.0), usage.ru_maxrss / 1024)
    return elapsed


def worker_start(url: str) -> float:
    """Seconds from starting one worker until it says it is driving runs."""
    env = {key: value for key, value in os.environ.items() if key != "TRIOFLOW_DB"}
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(TRIOFLOW), "worker", "--db", url], stdout=subprocess.PIPE, env=env
    )
    assert process.stdout is not None  # narrows the type: stdout=PIPE
    process.stdout.readline()
    elapsed = time.perf_counter() - started
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    return elapsed


def measure(size: Size, repeats: int) -> Report:
    with running_server(SETTINGS) as server:
        peaks: dict[int, float] = {}

        def fresh(workers: int) -> float:
            with server.database() as url:
                return through_workers(size, workers, url, peaks) * harness.MS

        one, two, four = harness.alternate(
            [functools.partial(fresh, count) for count in (1, 2, 4)], repeats
        )
        with server.database() as url:
            start_s = worker_start(url)
    comparison = Comparison("ms wall", four, one, peaks[4], peaks[1])
    speed_up = one.median / four.median
    rates = ", ".join(
        f"{count} worker(s) {size.runs / (samples.median / harness.MS):.0f} runs/s"
        for count, samples in ((1, one), (2, two), (4, four))
    )
    return Report(
        13,
        "postgres_workers",
        size.describe(),
        comparison,
        f"{speed_up:.2f}x from 1 to 4 workers",
        "report the scaling",
        True,
        (
            f"{rates}; 1 to 2 workers {one.median / two.median:.2f}x, 1 to 4 {speed_up:.2f}x.",
            f"ms wall, 1 worker {harness.spread(one)}, 2 {harness.spread(two)}, "
            f"4 {harness.spread(four)}; one worker's start alone: {start_s * harness.MS:.0f} ms.",
            "peak MB: the largest worker process's peak resident set (ru_maxrss), with 4 "
            "workers and with 1.",
        ),
    )


WORKLOAD = Workload(
    13, "postgres_workers", measure, default=Size(), tiny=Size(runs=4, per_worker=2)
)
