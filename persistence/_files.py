"""The journal's files on disk: private permissions, what a path holds, moving a file aside.

Privacy: a journal holds prompts, model outputs and human answers, so it
is kept like ssh and gnupg keep theirs. A folder trioflow creates for it is
made ``0700``, and the database file ``0600`` before SQLite first opens it;
SQLite gives its ``-wal`` and ``-shm`` files the database file's mode, so
they are ``0600`` too. The modes are set with ``chmod`` after creating, so
the umask cannot widen them. A folder that already exists is the user's
choice and is left as it is.

Recognition: ``--db`` may name any file by mistake (a pipeline's source,
another program's database, ``/dev/null``). Only a file that is
recognisably a trioflow journal may ever be changed or moved aside:
SQLite's header (or, where its first 16 bytes are overwritten, the fixed
fields after them) and, in its first page, the text of the schema's
``runs`` and ``steps`` tables, which SQLite keeps there. Anything else is
refused with :class:`NotAJournal` and left byte for byte as it was.
"""

from __future__ import annotations

import datetime
import os
import stat
from pathlib import Path

from ._store import StoreError

PRIVATE_FILE = 0o600
PRIVATE_FOLDER = 0o700
_OWNER_BITS = 0o700

#: The first bytes of every SQLite database file.
SQLITE_HEADER = b"SQLite format 3\x00"

#: Files SQLite keeps next to a database; private like it, moved aside with it.
COMPANIONS = ("-wal", "-shm", "-journal")

#: Text every trioflow journal keeps in its first page (the schema SQLite stores there).
_SIGNATURE = (b"CREATE TABLE runs (", b"CREATE TABLE steps (")

#: The largest SQLite page: the first page is never longer.
_FIRST_PAGE_MAX = 65536


class NotAJournal(StoreError):
    """``--db`` names something that is not a trioflow journal; it was left untouched."""

    def __init__(self, path: Path, what: str) -> None:
        super().__init__(
            f"{path} is not a trioflow journal ({what}); it was left untouched: "
            "give --db (store=) the path of a journal, or of a file that does not exist yet"
        )
        self.path = path


def make_private_folder(folder: Path) -> None:
    """Create ``folder`` and any missing parent ``0700``; leave existing ones as they are."""
    missing: list[Path] = []
    while not folder.exists():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for created in reversed(missing):
        try:
            created.mkdir(mode=PRIVATE_FOLDER)
        except FileExistsError:  # another process made it first: theirs is private too
            continue
        os.chmod(created, PRIVATE_FOLDER)  # exactly 0700, whatever the umask made of it


def make_private(path: Path) -> None:
    """Create the journal file ``0600`` if absent; take group and other access from one we own.

    A file that is not ours (a journal shared by its owner) is left as it
    is, and so are the owner's own bits (a read-only journal stays
    read-only, and is reported as such when written).
    """
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE))
    for file in (path, *(with_suffix(path, suffix) for suffix in COMPANIONS)):
        _make_owned_private(file)


def _make_owned_private(file: Path) -> None:
    try:
        found = file.stat()
    except FileNotFoundError:
        return
    if found.st_uid != os.geteuid():
        return
    mode = stat.S_IMODE(found.st_mode)
    private = PRIVATE_FILE if found.st_size == 0 else mode & _OWNER_BITS
    if mode != private:
        os.chmod(file, private)


def is_new(path: Path) -> bool:
    """Whether ``path`` holds no journal yet (absent, or an empty file with no ``-wal``).

    Raises :class:`NotAJournal` for something that is not a regular file
    (``/dev/null``, a folder, a pipe), which must never become a journal.
    """
    try:
        found = path.stat()
    except FileNotFoundError:
        return True
    if not stat.S_ISREG(found.st_mode):
        raise NotAJournal(path, "not a regular file")
    return found.st_size == 0 and not with_suffix(path, "-wal").exists()


def has_sqlite_header(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(len(SQLITE_HEADER)) == SQLITE_HEADER


def looks_like_journal(path: Path) -> bool:
    """Whether ``path`` is recognisably a trioflow journal, however damaged its content."""
    with path.open("rb") as file:
        first = file.read(_FIRST_PAGE_MAX)
    header_fields = len(first) >= 24 and first[18] in (1, 2) and first[19] in (1, 2)
    sqlite_like = first.startswith(SQLITE_HEADER) or (
        header_fields and first[21:24] == b"\x40\x20\x20"
    )
    return sqlite_like and all(text in first for text in _SIGNATURE)


def with_suffix(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def move_aside(path: Path) -> Path:
    """Move ``path`` and its companion files to a fresh ``NAME.corrupt-<UTC time>``.

    Hard links make each move refuse to overwrite (``os.rename`` would
    replace a file silently); where the filesystem has no hard links, a
    rename to a name checked to be free is used. The moved files stay
    private (``0600``): they hold the same runs.
    """
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    counter = 0
    while True:
        name = f"{path.name}.corrupt-{stamp}" + (f".{counter}" if counter else "")
        target = path.with_name(name)
        counter += 1
        if any(with_suffix(target, s).exists() for s in ("", *COMPANIONS)):
            continue
        try:
            _move(path, target)
        except FileExistsError:  # taken since we looked: try the next name
            continue
        for suffix in COMPANIONS:
            companion = with_suffix(path, suffix)
            if companion.exists():
                _move(companion, with_suffix(target, suffix))
        return target


def _move(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError:  # no hard links on this filesystem
        if target.exists():
            raise FileExistsError(target) from None
        os.rename(source, target)
    else:
        os.unlink(source)
    os.chmod(target, PRIVATE_FILE)
