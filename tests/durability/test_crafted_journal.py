"""A tampered journal is data: reading it never imports a module or calls a class it names.

Each test writes a real SQLite journal (a paused run of a pipeline file, as
the command line runs it), closes it, and replaces stored values with
documents naming dangerous classes: ``os:system``, ``subprocess:Popen``,
``builtins:exec``, a module that does not exist, and a module on
``sys.path`` that writes a marker file when imported. Then every command
and every read of the API runs over it. Nothing may be imported (checked
in ``sys.modules``), nothing may run (no marker file), and each command
gives its usual output, the tampered values shown as what they are.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest
import trio
from cli_in_process import trioflow
from trioflow.actors import TraceEvent
from trioflow.persistence import CorruptJournal, SQLiteStore, Unresolved
from trioflow.runtime import Runtime, open_runtime
from trioflow.runtime._cli._commands import ExitCode
from trioflow.runtime._cli._loading import load_target
from trioflow.runtime.lowlevel import stored_types

PIPELINE = """
import enum

import pydantic
from trioflow.runtime import BaseContext, Pipeline, Step, step


class Tone(enum.Enum):
    DRY = "dry"


class Draft(pydantic.BaseModel):
    text: str
    tone: Tone


class Notes(BaseContext):
    seen: int = 0


@step
async def draft(topic: str) -> Draft:
    return Draft(text=f"about {topic}", tone=Tone.DRY)


@step
async def publish(approved: bool) -> str:
    return "published" if approved else "shelved"


review = Pipeline.of(
    draft, Step.human_in_the_loop("approve", "Publish?", bool), publish, name="review"
).with_context(Notes)
"""

#: A module whose import writes a marker file: proof of an import if the file appears.
IMPORT_BOMB = """
from pathlib import Path
Path({marker!r}).write_text("imported")
class Model:
    pass
