"""Loading a user's pipeline from ``FILE.py:NAME`` for the command line."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType

from ._errors import TrioflowError
from ._pipeline import Pipeline, as_pipeline
from ._spec import StepSpec


class TargetError(TrioflowError):
    """The ``FILE.py:NAME`` target is malformed, missing, or not a pipeline."""


class UserImportError(TrioflowError):
    """The user's file raised while being imported; the message gives file and line."""


def load_target(target: str) -> Pipeline:
    """The pipeline (or step, as a one-step pipeline) that ``target`` names."""
    file_name, separator, name = target.rpartition(":")
    if not separator or not file_name or not name:
        raise TargetError(f"expected FILE.py:NAME, got {target!r}")
    path = Path(file_name)
    if not path.is_file():
        raise TargetError(f"no such file: {file_name}")
    module = _import_file(path)
    try:
        found = getattr(module, name)
    except AttributeError:
        raise TargetError(f"{file_name} has no name {name!r}") from None
    if isinstance(found, Pipeline | StepSpec):
        return as_pipeline(found)
    raise TargetError(f"{file_name}:{name} is a {type(found).__name__}, not a Pipeline or Step")


def module_name_for(path: Path) -> str:
    """The module name a pipeline file is imported under: the same in every process.

    The journal names the file's classes by module, so a later process
    (``trioflow resume``) that loads the same file can read them back.
    """
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:10]
    stem = "".join(char if char.isalnum() else "_" for char in path.stem)
    return f"trioflow_user_{stem}_{digest}"


def _import_file(path: Path) -> ModuleType:
    module_name = module_name_for(path)
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise TargetError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        del sys.modules[module_name]
        raise UserImportError(
            f"{error.filename}, line {error.lineno}: SyntaxError: {error.msg}"
        ) from error
    except Exception as error:  # anything the user's module raises is reported with its line
        del sys.modules[module_name]
        raise UserImportError(f"{_where(error, path)}: {type(error).__name__}: {error}") from error
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def _where(error: BaseException, path: Path) -> str:
    """``FILE, line N`` of the deepest frame in the user's file."""
    resolved = path.resolve()
    line = None
    for frame in traceback.extract_tb(error.__traceback__):
        if Path(frame.filename).resolve() == resolved:
            line = frame.lineno
    return f"{path}, line {line}" if line is not None else str(path)
