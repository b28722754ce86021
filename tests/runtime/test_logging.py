"""Log records: run start and end, failures, retries, fallbacks, breaches, pauses, claims."""

from __future__ import annotations

import datetime
import logging
from pathlib import Path
from typing import Any

import attrs
import pytest
from cli_in_process import trioflow
from trioflow.persistence import InMemoryStore
from trioflow.runtime import (
    AgentStep,
    Completion,
    RetryPolicy,
    RunStatus,
    Step,
    Usage,
    UsageLimitExceeded,
    UsageLimits,
    open_runtime,
    step,
)
from trioflow.runtime.agents import StubAgent

Logged = tuple[str, str, str, dict[str, Any]]
FIELDS = ("run_id", "step_path", "status", "epoch", "previous_status", "cost_usd", "error")


def logged(caplog: pytest.LogCaptureFixture, run_id: str) -> list[Logged]:
    """(logger, level, message, structured fields) of trioflow's records; the run id reads RUN."""
    found = []
    for record in caplog.records:
        if not record.name.startswith("trioflow"):
            continue
        fields = {name: getattr(record, name) for name in FIELDS if hasattr(record, name)}
        fields = {name: "RUN" if value == run_id else value for name, value in fields.items()}
        message = record.getMessage().replace(run_id, "RUN")
        found.append((record.name, record.levelname, message, fields))
    return found


@step
async def shout(text: str) -> str:
    return text.upper()


async def test_a_successful_run_logs_its_start_and_end_and_nothing_per_step_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="trioflow")
    async with open_runtime(store=InMemoryStore()) as rt:
        result = await rt.run(shout >> shout >> shout, "x")
    assert logged(caplog, result.run_id) == [
        (
            "trioflow.run",
            "INFO",
            "run RUN started (pipeline pipeline, epoch 1)",
            {"run_id": "RUN", "epoch": 1},
        ),
        (
            "trioflow.run",
            "INFO",
            "run RUN ended completed ($0.00, 0 tokens)",
            {"run_id": "RUN", "status": "completed", "cost_usd": "0", "error": None},
        ),
    ]


async def test_every_step_outcome_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="trioflow")
    async with open_runtime(store=InMemoryStore()) as rt:
        result = await rt.run(shout >> shout, "x")
    steps = [entry for entry in logged(caplog, result.run_id) if entry[0] == "trioflow.step"]
    assert steps == [
        (
            "trioflow.step",
            "DEBUG",
            f"run RUN step {path} ended ok",
            {"run_id": "RUN", "step_path": path},
        )
        for path in ("main/0:shout", "main/1:shout", "main")
    ]


async def test_retries_fallbacks_and_failures_are_logged_with_their_step(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="trioflow")
    primary = AgentStep(
        "primary",
        StubAgent([ValueError("overloaded"), ValueError("overloaded")]),
        retry=RetryPolicy(max_attempts=2),
        fallback=AgentStep(
            "backup", StubAgent([ValueError("down too")]), retry=RetryPolicy(max_attempts=1)
        ),
    )
    async with open_runtime(store=InMemoryStore()) as rt:
        result = await rt.run(primary >> shout, "x")
    assert result.status is RunStatus.FAILED
    error = "step 'main/0:primary/fallback:backup' failed (agent_error): ValueError: down too"
    assert logged(caplog, result.run_id) == [
        (
            "trioflow.run",
            "INFO",
            "run RUN started (pipeline pipeline, epoch 1)",
            {"run_id": "RUN", "epoch": 1},
        ),
        (
            "trioflow.step",
            "INFO",
            "run RUN step main/0:primary retry: attempt 1 agent_error: ValueError: overloaded",
            {"run_id": "RUN", "step_path": "main/0:primary"},
        ),
        (
            "trioflow.step",
            "WARNING",
            "run RUN step main/0:primary fell back to backup",
            {"run_id": "RUN", "step_path": "main/0:primary"},
        ),
        (
            "trioflow.step",
            "WARNING",
            "run RUN step main/0:primary ended failed",
            {"run_id": "RUN", "step_path": "main/0:primary"},
        ),
        (
            "trioflow.step",
            "WARNING",
            "run RUN step main ended failed",
            {"run_id": "RUN", "step_path": "main"},
        ),
        (
            "trioflow.run",
            "WARNING",
            f"run RUN ended failed ($0.00, 0 tokens): {error}",
            {"run_id": "RUN", "status": "failed", "cost_usd": "0", "error": error},
        ),
    ]