"""

BOMB_MODULE = "trioflow_crafted_import_bomb"
MISSING_MODULE = "trioflow_crafted_no_such_module"


def crafted_values(marker: Path) -> dict[str, Any]:
    """Stored documents that would run code (or import some) if a read obeyed them."""
    return {
        "enum os:system": {"$enum": "os:system", "value": f"touch {marker}"},
        "attrs subprocess:Popen": {
            "$attrs": "subprocess:Popen",
            "fields": {"args": ["touch", str(marker)]},
        },
        "model builtins:exec": {
            "$model": "builtins:exec",
            "value": {"source": f"open({str(marker)!r}, 'w')"},
        },
        "type builtins:exec": {"$type": "builtins:exec", "value": f"open({str(marker)!r}, 'w')"},
        "missing module": {"$enum": f"{MISSING_MODULE}:Thing", "value": 1},
        "module with import side effects": {"$model": f"{BOMB_MODULE}:Model", "value": {}},
    }


KINDS = list(crafted_values(Path("m")))


def unresolved(document: dict[str, Any]) -> Unresolved:
    """What a read gives for ``document``: its name and data, inert."""
    tag = next(iter(document))
    data = document["fields" if tag == "$attrs" else "value"]
    return Unresolved(document[tag], data, tag[1:])


class Journal:
    """A journal holding one paused run of ``review`` whose stored values were replaced."""

    def __init__(self, tmp_path: Path, kind: str) -> None:
        self.db = tmp_path / "runs.db"
        self.marker = tmp_path / "pwned"
        self.target = tmp_path / "pipelines.py"
        self.target.write_text(PIPELINE)
        self.crafted = crafted_values(self.marker)[kind]
        self.run_id = ""

    def write(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert trioflow("run", f"{self.target}:review", "--input", "trio", "--db", self.db) == 5
        capsys.readouterr()
        connection = apsw.Connection(str(self.db))
        [(self.run_id,)] = connection.execute("SELECT run_id FROM runs").fetchall()
        self._replace(connection, "runs", ("input", "output"))
        self._replace(connection, "steps", ("output",))
        self._replace(connection, "pauses", ("answer",))
        connection.close()

    def _replace(self, connection: apsw.Connection, table: str, fields: tuple[str, ...]) -> None:
        rows = connection.execute(f"SELECT rowid, payload FROM {table}").fetchall()
        for rowid, payload in rows:
            document = json.loads(payload)
            for field in fields:
                document["fields"][field] = self.crafted
            connection.execute(
                f"UPDATE {table} SET payload = ? WHERE rowid = ?", (json.dumps(document), rowid)
            )

    def assert_untouched(self) -> None:
        assert BOMB_MODULE not in sys.modules
        assert MISSING_MODULE not in sys.modules
        assert not self.marker.exists()


@pytest.fixture(params=KINDS)
def journal(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Journal]:
    bombs = tmp_path / "importable"
    bombs.mkdir()
    written = Journal(tmp_path, request.param)
    (bombs / f"{BOMB_MODULE}.py").write_text(IMPORT_BOMB.format(marker=str(written.marker)))
    monkeypatch.syspath_prepend(str(bombs))
    written.write(capsys)
    yield written
    written.assert_untouched()


def test_the_import_bomb_would_go_off_if_imported(tmp_path: Path) -> None:
    """The bomb is real: importing its module by name writes the marker."""
    marker = tmp_path / "pwned"
    (tmp_path / "bomb_check_module.py").write_text(IMPORT_BOMB.format(marker=str(marker)))
    sys.path.insert(0, str(tmp_path))
    try:
        __import__("bomb_check_module")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("bomb_check_module", None)
    assert marker.read_text() == "imported"


# -- the command line ----------------------------------------------------------------------


def test_runs_list(journal: Journal, capsys: pytest.CaptureFixture[str]) -> None:
    assert trioflow("runs", "list", "--db", journal.db) == ExitCode.OK
    out = capsys.readouterr().out
    [row] = [line for line in out.splitlines() if journal.run_id in line]
    assert row.split("│")[1:4] == [f" {journal.run_id} ", " review   ", " paused "]


def test_runs_show(journal: Journal, capsys: pytest.CaptureFixture[str]) -> None:
    assert trioflow("runs", "show", journal.run_id, "--db", journal.db) == ExitCode.OK
    out = capsys.readouterr().out
    assert f"run: {journal.run_id}   pipeline: review" in out
    assert "status: paused   cost: $0.00   tokens: 0" in out
    assert "pause main/1:approve (waiting): Publish?" in out
    assert out.splitlines()[-1] == f"output: {unresolved(journal.crafted)!r}"


def test_trace(journal: Journal, capsys: pytest.CaptureFixture[str]) -> None:
    assert trioflow("trace", journal.run_id, "--db", journal.db) == ExitCode.OK
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()[1:] if line.strip()][:1] == ["main"]
    assert "draft" in out


def test_trace_json(journal: Journal, capsys: pytest.CaptureFixture[str]) -> None:
    assert trioflow("trace", journal.run_id, "--json", "--db", journal.db) == ExitCode.OK
    document = json.loads(capsys.readouterr().out)
    assert (document["run_id"], document["status"]) == (journal.run_id, "paused")


def test_trace_perfetto(
    journal: Journal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "trace.json"
    assert (
        trioflow("trace", journal.run_id, "--perfetto", out_file, "--db", journal.db) == ExitCode.OK
    )
    assert capsys.readouterr().out == (f"wrote {out_file}: open it in https://ui.perfetto.dev\n")
    assert isinstance(json.loads(out_file.read_text())["traceEvents"], list)


def test_resume(journal: Journal, capsys: pytest.CaptureFixture[str]) -> None:
    """The tampered values are passed along as inert data; the run goes on."""
    code = trioflow("resume", journal.run_id, "--input", "true", "--quiet", "--db", journal.db)
    out = capsys.readouterr().out
    assert code == ExitCode.OK
    assert "output: published" in out


def test_replay(journal: Journal, capsys: pytest.CaptureFixture[str]) -> None:
    """The replay rebuilds the real draft: it differs from the tampered record, exit 1."""
    assert trioflow("replay", journal.run_id, "--db", journal.db) == ExitCode.PIPELINE_FAILED
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"replayed run {journal.run_id}: 1 step(s), no model called"
    assert out[1].startswith("first difference: main/0:draft: output ")


# -- the API -------------------------------------------------------------------------------


def read(journal: Journal, work: Any) -> Any:
    async def go() -> Any:
        async with SQLiteStore.open(journal.db) as store, open_runtime(store=store) as runtime:
            return await work(runtime)

    return trio.run(go)


def the_pipeline(journal: Journal) -> Any:
    return load_target(f"{journal.target}:review").pipeline


WALL_CLOCK = "<wall clock>"


def by_actor(trace: list[TraceEvent]) -> dict[str, list[tuple[str, str, str | None, str | None]]]:
    """Each actor's events in order: an actor's own events are ordered, the interleaving of
    different actors is the scheduler's choice."""
    events: dict[str, list[tuple[str, str, str | None, str | None]]] = {}
    for event in trace:
        # The run's "started" note holds the wall-clock start time: not a known value.
        detail = WALL_CLOCK if event.label == "started" else event.detail
        events.setdefault(event.path, []).append(
            (event.kind.value, event.label, event.peer, detail)
        )
    return events


