"""What the command line accepts as input, and how it turns text into a step's input.

Input comes from ``--input TEXT``, ``--input-file PATH`` or standard input.
Before anything is parsed or stored it must be at most ``--max-input-bytes``
bytes (default :data:`MAX_INPUT_BYTES`, 1 MiB) of valid UTF-8: a 50 MB
paste or a file of binary bytes is refused with one line saying which, not
stored in the journal (where it would be copied into every record that
holds it). JSON may nest at most :data:`MAX_INPUT_DEPTH` levels, so a
hostile document cannot exhaust the parser's (or the journal codec's)
recursion.

The text is parsed against the type it is for: the first step's input
(:func:`cli_input_type`), or a pause's answer schema. A ``str`` (or an
untyped input) takes the text as is; any other type is parsed as JSON.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any, BinaryIO

import pydantic

from .._dsl._control import LoopStep, MapStep, ParallelStep, RouterStep
from .._dsl._pipeline import Pipeline, PipelineStep
from .._dsl._step import Step
from .._dsl._type_checks import type_name

#: The default limit of ``--max-input-bytes``: 1 MiB.
MAX_INPUT_BYTES = 1 << 20

#: How deep JSON input may nest (arrays and objects inside each other).
MAX_INPUT_DEPTH = 100


class InputRejected(Exception):
    """The input cannot be used; the message says what was wrong and where."""


def input_from_argument(text: str, *, limit: int) -> str:
    """``--input TEXT`` checked: within ``limit`` bytes and valid UTF-8.

    Python decodes a command-line argument's invalid bytes to lone
    surrogates (``surrogateescape``); they are found here, not later when
    the journal or the terminal tries to encode them.
    """
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as error:
        raise InputRejected(
            f"--input is not valid UTF-8: a lone surrogate {text[error.start]!r} "
            f"at character {error.start}"
        ) from None
    return _decoded(raw, "--input", limit=limit)


def input_from_file(path: str, *, limit: int) -> str:
    """The contents of ``--input-file PATH``, checked like ``--input``."""
    try:
        with open(path, "rb") as file:
            raw = _read_bounded(file, limit)
    except OSError as error:
        raise InputRejected(f"cannot read --input-file: {error}") from error
    return _decoded(raw, f"--input-file {path}", limit=limit)


def input_from_stdin(*, limit: int) -> str:
    """Standard input, checked like ``--input``."""
    return _decoded(_read_bounded(sys.stdin.buffer, limit), "standard input", limit=limit)


def _read_bounded(stream: BinaryIO, limit: int) -> bytes:
    """At most ``limit + 1`` bytes: enough to know the input is too long, never more."""
    return stream.read(limit + 1)


def _decoded(raw: bytes, source: str, *, limit: int) -> str:
    if len(raw) > limit:
        raise InputRejected(
            f"{source} is longer than {limit:,} bytes, the input limit "
            "(--max-input-bytes raises it)"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputRejected(
            f"{source} is not valid UTF-8: byte 0x{raw[error.start]:02x} at offset {error.start}"
        ) from None
    return text.removesuffix("\n")


def cli_input_type(pipeline: Pipeline) -> Any:
    """The type the command line parses the pipeline's input as.

    A step's declared input type, except where a control step's declared
    ``Any`` hides what it needs: a ``map_over`` without ``items_from``
    takes a list of its body's inputs; a loop without an input mapper,
    its body's input; a router, its router's input; a parallel step whose
    branches all take one type, that type.
    """
    step: Step = pipeline.steps[0]
    while isinstance(step, PipelineStep):  # a loop, not recursion: nesting may be deep
        step = step.pipeline.steps[0]
    match step:
        case MapStep(items_from=None):
            return list[_body_input(step.body)]  # type: ignore[misc]
        case LoopStep(initial_input_mapper=None):
            return _body_input(step.body)
        case RouterStep():
            return step.chooser.input_type
        case ParallelStep():
            types = {_body_input(branch) for _, branch in step.branches}
            return types.pop() if len(types) == 1 else Any
    return step.input_type


def _body_input(body: Pipeline) -> Any:
    return body.steps[0].input_type


def is_text(expected: Any) -> bool:
    """Whether input of type ``expected`` is taken as the text itself."""
    return expected is str or expected is Any or expected is object


def parse_input(text: str, expected: Any, *, first: str) -> Any:
    """``text`` as the first step's input: itself for text, else JSON of type ``expected``."""
    if is_text(expected):
        return text
    try:
        json_value(text)
    except json.JSONDecodeError as error:
        problem = f"not JSON ({error.msg} at character {error.pos})"
    else:
        try:
            return pydantic.TypeAdapter(expected).validate_json(text)
        except pydantic.ValidationError as error:
            problem = error.errors()[0]["msg"]
    raise InputRejected(
        f"the input does not fit the first step {first!r}, which expects "
        f"{type_name(expected)}: {problem} (input: {text!r:.80})"
    )


def parse_answer(text: str, schema: dict[str, Any] | None) -> Any:
    """A resume answer for a pause whose answer has JSON ``schema``.

    Text as is when the pause asks for a string; else JSON when it parses
    as JSON, the text itself otherwise (the pause's validation then says
    what does not fit).
    """
    if schema is not None and schema.get("type") == "string":
        return text
    try:
        return json_value(text)
    except json.JSONDecodeError:
        return text


def json_value(text: str) -> Any:
    """``text`` parsed as JSON, refusing nesting deeper than :data:`MAX_INPUT_DEPTH`."""
    depth = _nesting(text)
    if depth > MAX_INPUT_DEPTH:
        raise InputRejected(
            f"the input nests {depth:,} levels deep; JSON input may nest at most "
            f"{MAX_INPUT_DEPTH} levels"
        )
    return json.loads(text)


def _nesting(text: str) -> int:
    """How deep ``[`` and ``{`` nest in ``text``, outside strings (no recursion)."""
    depth = deepest = 0
    for bracket in _BRACKET.findall(_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
