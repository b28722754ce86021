"""Stored text made safe to print on a terminal.

Run outputs, errors, pause messages and pipeline names come from models,
users and step code, and the journal keeps them as given. Printed raw, an
escape sequence in them would drive the reader's terminal (clear the
screen, set the window title, forge a hyperlink, hide text), and a lone
surrogate (which no encoding can write) would crash the command. Shown
here, each such character is written as its Python escape (``\\x1b``,
``\\ud800``): visible, inert, and still telling what was stored.
Newlines and tabs are kept: they are layout, not commands.
"""

from __future__ import annotations

import re

from rich.markup import escape

#: C0 controls but tab and newline, DEL and the C1 controls, lone surrogates,
#: and the bidirectional overrides that make text display in another order.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")


def inert(text: str) -> str:
    """``text`` with every unsafe character written as its escape."""
    return _UNSAFE.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(value: object) -> str:
    """``value`` as text for rich markup: inert, and its brackets not read as markup."""
    return escape(inert(str(value)))
