"""The journal failing, seen from the command line: one line, exit code 7, nothing lost.

A lock held by another process, a full disk, a read-only file or folder,
``/dev/null``, a ``user_version`` edited downwards, an undecodable run and
a damaged journal each get one clear line and exit code 7 (never a
traceback), and a run that was going on is left resumable. ``trioflow
doctor`` runs the full check that opening no longer does.
"""

from __future__ import annotations

import datetime
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest
import trio
from cli_in_process import trioflow
from trioflow.actors import TraceEvent, TraceKind
from trioflow.persistence import DEFAULT_BUSY_TIMEOUT_S, RunRecord, SQLiteStore, _sqlite
from trioflow.runtime import open_runtime
from trioflow.runtime._cli._commands import ExitCode

PIPELINES = """
from trioflow.runtime import Pipeline, step


@step
async def grow(text: str) -> str:
    return text * 100_000


@step
async def count(text: str) -> int:
    return len(text)


sized = Pipeline.of(grow, count, name="sized")
"""


@pytest.fixture
def target(tmp_path: Path) -> str:
    path = tmp_path / "pipelines.py"
    path.write_text(PIPELINES)
    return f"{path}:sized"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "journal" / "runs.db"


def stored_runs(db: Path) -> list[RunRecord]:
    async def read() -> list[RunRecord]:
        async with SQLiteStore.open(db) as store:
            return [await store.get_run(run.run_id) for run in await store.list_runs()]

    return trio.run(read)


