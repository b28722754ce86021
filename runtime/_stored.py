"""Reading a run's stored values with code whose models have changed since.

The journal stores pydantic models (the context, outputs, answers) by class
name and field values; reading them back validates the values against the
class as the code defines it *now*. When a field was added without a
default, renamed or retyped between a run and its resume, that validation
fails. Without this, the user saw pydantic's traceback of the decoding; with
it, one line names the class and the field and says how to go on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pydantic

from ._errors import ConfigurationError


class StoredModelChanged(ConfigurationError):
    """A value the journal holds no longer fits its pydantic class as the code defines it."""


@contextmanager
def reading_run(run_id: str) -> Iterator[None]:
    """Turn a stored model's failed validation while reading run ``run_id`` into one line."""
    try:
        yield
    except pydantic.ValidationError as error:
        raise StoredModelChanged(_message(run_id, error)) from None


def _message(run_id: str, error: pydantic.ValidationError) -> str:
    problem = error.errors()[0]
    field = ".".join(str(part) for part in problem["loc"]) or "its value"
    model = error.title
    # A new field the stored value lacks can take a default; any other change must be undone.
    default = f" (or give {field!r} a default)" if problem["type"] == "missing" else ""
    return (
        f"run {run_id!r} stored a {model} that no longer fits the class {model} in this code "
        f"(field {field!r}: {problem['msg']}): the class changed since the run was stored; "
        f"to go on with the run, define {model} as it was then{default}"
    )
