"""The journal's files: private whatever the umask, and never a file that is not a journal.

A journal holds prompts, outputs and human answers: the folder trioflow
creates for it is 0700 and its files 0600, as ssh and gnupg keep theirs.
And ``--db`` naming the wrong file (a pipeline's source, another program's
database, ``/dev/null``) must leave that file exactly as it was.
"""

from __future__ import annotations

import datetime
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest
from moved_aside import moved_aside
from trioflow.persistence import NotAJournal, RunRecord, SQLiteStore, StoreError

T0 = datetime.datetime(2026, 3, 1, 10, 0, tzinfo=datetime.UTC)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o000], ids=["umask 022", "umask 000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    chosen: int = request.param
    before = os.umask(chosen)
    try:
        yield chosen
    finally:
        os.umask(before)


async def test_a_new_journal_is_private_folders_and_files(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "project" / ".trioflow" / "trioflow.db"
    seen: dict[str, int] = {}

    async with SQLiteStore.open(path) as store:
        await store.create_run(RunRecord("r1", "p", "running", T0, "secret prompt"))
        for name in ("trioflow.db", "trioflow.db-wal", "trioflow.db-shm"):  # while open
            seen[name] = mode(path.parent / name)

    assert seen == {"trioflow.db": 0o600, "trioflow.db-wal": 0o600, "trioflow.db-shm": 0o600}
    assert (mode(path), mode(path.parent), mode(path.parent.parent)) == (0o600, 0o700, 0o700)


async def test_an_existing_folder_is_the_users_and_keeps_its_mode(
    tmp_path: Path, umask: int
) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    os.chmod(folder, 0o755)

    async with SQLiteStore.open(folder / "runs.db"):
        pass

    assert (mode(folder), mode(folder / "runs.db")) == (0o755, 0o600)


async def test_a_journal_made_by_an_older_trioflow_becomes_private(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with SQLiteStore.open(path) as store:
        await store.create_run(RunRecord("r1", "p", "running", T0, "secret prompt"))
    os.chmod(path, 0o644)

    async with SQLiteStore.open(path) as store:
        assert [run.run_id for run in await store.list_runs()] == ["r1"]
        assert (mode(path), mode(tmp_path / "runs.db-wal")) == (0o600, 0o600)


async def test_a_damaged_journal_moved_aside_stays_private(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "runs.db"
    async with SQLiteStore.open(path) as store:
        await store.create_run(RunRecord("r1", "p", "running", T0, "secret prompt"))
    path.write_bytes(b"\0" * 16 + path.read_bytes()[16:])  # the header overwritten
    (tmp_path / "runs.db-wal").write_bytes(b"wal bytes")
    for name in ("runs.db", "runs.db-wal"):
        os.chmod(tmp_path / name, 0o644)  # as an older trioflow left them

    async with SQLiteStore.open(path, recover=True) as store:
        recovered = store.recovered_from

    moved = moved_aside(recovered, path)
    assert {name: mode(tmp_path / name) for name in os.listdir(tmp_path)} == {
        "runs.db": 0o600,
        moved.name: 0o600,
        f"{moved.name}-wal": 0o600,
        f"{moved.name}-shm": 0o600,
    }


# -- --db naming something that is not a journal -----------------------------------------------


def _another_programs_database(path: Path, version: int) -> None:
    other = apsw.Connection(str(path))
    other.execute(
        f"CREATE TABLE notes (text TEXT); INSERT INTO notes VALUES ('mine');"
        f"PRAGMA user_version = {version}"
    )
    other.close()


NOT_JOURNALS = {
    "a pipeline's source": (
        lambda path: path.write_text("from trioflow.runtime import step\n" * 40),
        "it does not start as an SQLite database",
    ),
    "random bytes": (
        lambda path: path.write_bytes(bytes(range(256)) * 40),
        "it does not start as an SQLite database",
    ),
    "a versioned SQLite database of another program": (
        lambda path: _another_programs_database(path, 3),
        "another program's SQLite database: version 3, tables ['notes']",
    ),
}


@pytest.mark.parametrize("recover", [False, True], ids=["open", "recover"])
@pytest.mark.parametrize("kind", list(NOT_JOURNALS))
async def test_a_file_that_is_not_a_journal_is_refused_byte_for_byte(
    tmp_path: Path, kind: str, recover: bool
) -> None:
    path = tmp_path / "mypipeline.py"
    make, what = NOT_JOURNALS[kind]
    make(path)
    os.chmod(path, 0o644)
    before = path.read_bytes()

    with pytest.raises(NotAJournal) as raised:
        async with SQLiteStore.open(path, recover=recover):
            pass

    assert str(raised.value) == (
        f"{path} is not a trioflow journal ({what}); it was left untouched: give --db (store=) "
        "the path of a journal, or of a file that does not exist yet"
    )
    assert (path.read_bytes(), mode(path)) == (before, 0o644)
    assert os.listdir(tmp_path) == ["mypipeline.py"]


async def test_dev_null_is_not_a_journal() -> None:
    before = os.stat("/dev/null")

    with pytest.raises(NotAJournal, match=r"^/dev/null is not a trioflow journal \(not a regular"):
        async with SQLiteStore.open("/dev/null", recover=True):
            pass

    after = os.stat("/dev/null")
    assert (stat.S_ISCHR(after.st_mode), after.st_mode, after.st_rdev) == (
        True,
        before.st_mode,
        before.st_rdev,
    )


async def test_an_unversioned_database_of_another_program_is_refused_untouched(
    tmp_path: Path,
) -> None:
    path = tmp_path / "other.db"
    _another_programs_database(path, 0)
    before = path.read_bytes()

    with pytest.raises(StoreError) as raised:
        async with SQLiteStore.open(path, recover=True):
            pass

    assert str(raised.value) == (
        f"{path} is an SQLite database that trioflow did not create (schema version 0, "
        "tables: notes); it was left untouched"
    )
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["other.db"]
