"""``trioflow worker`` processes sharing one PostgreSQL journal, in real processes.

* Three workers drive queued runs whose pauses are answered from a separate
  process, and one worker is killed (SIGKILL) in the middle of a step:
  every run completes with exact totals, no step whose record was
  committed runs again, and the step in flight at the kill runs once more,
  in another worker, with the same idempotency key.
* A worker stopped (SIGSTOP) past its lease is taken over by another; when
  it is continued, the journal refuses its writes, it says the run was
  taken over, writes nothing, and goes on until stopped (SIGTERM, exit 0).
* The database restarted (``pg_ctl restart``) while workers drive runs:
  they reconnect, and every run completes, no step committed before the
  restart running again.
"""

from __future__ import annotations

import collections
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trio
from postgres_server import running_server
from trioflow.persistence import PostgresStore
from trioflow.runtime import open_runtime

HERE = Path(__file__).resolve().parent
PIPELINE = f"{HERE / 'queue_pipeline.py'}:pipeline"
ANSWERER = HERE / "queue_answerer.py"
TRIOFLOW = Path(sys.executable).with_name("trioflow")

#: What each completed run holds: its output, and its cost (0.01 + 0.02 + 0.04).
OUTPUT = "published approved=True"
RUN_COST = Decimal("0.07")
STEPS = ("main/0:draft", "main/2:slow", "main/3:publish")


def submit(url: str, count: int) -> list[str]:
    """Queue ``count`` runs from this process (as ``rt.submit`` does for any client)."""
    from postgres.queue_pipeline import pipeline  # the file the workers import by its path

    async def queue() -> list[str]:
        async with open_runtime(store=url) as runtime:
            return [
                await runtime.submit(
                    pipeline, f"topic {n}", target=PIPELINE, target_sha256=_sha256()
                )
                for n in range(count)
            ]

    return trio.run(queue)


def _sha256() -> str:
    return hashlib.sha256((HERE / "queue_pipeline.py").read_bytes()).hexdigest()


class Workers:
    """``trioflow worker`` processes started by a test, each writing to a log file."""

    def __init__(self, url: str, folder: Path, env: dict[str, str]) -> None:
        self.url = url
        self.folder = folder
        self.env = env
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, *options: str) -> subprocess.Popen[bytes]:
        out = self.folder / f"worker{len(self.started)}.out"
        log = out.with_suffix(".log")  # standard error: the runtime's log, apart
        with open(out, "wb") as sink, open(log, "wb") as errors:
            worker = subprocess.Popen(
                [str(TRIOFLOW), "worker", "--db", self.url, *options],
                stdout=sink,
                stderr=errors,
                env=self.env,
            )
        self.started.append((worker, out))
        return worker

    def output(self, worker: subprocess.Popen[bytes]) -> list[str]:
        """The lines the worker said on standard output."""
        [out] = [path for started, path in self.started if started is worker]
        return out.read_text().splitlines()

    def stop(self, worker: subprocess.Popen[bytes]) -> int:
        worker.send_signal(signal.SIGTERM)
        return worker.wait(timeout=60)

    def kill_all(self) -> None:
        for worker, _ in self.started:
            if worker.poll() is None:
                worker.send_signal(signal.SIGCONT)
                worker.kill()
                worker.wait(timeout=60)


@contextmanager
def started_workers(url: str, folder: Path) -> Iterator[Workers]:
    """Workers of the database at ``url``, each killed at the end if still running."""
    env = {key: value for key, value in os.environ.items() if key != "TRIOFLOW_DB"}
    env.update(QUEUE_LOG=str(folder / "executions.log"), QUEUE_SLOW_S="0.5")
    started = Workers(url, folder, env)
    try:
        yield started
    finally:
        started.kill_all()


@pytest.fixture
def workers(postgres_url: str, tmp_path: Path) -> Iterator[Workers]:
    with started_workers(postgres_url, tmp_path) as started:
        yield started


def executions(workers: Workers) -> list[tuple[int, str, str, str]]:
    """``(pid, run, path, idempotency key)`` of every step started, in order."""
    log = Path(workers.env["QUEUE_LOG"])
    if not log.exists():
        return []
    rows = []
    for line in log.read_text().splitlines():
        pid, run_id, path, key = line.split(" ")
        rows.append((int(pid), run_id, path, key))
    return rows