async def test_a_breach_is_logged_by_the_governor(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="trioflow")
    costly = AgentStep("costly", StubAgent([Completion("out", Usage("2.00", 10, 5))]))
    async with open_runtime(store=InMemoryStore()) as rt:
        with pytest.raises(UsageLimitExceeded) as raised:
            await rt.run(costly, "x", limits=UsageLimits(total_cost_usd="1.00"))
    run_id = raised.value.result.run_id if raised.value.result else ""
    breach = "Cost limit of $1.00 exceeded"
    assert logged(caplog, run_id)[0] == (
        "trioflow.governor",
        "WARNING",
        f"run RUN step main/0:costly usage limit breached: {breach}",
        {"run_id": "RUN", "step_path": "main/0:costly"},
    )
    assert [entry[2] for entry in logged(caplog, run_id)[1:]] == [
        "run RUN step main/0:costly ended limit",
        "run RUN step main ended limit",
        f"run RUN ended usage_limit ($2.00, 15 tokens): {breach}",
    ]


async def test_pauses_claims_and_takeovers_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="trioflow")
    pipeline = shout >> Step.human_in_the_loop("approve", "Publish?", bool)
    store = InMemoryStore()
    async with open_runtime(store=store) as rt:
        paused = await rt.run(pipeline, "x")
        # Its owner "died" while it ran: stored running, with a lease that has run out.
        stored = await store.get_run(paused.run_id)
        past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
        abandoned = attrs.evolve(stored, status="running", lease_expires_at=past)
        await store.swap_run(stored, abandoned)
        await rt.resume(paused.run_id)  # takes it over, walks to the pause again
        await rt.resume(paused.run_id, True)  # claims the paused run with the answer
    messages = [(entry[0], entry[1], entry[2]) for entry in logged(caplog, paused.run_id)]
    assert messages == [
        ("trioflow.run", "INFO", "run RUN started (pipeline pipeline, epoch 1)"),
        ("trioflow.step", "INFO", "run RUN step main/1:approve waits for human input: Publish?"),
        ("trioflow.run", "INFO", "run RUN ended paused ($0.00, 0 tokens)"),
        (
            "trioflow.lease",
            "WARNING",
            "run RUN taken over at epoch 2: its owner's lease had run out",
        ),
        ("trioflow.run", "INFO", "run RUN resumed (pipeline pipeline, epoch 2)"),
        ("trioflow.step", "INFO", "run RUN step main/1:approve waits for human input: Publish?"),
        ("trioflow.run", "INFO", "run RUN ended paused ($0.00, 0 tokens)"),
        ("trioflow.lease", "INFO", "run RUN (paused) claimed at epoch 3"),
        ("trioflow.run", "INFO", "run RUN resumed (pipeline pipeline, epoch 3)"),
        ("trioflow.run", "INFO", "run RUN ended completed ($0.00, 0 tokens)"),
    ]
    claim = next(record for record in caplog.records if record.name == "trioflow.lease")
    assert (claim.run_id, claim.previous_status, claim.epoch) == (  # type: ignore[attr-defined]
        paused.run_id,
        "running",
        2,
    )


PIPELINE_FILE = """
from trioflow.runtime import step

@step
async def shout(text: str) -> str:
    return text.upper()

pipeline = shout >> shout
"""


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ((), []),
        (
            ("-v",),
            ["INFO trioflow.run: run RUN started", "INFO trioflow.run: run RUN ended completed"],
        ),
        (
            ("-vv",),
            [
                "INFO trioflow.run: run RUN started",
                "DEBUG trioflow.step: run RUN step main/0:shout ended ok",
                "DEBUG trioflow.step: run RUN step main/1:shout ended ok",
                "DEBUG trioflow.step: run RUN step main ended ok",
                "INFO trioflow.run: run RUN ended completed",
            ],
        ),
    ],
)
def test_run_v_and_vv_show_info_and_debug_records(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flags: tuple[str, ...],
    expected: list[str],
) -> None:
    target = tmp_path / "shouting.py"
    target.write_text(PIPELINE_FILE)
    root = logging.getLogger("trioflow")
    level, handlers = root.level, list(root.handlers)
    try:
        code = trioflow("run", f"{target}:pipeline", "--input", "hi", "--quiet", "--json", *flags)
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers
    assert code == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "trioflow." in line]
    run_ids = {word for line in lines for word in line.split() if len(word) == 32}
    shortened = []
    for line in lines:
        for run_id in run_ids:
            line = line.replace(run_id, "RUN")
        shortened.append(line.split(" (")[0])
    assert shortened == expected