def listed_ids(out: str) -> list[str]:
    """The run ids in the body rows of ``runs list``'s table."""
    return [line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│")]


def last_line(text: str) -> str:
    return text.splitlines()[-1]


@pytest.fixture
def completed_run(target: str, db: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """A journal at ``db`` holding one completed run; its id."""
    assert trioflow("run", target, "--input", "ab", "--db", db, "--quiet") == ExitCode.OK
    capsys.readouterr()
    [run] = stored_runs(db)
    return run.run_id


# -- a lock held by another process: --busy-timeout -------------------------------------------

HOLDER = """
import sys, apsw
connection = apsw.Connection(sys.argv[1])
connection.execute("BEGIN IMMEDIATE")
print("holding", flush=True)
sys.stdin.readline()
connection.execute("ROLLBACK")
"""


@pytest.fixture
def lock_holder(db: Path, completed_run: str) -> Iterator[None]:
    """Another process holding the journal's write lock until the test ends."""
    command = [sys.executable, "-c", HOLDER, str(db)]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as holder:
        assert holder.stdout.readline() == "holding\n"  # type: ignore[union-attr]  # PIPE
        yield
        holder.stdin.write("done\n")
        holder.stdin.flush()
        assert holder.wait(timeout=30) == 0


@pytest.mark.usefixtures("lock_holder")
def test_a_lock_held_past_the_busy_timeout_is_one_line_and_exit_7(
    target: str, db: Path, completed_run: str, capsys: pytest.CaptureFixture[str]
) -> None:
    command = ("run", target, "--input", "ab", "--db", db, "--quiet", "--busy-timeout", "0.2")

    assert trioflow(*command) == ExitCode.STORE_ERROR == 7

    assert capsys.readouterr().err == (
        f"error: the journal {db} is locked by another process: waited 0.2 s for its write "
        "lock; try again, or wait longer with --busy-timeout SECONDS (busy_timeout_s=)\n"
    )
    assert [run.run_id for run in stored_runs(db)] == [completed_run]


def test_the_busy_timeout_is_generous_by_default_and_settable(db: Path) -> None:
    async def timeouts() -> tuple[float, float]:
        async with open_runtime(store=db) as default:
            assert isinstance(default.store, SQLiteStore)
            first = default.store.busy_timeout_s
        async with open_runtime(store=db, busy_timeout_s=2.5) as chosen:
            assert isinstance(chosen.store, SQLiteStore)
            return first, chosen.store.busy_timeout_s

    assert trio.run(timeouts) == (DEFAULT_BUSY_TIMEOUT_S, 2.5)
    assert DEFAULT_BUSY_TIMEOUT_S == 30.0


@pytest.mark.parametrize("given", ["-1", "soon", "nan"])
def test_a_busy_timeout_that_is_not_seconds_is_refused(
    given: str, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert trioflow("runs", "list", "--db", db, "--busy-timeout", given) == ExitCode.BAD_ARGUMENTS
    assert "--busy-timeout: expected " in capsys.readouterr().err
    assert not db.exists()


# -- a full disk ------------------------------------------------------------------------------


def cap_the_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every journal connection may grow the file by 10 pages at most: SQLITE_FULL beyond."""
    connect = _sqlite._connect

    def capped(path: Path, busy_ms: int) -> apsw.Connection:
        connection = connect(path, busy_ms)
        [(pages,)] = connection.execute("PRAGMA page_count").fetchall()
        connection.execute(f"PRAGMA max_page_count = {pages + 10}")
        return connection

    monkeypatch.setattr(_sqlite, "_connect", capped)


def test_a_full_disk_is_one_line_exit_7_and_the_run_resumable(
    target: str,
    db: Path,
    completed_run: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cap_the_disk(monkeypatch)
    full = (
        f"the journal {db} cannot grow: the disk is full (database or disk is full); "
        "free some space, then resume the run"
    )

    assert trioflow("run", target, "--input", "ab", "--db", db, "--quiet") == 7

    assert last_line(capsys.readouterr().err) == f"error: {full}"
    [first, stopped] = stored_runs(db)
    assert (first.run_id, stopped.status, stopped.error) == (
        completed_run,
        "interrupted",
        f"StoreError: {full}",
    )

    monkeypatch.undo()  # space is freed
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))  # real stdin has bytes
    assert trioflow("resume", stopped.run_id, "--db", db, "--quiet") == ExitCode.OK
    assert "output: 200000" in capsys.readouterr().out
    assert [run.status for run in stored_runs(db)] == ["completed", "completed"]


# -- read-only files and folders --------------------------------------------------------------


def without_root_override(command: list[str]) -> list[str]:
    """``command`` run so that file modes apply, also when the tests run as root.

    Root ignores ``chmod``: its capabilities ``CAP_DAC_OVERRIDE`` and
    ``CAP_DAC_READ_SEARCH`` bypass file modes. ``setpriv`` (util-linux)
    drops them from the bounding set, so the command runs as root without
    them; as any other user, modes apply anyway. (A read-only bind mount
    would need ``CAP_SYS_ADMIN``, and ``chattr +i`` a filesystem that has
    it; neither is there in every container or CI runner.)
    """
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "running as root: setpriv (util-linux) is needed"
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--", *command]


def trioflow_process(*arguments: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "trioflow.runtime", *map(str, arguments)]
    return subprocess.run(
        without_root_override(command), capture_output=True, text=True, check=False, timeout=60
    )


READ_ONLY = (
    "cannot be written (attempt to write a readonly database): trioflow needs write access "
    "to the file and to its folder, on a writable filesystem"
)


def test_a_read_only_journal_file_is_read_but_not_written(
    target: str, db: Path, completed_run: str
) -> None:
    os.chmod(db, 0o400)
    before = db.read_bytes()

    listed = trioflow_process("runs", "list", "--db", db)
    assert (listed.returncode, listed.stderr) == (0, "")
    assert completed_run in listed.stdout

    ran = trioflow_process("run", target, "--input", "ab", "--db", db, "--quiet")
    assert (ran.returncode, ran.stdout, ran.stderr) == (
        7,
        "",
        f"error: the journal {db} {READ_ONLY}\n",
    )
    assert db.read_bytes() == before


@pytest.mark.parametrize("command", ["runs list", "run TARGET --input ab --quiet"])
def test_a_journal_in_a_read_only_folder_is_one_line_and_exit_7(
    target: str, db: Path, completed_run: str, command: str
) -> None:
    arguments = [target if word == "TARGET" else word for word in command.split()]
    os.chmod(db.parent, 0o500)
    try:
        done = trioflow_process(*arguments, "--db", db)
    finally:
        os.chmod(db.parent, 0o700)

    assert (done.returncode, done.stderr) == (7, f"error: the journal {db} {READ_ONLY}\n")
    assert sorted(os.listdir(db.parent)) == ["runs.db"]


def test_a_new_journal_in_a_read_only_folder_is_one_line_and_exit_7(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o500)
    db = folder / "runs.db"

    done = trioflow_process("runs", "list", "--db", db)

    assert (done.returncode, done.stdout) == (7, "")
    assert done.stderr == (
        f"error: cannot open the journal at {db}: [Errno 13] Permission denied: '{db}'\n"
    )
    assert os.listdir(folder) == []


# -- things that are not a usable journal -----------------------------------------------------


def test_dev_null_is_refused_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert trioflow("runs", "list", "--db", "/dev/null") == ExitCode.STORE_ERROR
    assert capsys.readouterr().err == (
        "error: /dev/null is not a trioflow journal (not a regular file); it was left "
        "untouched: give --db (store=) the path of a journal, or of a file that does not "
        "exist yet\n"
    )


def test_a_pipeline_file_given_as_db_is_left_byte_for_byte(
    target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = Path(target.rpartition(":")[0])
    before = source.read_bytes()

    assert trioflow("runs", "list", "--db", source, "--recover") == ExitCode.STORE_ERROR

    assert source.read_bytes() == before
    assert sorted(path.name for path in source.parent.iterdir()) == ["pipelines.py"]
    assert capsys.readouterr().err.startswith(f"error: {source} is not a trioflow journal (")


@pytest.mark.parametrize(
    ("version", "clash"),
    [(2, "table trace_events already exists"), (3, "duplicate column name: revision")],
)
def test_a_user_version_edited_downwards_is_refused_unchanged(
    db: Path, completed_run: str, version: int, clash: str, capsys: pytest.CaptureFixture[str]
) -> None:
    editor = apsw.Connection(str(db))
    editor.execute(f"PRAGMA user_version = {version}")
    editor.close()
    before = db.read_bytes()

    assert trioflow("runs", "list", "--db", db) == ExitCode.STORE_ERROR

    assert capsys.readouterr().err == (
        f"error: {db} says it is at journal schema version {version}, but its tables are not "
        f"that version's ({clash}): was its user_version changed? It was left unchanged\n"
    )
    assert db.read_bytes() == before


# -- damage: trioflow doctor, --recover, and never a split journal ----------------------------


async def many_runs(db: Path, count: int) -> list[RunRecord]:
    started = datetime.datetime(2026, 3, 1, 10, 0, tzinfo=datetime.UTC)
    runs = [
        RunRecord(f"r{n:03}", "sized", "completed", started + datetime.timedelta(minutes=n), n)
        for n in range(count)
    ]
    async with SQLiteStore.open(db) as store:
        for run in runs:
            await store.create_run(run)
    return runs


def integrity_problems(db: Path) -> list[str]:
    connection = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        rows = connection.execute("PRAGMA integrity_check").fetchall()
    finally:
        connection.close()
    lines = [line for (text,) in rows for line in text.splitlines()]
    return [line for line in lines if line not in ("ok", "*** in database main ***")]


def overwrite_root_page(db: Path, name: str) -> None:
    """Garbage over the root page of table or index ``name``, past its cell pointers."""
    connection = apsw.Connection(str(db))
    [(root,)] = connection.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = ?", (name,)
    ).fetchall()
    [(size,)] = connection.execute("PRAGMA page_size").fetchall()
    connection.close()
    data = bytearray(db.read_bytes())
    start = (root - 1) * size + 200
    data[start : root * size] = (bytes(range(256)) * size)[: size - 200]
    db.write_bytes(bytes(data))


def test_doctor_reports_a_sound_journal_exit_0(
    db: Path, completed_run: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert trioflow("doctor", "--db", db) == ExitCode.OK
    assert capsys.readouterr().out == (
        f"{db}: sound (every page checked; 1 run(s), {db.stat().st_size:,} bytes)\n"
    )


def test_doctor_without_a_journal_exits_7(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert trioflow("doctor", "--db", db) == ExitCode.STORE_ERROR
    assert capsys.readouterr().err == f"error: there is no journal at {db}\n"
    assert not db.parent.exists()


def test_doctor_names_the_damage_and_recover_repairs_it(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = trio.run(many_runs, db, 300)
    overwrite_root_page(db, "sqlite_autoindex_runs_1")  # the index of run ids
    found = integrity_problems(db)
    assert len(found) == 100  # SQLite stops at 100

    assert trioflow("doctor", "--db", db) == ExitCode.STORE_ERROR
    assert capsys.readouterr().out.splitlines() == [
        f"{db}: damaged (100 problem(s) found):",
        *(f"  {problem}" for problem in found[:20]),
        "  ... and 80 more",
        "run `trioflow doctor --recover` to repair it, or, if it cannot be repaired, to move it "
        "aside and start a fresh journal (nothing is deleted)",
    ]

    assert trioflow("doctor", "--db", db, "--recover") == ExitCode.OK
    [moved] = db.parent.glob("runs.db.corrupt-*Z")
    assert sorted(path.name for path in db.parent.iterdir()) == sorted(
        ["runs.db", moved.name, f"{moved.name}-shm", f"{moved.name}-wal"]
    )
    captured = capsys.readouterr()
    assert captured.err == (
        f"--recover: the journal {db} was damaged ({'; '.join(found[:3])} (and 97 more)): "
        f"every run was copied into a fresh journal in its place; the damaged file was "
        f"moved to {moved}\n"
    )
    assert captured.out == (
        f"{db}: sound (every page checked; 300 run(s), {db.stat().st_size:,} bytes)\n"
    )
    assert stored_runs(db) == runs


def test_runs_list_lists_the_readable_runs_and_names_the_bad_one(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = trio.run(many_runs, db, 3)
    editor = apsw.Connection(str(db))
    editor.execute("UPDATE runs SET payload = '[' WHERE run_id = 'r001'")
    editor.close()

    assert trioflow("runs", "list", "--db", db) == ExitCode.STORE_ERROR

    captured = capsys.readouterr()
    assert listed_ids(captured.out) == ["r000", "r002"]
    assert captured.err.startswith(
        "error: 1 stored run(s) cannot be read and were left out (run 'r001': stored JSON "
        "cannot be read: "
    )
    assert captured.err.endswith("); the other 2 run(s) are intact\n")
    assert len(captured.err.splitlines()) == 1
    assert [run.run_id for run in runs] == ["r000", "r001", "r002"]


def test_a_process_with_the_journal_open_and_the_next_command_share_one_file(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Damage found by one command moves nothing: no split journal, no silent fresh one."""
    [first] = trio.run(many_runs, db, 1)
    second = RunRecord("r001", "sized", "completed", first.started_at, 1)
    inode = db.stat().st_ino

    async def scenario() -> None:
        async with SQLiteStore.open(db) as still_open:  # another process, mid-run
            events = [TraceEvent(TraceKind.NOTE, "run", n, "x" * 300) for n in range(100)]
            await still_open.save_trace(first.run_id, events)
            checkpoint = apsw.Connection(str(db))  # the trace's pages into the file itself
            checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            checkpoint.close()
            await trio.to_thread.run_sync(overwrite_root_page, db, "trace_events")

            meets_damage = ("trace", first.run_id, "--db", db)
            assert await trio.to_thread.run_sync(lambda: trioflow(*meets_damage)) == 7

            await still_open.create_run(second)  # keeps writing: into the same file

    trio.run(scenario)

    assert "is damaged (" in capsys.readouterr().err
    assert db.stat().st_ino == inode
    assert not list(db.parent.glob("*corrupt*"))
    assert trioflow("runs", "list", "--db", db) == ExitCode.OK  # the runs table is sound
    assert listed_ids(capsys.readouterr().out) == ["r000", "r001"]