def wait_until(condition: Callable[[], Any], what: str, timeout_s: float = 120) -> Any:
    """Poll ``condition`` until it gives something true; fail saying ``what`` never happened."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"within {timeout_s} s: {what}")


def statuses(url: str) -> collections.Counter[str]:
    with psycopg.connect(url) as connection:
        rows = connection.execute("SELECT status FROM trioflow.runs").fetchall()
    return collections.Counter(status for (status,) in rows)


def committed(url: str) -> set[tuple[str, str]]:
    with psycopg.connect(url) as connection:
        rows = connection.execute("SELECT run_id, path FROM trioflow.steps").fetchall()
    return {(run_id, path) for run_id, path in rows}


def answers(url: str) -> dict[str, list[str]]:
    """Each run's stored pause answers, as the codec's text."""
    found: dict[str, list[str]] = collections.defaultdict(list)
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT run_id, payload::json -> 'fields' ->> 'answer' FROM trioflow.pauses"
            " ORDER BY seq"
        ).fetchall()
    for run_id, answer in rows:
        found[run_id].append(answer)
    return dict(found)


def journal_of(url: str, run_id: str) -> tuple[Any, ...]:
    """Everything stored for the run, as the database holds it."""
    with psycopg.connect(url) as connection:
        return tuple(
            connection.execute(query, (run_id,)).fetchall()
            for query in (
                "SELECT payload, revision, epoch, owner FROM trioflow.runs WHERE run_id = %s",
                "SELECT path, payload FROM trioflow.steps WHERE run_id = %s ORDER BY seq",
                "SELECT key, payload FROM trioflow.ledger WHERE run_id = %s ORDER BY seq",
                "SELECT path, payload FROM trioflow.pauses WHERE run_id = %s ORDER BY seq",
                "SELECT seq FROM trioflow.trace_events WHERE run_id = %s ORDER BY seq",
            )
        )


def test_three_workers_finish_every_run_though_one_is_killed_mid_step(
    workers: Workers, postgres_url: str
) -> None:
    total = 60
    run_ids = submit(postgres_url, total)
    answerer = subprocess.Popen(
        [sys.executable, str(ANSWERER), postgres_url, str(total)],
        stdout=subprocess.PIPE,
        env=workers.env,
    )
    options = ("--concurrency", "4", "--lease", "2", "--poll", "0.2")
    doomed, *survivors = [workers.start(*options) for _ in range(3)]

    def in_slow_step() -> tuple[str, str] | None:
        """A run whose slow step the doomed worker started (and, asleep in it, has not ended)."""
        started = [(run, path) for pid, run, path, _ in executions(workers) if pid == doomed.pid]
        return next((found for found in started if found[1] == "main/2:slow"), None)

    in_flight = wait_until(in_slow_step, "the doomed worker started a slow step")
    doomed.kill()
    assert doomed.wait(timeout=60) == -signal.SIGKILL
    committed_at_kill = committed(postgres_url)
    assert in_flight not in committed_at_kill  # killed in the middle of it
    wait_until(lambda: statuses(postgres_url) == {"completed": total}, "every run completed")
    answered, _ = answerer.communicate(timeout=60)

    assert int(answered) == total  # each run paused once, and was answered once
    ran = collections.Counter((run, path) for _, run, path, _ in executions(workers))
    expected = {(run_id, path): 1 for run_id in run_ids for path in STEPS}
    # Whatever the doomed worker was in the middle of ran again: the step seen above at least.
    again = {done for done, count in ran.items() if count == 2}
    assert in_flight in again
    assert again.isdisjoint(committed_at_kill)  # no committed step ran again
    assert dict(ran) == {**expected, **dict.fromkeys(again, 2)}
    keys = collections.defaultdict(set)
    for pid, run, path, key in executions(workers):
        keys[run, path].add((pid == doomed.pid, key))
    for done in again:  # once in the doomed worker, once elsewhere, with the same key
        [(_, first), (_, second)] = sorted(keys[done])
        assert first == second
    _assert_exact_totals(postgres_url, run_ids)
    for survivor in survivors:
        assert workers.stop(survivor) == 0
        assert workers.output(survivor)[-1] == (
            "worker stopped: any run it was driving is stored interrupted, for another worker"
        )


def _assert_exact_totals(url: str, run_ids: list[str]) -> None:
    async def read() -> None:
        async with PostgresStore.open(url) as store:
            for run_id in run_ids:
                run = await store.get_run(run_id)
                ledger = await store.ledger_of(run_id)
                assert (run.status, run.output) == ("completed", OUTPUT)
                assert Decimal(run.total_cost_usd) == RUN_COST
                assert (run.input_tokens, run.output_tokens) == (30, 15)
                assert sorted(entry.path for entry in ledger) == sorted(STEPS)
                assert sum(Decimal(entry.cost_usd) for entry in ledger) == RUN_COST

    trio.run(read)


def test_a_worker_stopped_past_its_lease_is_fenced_and_writes_nothing(
    workers: Workers, postgres_url: str
) -> None:
    [run_id] = submit(postgres_url, 1)
    answerer = subprocess.Popen(
        [sys.executable, str(ANSWERER), postgres_url, "1"], stdout=subprocess.PIPE, env=workers.env
    )
    workers.env["QUEUE_SLOW_S"] = "3"
    stalled = workers.start("--lease", "1", "--poll", "0.2")

    def stalled_in_slow_step() -> bool:
        return any(
            (pid, path) == (stalled.pid, "main/2:slow") for pid, _, path, _ in executions(workers)
        )

    wait_until(stalled_in_slow_step, "the worker started the slow step")
    stalled.send_signal(signal.SIGSTOP)
    workers.env["QUEUE_SLOW_S"] = "0"
    rescuer = workers.start("--lease", "1", "--poll", "0.2")
    wait_until(lambda: statuses(postgres_url) == {"completed": 1}, "the rescuer completed the run")
    answerer.communicate(timeout=60)
    finished = journal_of(postgres_url, run_id)

    stalled.send_signal(signal.SIGCONT)
    taken_over = f"run {run_id}: run {run_id!r} was claimed by another resume"
    wait_until(
        lambda: any(line.startswith(taken_over) for line in workers.output(stalled)),
        "the stalled worker said the run was taken over",
    )

    assert journal_of(postgres_url, run_id) == finished  # it wrote nothing
    assert [path for pid, _, path, _ in executions(workers) if pid == rescuer.pid] == [
        "main/2:slow",
        "main/3:publish",
    ]
    assert workers.stop(stalled) == 0
    assert workers.stop(rescuer) == 0
    lines = workers.output(stalled)
    assert lines[1:] == [
        f"run {run_id}: paused",  # it drove the run to its pause, then, answered, on
        next(line for line in lines if line.startswith(taken_over)),
        "worker stopped: any run it was driving is stored interrupted, for another worker",
    ]


def test_workers_reconnect_after_the_database_restarts_and_every_run_completes(
    tmp_path: Path,
) -> None:
    total = 20
    with (
        running_server() as server,
        server.database() as url,
        started_workers(url, tmp_path) as workers,
    ):
        run_ids = submit(url, total)
        answerer = subprocess.Popen(
            [sys.executable, str(ANSWERER), url, str(total)],
            stdout=subprocess.PIPE,
            env=workers.env,
        )
        options = ("--concurrency", "4", "--lease", "2", "--poll", "0.2")
        running = [workers.start(*options) for _ in range(2)]

        def slow_steps_started() -> bool:
            started = [path for _, _, path, _ in executions(workers) if path == "main/2:slow"]
            return len(started) >= 4

        def every_worker_up() -> bool:
            return all(
                any("driving up to" in line for line in workers.output(worker))
                for worker in running
            )

        # The restart must find both workers connected: one still starting would meet a
        # database that is down, which is a different case (it exits 7 and says why).
        wait_until(every_worker_up, "both workers started")
        wait_until(slow_steps_started, "four slow steps started")
        before = {done for done in committed(url) if done[1] in STEPS}
        server.restart()
        wait_until(lambda: statuses(url) == {"completed": total}, "every run completed")
        answerer.communicate(timeout=60)

        # Not the answerer's count: an answer it stored just before the restart, whose
        # re-queueing then failed, it counts as not given; a worker took that run over.
        assert answers(url) == {run_id: ["true"] for run_id in run_ids}
        ran = collections.Counter((run, path) for _, run, path, _ in executions(workers))
        assert set(ran) == {(run_id, path) for run_id in run_ids for path in STEPS}
        assert {done: ran[done] for done in before} == dict.fromkeys(before, 1)
        _assert_exact_totals(url, run_ids)
        for worker in running:
            assert workers.stop(worker) == 0, workers.output(worker)
