"""Text that is safe to print on a terminal or to keep in a database: one escaping rule.

Alert ids, titles and evidence come from the alerts topic, where anyone who can
produce may write anything. Printed raw, an ESC sequence can set the terminal's
title or clear the screen, a BEL rings, a right-to-left override makes
``exe.txt`` read as ``txt.exe``. ``printable`` escapes every C0 and C1 control
character, DEL, the Unicode line and paragraph separators, the bidirectional
embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069), and lone
surrogates (which no terminal or UTF-8 database can take) as visible escapes;
everything else, Chinese included, is left as it is.

>>> printable("PF-1\\x1b]0;pwned\\x07\\u202etxt.exe")
'PF-1\\\\x1b]0;pwned\\\\x07\\\\u202etxt.exe'
>>> printable('{"id": "a\\x7f\\u2066"}', json=True)  # escapes that keep a JSON line valid
'{"id": "a\\\\u007f\\\\u2066"}'
>>> printable("协会公示失联 ok")
'协会公示失联 ok'
"""

from __future__ import annotations

import re
from typing import Final

_UNSAFE: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
# In serialised JSON a C0 character is structural whitespace (the encoder escapes them in strings).
_UNSAFE_IN_JSON: Final = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def _escape_json(m: re.Match[str]) -> str:
    return f"\\u{ord(m.group()):04x}"


def printable(text: str, *, json: bool = False) -> str:
    """``text`` with every unsafe character (see the module doc) written as an escape.

    ``json``: ``text`` is serialised JSON (whose encoder escaped the C0 controls in its
    strings, so its newlines and tabs are layout and stay); the rest become ``\\uXXXX``,
    so the text stays valid JSON that decodes to the same values.
    """
    return _UNSAFE_IN_JSON.sub(_escape_json, text) if json else _UNSAFE.sub(_escape, text)


def bounded(text: str, limit: int) -> str:
    """``printable(text)`` cut to at most ``limit`` characters, marked when cut.

    >>> bounded("abcdef\\x00", 5)
    'abcd…'
    """
    s = printable(text)
    return s if len(s) <= limit else s[: limit - 1] + "…"