def expected_trace() -> dict[str, list[tuple[str, str, str | None, str | None]]]:
    """The trace of ``review`` paused at its approval, as written before the tampering."""
    return {
        "": [
            ("note", "started", None, WALL_CLOCK),
            ("send", "Execute", "main", None),
            ("send", "Totals", "governor", None),
        ],
        "governor": [
            ("spawn", "", "", None),
            ("receive", "Totals", None, None),
            ("exit", "ok", None, None),
        ],
        "main": [
            ("spawn", "", "", None),
            ("receive", "Execute", None, None),
            ("send", "Execute", "main/0:draft", None),
            ("send", "Execute", "main/1:approve", None),
            ("note", "outcome", None, "paused"),
            ("exit", "ok", None, None),
        ],
        "main/0:draft": [
            ("spawn", "", "main", None),
            ("receive", "Execute", "main", None),
            ("note", "outcome", None, "ok"),
            ("exit", "ok", None, None),
        ],
        "main/1:approve": [
            ("spawn", "", "main", None),
            ("receive", "Execute", "main", None),
            ("note", "pause", None, "Publish?"),
            ("note", "outcome", None, "paused"),
            ("exit", "ok", None, None),
        ],
    }


def test_store_reads_without_types(journal: Journal) -> None:
    async def work(runtime: Runtime) -> Any:
        store = runtime.store
        return (
            await store.get_run(journal.run_id),
            await store.steps_of(journal.run_id),
            await store.pauses_of(journal.run_id),
            await store.ledger_of(journal.run_id),
            await store.trace_of(journal.run_id),
            await store.list_runs(),
        )

    run, steps, pauses, ledger, trace, listed = read(journal, work)
    expected = unresolved(journal.crafted)
    assert (run.input, run.output) == (expected, expected)
    assert [(step.path, step.output) for step in steps] == [("main/0:draft", expected)]
    assert [(pause.path, pause.answer) for pause in pauses] == [("main/1:approve", expected)]
    assert ledger == []
    assert by_actor(trace) == expected_trace()
    assert [(summary.run_id, summary.status) for summary in listed] == [(journal.run_id, "paused")]


def test_store_reads_with_the_pipelines_types(journal: Journal) -> None:
    """The pipeline vouches for its own classes, never for the names the journal holds."""
    pipeline = the_pipeline(journal)

    async def work(runtime: Runtime) -> Any:
        types = stored_types(pipeline)
        store = runtime.store
        return (
            await store.get_run(journal.run_id, types=types),
            await store.steps_of(journal.run_id, types=types),
            await store.pauses_of(journal.run_id, types=types),
        )

    run, [step], [pause] = read(journal, work)
    expected = unresolved(journal.crafted)
    assert (run.output, step.output, pause.answer) == (expected, expected, expected)
    assert type(run.context).__name__ == "Notes"


def test_runtime_trace_and_resume(journal: Journal) -> None:
    pipeline = the_pipeline(journal)

    async def work(runtime: Runtime) -> Any:
        trace = await runtime.trace(journal.run_id)
        result = await runtime.resume(journal.run_id, True, pipeline=pipeline)
        return trace, result

    trace, result = read(journal, work)
    assert (trace.run_id, trace.status) == (journal.run_id, "paused")
    assert (result.status.value, result.output) == ("completed", "published")
    assert result.step("draft").output == unresolved(journal.crafted)


# -- a trusted class named as what it is not -------------------------------------------------


def test_a_trusted_class_named_as_another_kind_is_a_corrupt_journal_never_called(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    written = Journal(tmp_path, "missing module")
    written.crafted = {"$enum": "trioflow.persistence._records:RunRecord", "value": "x"}
    written.write(capsys)

    assert trioflow("runs", "show", written.run_id, "--db", written.db) == ExitCode.STORE_ERROR
    assert capsys.readouterr().err == (
        f"error: run {written.run_id!r} cannot be read: the journal stores "
        "trioflow.persistence._records:RunRecord as enum, which it is not\n"
    )

    async def work(runtime: Runtime) -> Any:
        return await runtime.store.get_run(written.run_id)

    with pytest.raises(CorruptJournal, match=r"stores .*RunRecord as enum, which it is not$"):
        read(written, work)
