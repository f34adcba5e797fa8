"""What a text field of the contract may hold: printable text, no control, format or bidi characters.

Why: every text a device sends ends up in a log line, an InfluxDB string, a dashboard and an
officer's DingTalk/WeCom push. ESC starts terminal escape sequences in a log viewer, NUL cuts a C
string, a newline forges a log line or a Markdown block, a right-to-left override (U+202E) makes
`桂B12345` display as another plate, and a zero-width or blank value looks like a real one but
matches nothing. So the contract refuses, in every text field: Unicode Cc (C0, DEL, C1), Cf
(format: bidi marks U+200E/F and U+061C, embeddings/overrides U+202A-202E, isolates U+2066-2069,
zero-width U+200B-200D and U+2060, BOM, soft hyphen...), Zl/Zp (U+2028/2029, line breaks to
JavaScript) and lone surrogates; and any value that is empty or only blanks.

The rules are msgspec `Meta(pattern=...)` regexes, checked while decoding (no Python per field).
They use `\\Z`, not `$`: Python's `$` also matches before a trailing newline, so `^x$` accepts
"x\\n". `contract.jsonschema` rewrites them to ECMA-262 for the exported JSON Schema.
"""

from __future__ import annotations

import re

FORBIDDEN = (
    "\\x00-\\x1f\\x7f-\\x9f\\xad\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u0890\\u0891\\u08e2\\u180e"
    "\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u2064\\u2066-\\u206f\\ud800-\\udfff\\ufeff\\ufff9-\\ufffb"
    "\\U000110bd\\U000110cd\\U00013430-\\U0001343f\\U0001bca0-\\U0001bca3\\U0001d173-\\U0001d17a"
    "\\U000e0001\\U000e0020-\\U000e007f"
)
"""A regex character-class body: every Cc, Cf, Zl, Zp and Cs code point (Unicode 15; a unit test
checks it against the running Python's `unicodedata`)."""

BLANK = "\\s\\u115f\\u1160\\u3164\\uffa0\\u2800"
"""Whitespace, plus the Hangul fillers and the Braille blank: letters that render as nothing."""

TEXT = f"^(?![{BLANK}]*\\Z)[^{FORBIDDEN}]*\\Z"
"""Any printable text that is not blank."""

IDENT = "^[A-Za-z0-9_.\\-]+\\Z"
"""Ids that also name MQTT topic segments and InfluxDB tags: ASCII letters, digits, `_.-`."""

MSG_ID = "^[A-Za-z0-9_.:\\-]+\\Z"
"""`device:epoch:seq` (contract.msgid) or an alert's `kind:digest`: ASCII only, no blanks."""

_PLATE_CHAR = "0-9A-Za-z\\u3400-\\u4dbf\\u4e00-\\u9fff\\uff10-\\uff19\\uff21-\\uff3a\\uff41-\\uff5a"
_PLATE_SEP = " \\u00b7\\u2022\\u30fb\\-"
PLATE = f"^[{_PLATE_CHAR}](?:[{_PLATE_CHAR}{_PLATE_SEP}]*[{_PLATE_CHAR}])?\\Z"
"""A licence plate as a plate camera or an operator writes it (GA 36-2018): a province or a
special character (桂, 使, WJ...), letters and digits, the class character at the end (警 学 挂 领
港 澳 应急), ASCII or full-width, optionally split by a middle dot (粤A·D1234), a space or a
hyphen, never starting or ending with one (`桂B12345 ` would be another truck to the
double-weighing check). Unread plates come as text such as 无牌 or UNKNOWN, which also passes."""

PSEUDONYM_CHARS = 16
PSEUDONYM = f"^(?:[0-9a-f]{{{PSEUDONYM_CHARS}}}|anonymous)\\Z"
"""A household as the edge writes it (edge/devices/sorting_station/pseudonym.py): the first 16
lowercase hex chars of HMAC-SHA256(key, card id), or `anonymous` for a drop without a card.
Exactly that shape, so that a
raw card id (`LZ-CZ-000123`, or a Mifare UID: 8, 14 or 20 hex digits, usually upper case) is
refused at the first hop instead of being stored."""

_NAMES = {
    TEXT: "TEXT (printable, not blank: no control, format or bidi characters)",
    IDENT: "IDENT (ASCII letters, digits, _ . -)",
    MSG_ID: "MSG_ID (ASCII letters, digits, _ . - :)",
    PLATE: "PLATE (letters, digits, CJK; · - or space only inside)",
    PSEUDONYM: f"PSEUDONYM ({PSEUDONYM_CHARS} lowercase hex chars of the edge's keyed hash, or anonymous)",
}
_QUOTED = {repr(pattern): name for pattern, name in _NAMES.items()}
_quoted = re.compile("|".join(re.escape(q) for q in _QUOTED))


def explain(reason: str) -> str:
    """msgspec's reason with each of these regexes replaced by its name: `matching regex TEXT (...)`
    says more to a vendor than 300 characters of character class."""
    return _quoted.sub(lambda m: _QUOTED[m.group()], reason)


_forbidden = re.compile(f"[{FORBIDDEN}]")
_blank = re.compile(f"^[{BLANK}]*\\Z")


def printable(text: str, limit: int = 300) -> str:
    """`text` made acceptable as a contract TEXT value: forbidden characters shown as `\\xNN`/`\\uNNNN`
    escapes, at most `limit` chars, `?` if nothing visible is left. For texts an edge composes from
    exceptions (a driver's `last_error`), so a newline in an error does not cost the status."""
    shown = _forbidden.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)[:limit]
    return "?" if _blank.match(shown) else shown
