"""Loading a user's pipeline from ``FILE.py:NAME`` for the command line.

Importing a file runs it, like ``python FILE``. ``trioflow run`` imports
the file it is given and the journal keeps where it was and the sha256 of
its bytes; ``resume`` and ``replay`` import that file again only while its
bytes still have that hash (:func:`load_recorded`). A journal pointing at
another file, or a file edited since, is refused: the user names the
pipeline explicitly instead (``--pipeline FILE:NAME``). The bytes that were
hashed are the bytes that run (read once, compiled from memory), so a file
swapped between the check and the import is never run.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType

import attrs

from .._dsl._pipeline import Pipeline, as_pipeline
from .._dsl._step import Step
from .._errors import TrioflowError


class TargetError(TrioflowError):
    """The ``FILE.py:NAME`` target is malformed, missing, or not a pipeline."""


class UserImportError(TrioflowError):
    """The user's file raised while being imported; the message gives file and line."""


class TargetChanged(TargetError):
    """A run's pipeline file is not the one it started with: it is not imported."""


@attrs.frozen
class LoadedPipeline:
    """A pipeline loaded from a file: where it came from (absolute) and the file's sha256."""

    pipeline: Pipeline
    target: str
    sha256: str


def load_target(target: str) -> LoadedPipeline:
    """The pipeline (or step, as a one-step pipeline) that ``target`` names, trusted as given."""
    path, name = _split(target)
    return _load(path, name, _read(path))


def load_recorded(target: str, sha256: str | None, run_id: str) -> Pipeline:
    """The pipeline of run ``run_id`` from its journaled ``target``, if the file is unchanged.

    Raises :class:`TargetChanged`, importing nothing, when the file is gone,
    its bytes no longer hash to ``sha256``, or no hash was journaled (a run
    started before trioflow kept them).
    """
    path, name = _split(target)
    if sha256 is None:
        problem = f"no hash of its pipeline file {path} was journaled (an older trioflow ran it)"
    elif not path.is_file():
        problem = f"its pipeline file {path} no longer exists"
    else:
        source = _read(path)
        if hashlib.sha256(source).hexdigest() == sha256:
            return _load(path, name, source).pipeline
        problem = f"its pipeline file {path} changed since the run started"
    raise TargetChanged(
        f"run {run_id}: {problem}; not imported: pass --pipeline FILE:NAME if you trust the file"
    )


def _split(target: str) -> tuple[Path, str]:
    file_name, separator, name = target.rpartition(":")
    if not separator or not file_name or not name:
        raise TargetError(f"expected FILE.py:NAME, got {target!r}")
    return Path(file_name), name


def _read(path: Path) -> bytes:
    if not path.is_file():
        raise TargetError(f"no such file: {path}")
    try:
        return path.read_bytes()
    except OSError as error:
        raise TargetError(f"cannot read {path}: {error.strerror}") from error


def _load(path: Path, name: str, source: bytes) -> LoadedPipeline:
    sha256 = hashlib.sha256(source).hexdigest()
    module = _import_file(path, source, sha256)
    try:
        found = getattr(module, name)
    except AttributeError:
        raise TargetError(f"{path} has no name {name!r}") from None
    if not isinstance(found, Pipeline | Step):
        raise TargetError(f"{path}:{name} is a {type(found).__name__}, not a Pipeline or Step")
    return LoadedPipeline(as_pipeline(found), f"{path.resolve()}:{name}", sha256)


def module_name_for(path: Path) -> str:
    """The module name a pipeline file is imported under: the same in every process.

    The journal names the file's classes by module, so a later process
    (``trioflow resume``) that loads the same file can read them back.
    """
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:10]
    stem = "".join(char if char.isalnum() else "_" for char in path.stem)
    return f"trioflow_user_{stem}_{digest}"


#: The attribute of an imported pipeline module holding the sha256 of its source.
_SOURCE_SHA256 = "__trioflow_source_sha256__"


def _import_file(path: Path, source: bytes, sha256: str) -> ModuleType:
    """``source`` (the bytes of ``path``) run as a module; the same module for the same bytes."""
    module_name = module_name_for(path)
    imported = sys.modules.get(module_name)
    if imported is not None and getattr(imported, _SOURCE_SHA256, None) == sha256:
        return imported
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None:
        raise TargetError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    setattr(module, _SOURCE_SHA256, sha256)
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.resolve().parent))
    try:
        exec(compile(source, str(path), "exec", dont_inherit=True), module.__dict__)
    except SyntaxError as error:
        _forget(module_name, imported)
        raise UserImportError(
            f"{error.filename}, line {error.lineno}: SyntaxError: {error.msg}"
        ) from error
    except Exception as error:  # anything the user's module raises is reported with its line
        _forget(module_name, imported)
        raise UserImportError(f"{_where(error, path)}: {type(error).__name__}: {error}") from error
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def _forget(module_name: str, previous: ModuleType | None) -> None:
    """Undo a failed import: the module imported before it (if any) stays importable."""
    if previous is None:
        del sys.modules[module_name]
    else:
        sys.modules[module_name] = previous


def _where(error: BaseException, path: Path) -> str:
    """``FILE, line N`` of the deepest frame in the user's file."""
    resolved = path.resolve()
    line = None
    for frame in traceback.extract_tb(error.__traceback__):
        if Path(frame.filename).resolve() == resolved:
            line = frame.lineno
    return f"{path}, line {line}" if line is not None else str(path)
