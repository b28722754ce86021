"""A throwaway PostgreSQL server for the tests and the benchmarks: started, used, removed.

Why a real server and not a mock: the PostgreSQL store's guarantees are
PostgreSQL's (row locks, ``SKIP LOCKED``, ``LISTEN/NOTIFY``, what a
statement sees under concurrency); only the real thing can show them.

The server is Debian's ``postgresql`` package: its ``initdb`` and
``pg_ctl`` live in ``/usr/lib/postgresql/<version>/bin`` rather than on
``PATH`` (the newest version there is used; one on ``PATH`` wins). It is
created in a new private temporary folder and listens only on a unix
socket in that folder (no TCP port, so parallel test runs on one machine
cannot collide). PostgreSQL refuses to run as root, and CI runs as root:
then the folder is given to the ``postgres`` system user (which the
package creates) and ``initdb``/``pg_ctl`` run as that user through
``runuser``; otherwise they run as the current user. Clients connect as
the database superuser ``postgres`` with ``trust`` authentication, which
only reaches processes that can open the private socket folder.

``bench/`` imports this module too (it puts ``tests/`` on its path): one
way of starting a server, not two.
"""

from __future__ import annotations

import itertools
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import psycopg

#: Where Debian's ``postgresql-<version>`` packages put their programs.
DEBIAN_BINARIES = Path("/usr/lib/postgresql")

#: The system user the server runs as when the tests run as root.
SERVER_USER = "postgres"

#: Settings of a test server: durability off (a test's data dies with it),
#: room for several worker processes' connections.
TEST_SETTINGS: Mapping[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}


class ServerNotFound(RuntimeError):
    """No ``initdb``/``pg_ctl`` on this machine."""


def server_binaries() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``: on ``PATH``, else Debian's newest."""
    found = shutil.which("initdb")
    if found is not None:
        return Path(found).parent
    versions = sorted(
        (int(folder.name), folder / "bin")
        for folder in DEBIAN_BINARIES.glob("*")
        if re.fullmatch(r"\d+", folder.name) and (folder / "bin" / "initdb").exists()
    )
    if not versions:
        raise ServerNotFound(
            "no PostgreSQL server programs (initdb, pg_ctl) on PATH or in "
            f"{DEBIAN_BINARIES}/<version>/bin: install the 'postgresql' package"
        )
    return versions[-1][1]


class PostgresServer:
    """One running server in ``folder``: its data, its log and its socket."""

    def __init__(self, folder: Path, settings: Mapping[str, str]) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.socket = folder / "socket"
        self.log = folder / "server.log"
        self._settings = settings
        self._binaries = server_binaries()
        self._databases = itertools.count(1)

    def url(self, database: str = "postgres") -> str:
        """The connection URL of ``database`` on this server."""
        return f"postgresql://{SERVER_USER}@/{database}?host={self.socket}"

    def _run(self, program: str, *arguments: str) -> None:
        command = [str(self._binaries / program), *arguments]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(
                f"{program} failed (exit {done.returncode}): {done.stderr}{done.stdout}\n{log}"
            )

    def initialise(self) -> None:
        self.socket.mkdir(mode=0o700)
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVER_USER)
            for path in (self.folder, self.socket):
                os.chown(path, user.pw_uid, user.pw_gid)
        self._run(
            "initdb", "-D", str(self.data), "-U", SERVER_USER, "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        options = " ".join(
            [f"-k {self.socket}", "-c listen_addresses=''"]
            + [f"-c {name}={value}" for name, value in self._settings.items()]
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """Stop the server (dropping every connection) and start it again."""
        self.stop()
        self.start()

    @contextmanager
    def database(self) -> Iterator[str]:
        """A new empty database for the block; its URL. Dropped afterwards, connections and all."""
        name = f"test_{os.getpid()}_{next(self._databases)}"
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield self.url(name)
        finally:
            with psycopg.connect(self.url(), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@contextmanager
def running_server(settings: Mapping[str, str] = TEST_SETTINGS) -> Iterator[PostgresServer]:
    """A new server for the block, stopped and deleted with its folder afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="trioflow-pg-"))
    folder.chmod(0o700)
    server = PostgresServer(folder, settings)
    try:
        server.initialise()
        server.start()
        try:
            yield server
        finally:
            server.stop("immediate")
    finally:
        shutil.rmtree(folder)
