"""An ask is typed by its message: ``ref.ask(message)`` returns the ``R`` of ``Ask[R]``.

What is checked here is what mypy says about client code, so the test runs
mypy (strict, as on the package) over a small client of the kernel and
compares its report line by line; and, at run time, that the marker base
adds no per-message state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
from mypy import api as mypy_api
from trioflow.actors import Ask

ROOT = Path(__file__).resolve().parents[2]

CLIENT = """\
import attrs
from trioflow.actors import ActorRef, Ask, ReplyInbox


@attrs.frozen
class Add(Ask[int]):
    a: int


@attrs.frozen
class Name(Ask[str]):
    pass


async def client(ref: ActorRef[Add | Name], inbox: ReplyInbox[str, int]) -> None:
    reveal_type(await ref.ask(Add(1)))
    reveal_type(await ref.ask(Name()))
    wrong: str = await ref.ask(Add(1))
    await ref.ask(3)
    await ref.ask_into(Add(1), inbox, "sum")
    await ref.ask_into(Name(), inbox, "name")
    reveal_type((await inbox.receive()).unwrap())
"""


def test_mypy_types_each_reply_by_its_message(tmp_path: Path) -> None:
    client = tmp_path / "client.py"
    client.write_text(CLIENT)

    out, err, status = mypy_api.run(
        ["--strict", "--cache-dir", str(ROOT / ".mypy_cache"), "--no-error-summary", str(client)]
    )

    assert err == ""
    assert status == 1
    reported = [line.partition("client.py:")[2] for line in out.splitlines()]
    assert reported == [
        '16: note: Revealed type is "int"',
        '17: note: Revealed type is "str"',
        '18: error: Argument 1 to "ask" of "ActorRef" has incompatible type "Add"; '
        'expected "Ask[str]"  [arg-type]',
        '19: error: Argument 1 to "ask" of "ActorRef" has incompatible type "int"; '
        'expected "Ask[Never]"  [arg-type]',
        '21: error: Cannot infer value of type parameter "R" of "ask_into" of "ActorRef"  [misc]',
        '22: note: Revealed type is "int"',
    ]


def test_the_marker_adds_nothing_to_a_message() -> None:
    @attrs.frozen(slots=True)
    class Asked(Ask[int]):
        value: Any

    assert Ask.__slots__ == ()
    assert Asked.__new__ is object.__new__
    assert not hasattr(Asked(1), "__dict__")
    assert [field.name for field in attrs.fields(Asked)] == ["value"]
