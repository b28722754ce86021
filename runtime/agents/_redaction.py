"""Cutting a secret out of text an endpoint sent back, in every form it may take.

An endpoint that echoes the request's key may send it as it was, or
escaped: JSON string escapes (``\\u0073``, or ``\\/`` for a slash, for any
of its characters), URL percent-encoding (an echoed URL or form body),
HTML character references (an error page), or inside a base64
``Authorization`` value (HTTP Basic credentials, a dumped header). Each
form is replaced by ``[api key]``, whatever mix of escaped and plain
characters it uses. Base64 spreads each byte over two characters, so the
key's first and last byte may leave a character each at the edges of the
encoded run: never more than a byte of it.

A piece of the key (an endpoint that cut its own echo short) is cut out
too: a run of the key's characters, at least :data:`FRAGMENT_CHARS` long,
that is part of the key, begins the key at the end of a word, or ends it
at the start of one.

Why here and first: a message is redacted before anything shortens it, or
a key across the cut would leave most of itself behind.
"""

from __future__ import annotations

import base64
import functools
import re

#: What replaces the secret.
REDACTED = "[api key]"

#: The shortest piece of the key that is cut out on its own.
FRAGMENT_CHARS = 8

#: The most characters one character of the key takes in any escaped form
#: (``\\uD83D\\uDE00``, ``%F0%9F%98%80``).
_LONGEST_FORM = 16


def redacted_prefix(text: str, secret: str | None, chars: int) -> str:
    """The first ``chars`` characters of ``text`` with ``secret`` cut out first ("..." if cut).

    Only the part of ``text`` that can reach those characters is searched,
    so a huge error page costs no more than a short one: a window that,
    once redacted, still reaches past them by the longest form of the
    secret (so no form cut by the window's end can reach the kept part).
    """
    if secret:
        longest = _LONGEST_FORM * len(secret)
        window = chars + longest
        redacted = redact_secret(text[:window], secret)
        while len(redacted) < chars + longest and window < len(text):
            window *= 2  # redaction shortened the window too much: search further
            redacted = redact_secret(text[:window], secret)
        text = redacted + text[window : window + 1]
    return text if len(text) <= chars else text[:chars] + "..."


def redact_secret(text: str, secret: str) -> str:
    """``text`` with ``secret`` cut out, raw, escaped, base64-encoded or in pieces."""
    if not secret:
        return text
    text = _escaped_forms(secret).sub(REDACTED, text)
    for core in _base64_cores(secret):
        text = text.replace(core, REDACTED)
    return _without_fragments(text, secret)


@functools.lru_cache(maxsize=16)
def _escaped_forms(secret: str) -> re.Pattern[str]:
    """Matches ``secret`` with each character plain or in any escaped form."""
    return re.compile("".join(_character_forms(character) for character in secret))


def _character_forms(character: str) -> str:
    code = ord(character)
    forms = [re.escape(character)]
    if code < 0x10000:
        forms.append(r"\\u" + _hex(code, width=4))
    else:  # a JSON escape of an astral character is a surrogate pair
        high, low = divmod(code - 0x10000, 0x400)
        forms.append(r"\\u" + _hex(0xD800 + high, width=4) + r"\\u" + _hex(0xDC00 + low, width=4))
    if character == "/":
        forms.append(r"\\/")
    if character == " ":
        forms.append(r"\+")
    forms.append("".join("%" + _hex(byte, width=2) for byte in character.encode("utf-8")))
    forms.append(f"&#0*{code};")
    forms.append("&#[xX]0*" + _hex(code, width=0) + ";")
    return "(?:" + "|".join(forms) + ")"


def _hex(value: int, *, width: int) -> str:
    """A pattern for ``value`` in hex digits of either case: ``width`` of them (0: as needed)."""
    digits = format(value, f"0{width}x") if width else format(value, "x")
    return "".join(f"[{digit}{digit.upper()}]" if digit.isalpha() else digit for digit in digits)


@functools.lru_cache(maxsize=16)
def _base64_cores(secret: str) -> tuple[str, ...]:
    """The base64 characters that encode only ``secret``'s bytes, at each of the three alignments.

    Standard and URL-safe alphabets; cores of under four characters are too
    short to recognise and are left out.
    """
    raw = secret.encode("utf-8", "surrogatepass")
    cores: list[str] = []
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + raw).decode("ascii")
        first = -(-8 * offset // 6)  # the first character with no bit of the padding
        last = 8 * (offset + len(raw)) // 6  # past the last character with only key bits
        core = encoded[first:last]
        if len(core) >= 4:
            cores.append(core)
            cores.append(core.replace("+", "-").replace("/", "_"))
    return tuple(dict.fromkeys(cores))


def _without_fragments(text: str, secret: str) -> str:
    """``text`` with pieces of ``secret`` (see the module docstring) cut out."""
    if len(secret) < FRAGMENT_CHARS:
        return text
    alphabet = "".join(sorted(set(secret)))
    runs = re.compile(f"[{re.escape(alphabet)}]{{{FRAGMENT_CHARS},}}")
    return runs.sub(lambda run: _cut_pieces(run.group(), secret), text)


def _cut_pieces(run: str, secret: str) -> str:
    if run in secret:
        return REDACTED
    for length in range(min(len(run), len(secret)), FRAGMENT_CHARS - 1, -1):
        if run.endswith(secret[:length]):  # the key begins here and was cut short
            return run[:-length] + REDACTED
    for length in range(min(len(run), len(secret)), FRAGMENT_CHARS - 1, -1):
        if run.startswith(secret[-length:]):  # the key's end, its beginning cut off
            return REDACTED + run[length:]
    return run
