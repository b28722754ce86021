"""Pinned npm packages that tests run under node: installed once, from the lock file."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest


def node_with(packages: Iterable[str], folder: Path, *, needed_for: str) -> str:
    """The path of ``node``, once ``folder``'s lock file has installed ``packages``.

    ``npm ci`` installs exactly what ``package-lock.json`` pins, so a clean
    CI machine checks against the same versions; a machine without node or
    npm fails the test, saying what they are ``needed_for``.
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail(f"node and npm are needed {needed_for}")
    if not all((folder / "node_modules" / name).is_dir() for name in packages):
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=folder, check=True, timeout=600)
    return node
