"""What to change when config.pbtxt does not parse: protobuf's error, then a hint.

protobuf names the token where parsing failed, which is often a line after the mistake (a
missing '}' is noticed at the next '{'), and it lists neither the field names nor the enum
values that exist. These hints add the likely line and the closest valid names.
"""

from __future__ import annotations

import difflib
import re

from google.protobuf.descriptor import Descriptor, EnumDescriptor

from ..protos import model_config_pb2

_POOL = model_config_pb2.DESCRIPTOR.pool
_NO_FIELD = re.compile(r'Message type "([\w.]+)" has no field named "(\w+)"')
_NO_ENUM = re.compile(r'Enum type "([\w.]+)" has no value named (\w+)')
# tokens protobuf stops at when a bracket is missing or extra
_BRACKET_SYMPTOM = re.compile(r'Expected identifier or number, got [{}\[\]]|Expected "[,}\]]"')
_CLOSING = {"{": "}", "[": "]", "<": ">"}


def _message(full_name: str) -> Descriptor | None:
    try:
        return _POOL.FindMessageTypeByName(full_name)
    except KeyError:
        return None


def _enum(full_name: str) -> EnumDescriptor | None:
    try:
        return _POOL.FindEnumTypeByName(full_name)
    except KeyError:
        return None


def _did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    if not close:
        close = [c for c in choices if c.lower() == name.lower() or name.upper() in c]
    return f"did you mean {close[0]}? " if close else ""


def _open_brackets(text: str, line: int, column: int) -> list[tuple[str, int]]:
    """The brackets still open just before (line, column), 1-based: (bracket, its line).
    A closing bracket with nothing open is recorded as (bracket, line) too."""
    stack: list[tuple[str, int]] = []
    quote = ""
    for n, row in enumerate(text.splitlines(), start=1):
        if n > line:
            break
        limit = column - 1 if n == line else len(row)
        i = 0
        while i < limit:
            ch = row[i]
            if quote:
                if ch == "\\":
                    i += 1
                elif ch == quote:
                    quote = ""
            elif ch in "\"'":
                quote = ch
            elif ch == "#":
                break
            elif ch in _CLOSING:
                stack.append((ch, n))
            elif ch in _CLOSING.values():
                if stack and _CLOSING.get(stack[-1][0]) == ch:
                    stack.pop()
                else:
                    return [(ch, n)]
            i += 1
        quote = ""  # strings do not span lines in the text format
    return stack


def _last_content_line(text: str, before: int) -> int:
    rows = text.splitlines()
    for n in range(min(before, len(rows) + 1) - 1, 0, -1):
        content = rows[n - 1].split("#", 1)[0].strip()
        if content:
            return n
    return before


def _closes_nothing(bracket: str, line: int) -> str:
    return f"the '{bracket}' on line {line} closes nothing: remove it or check the brackets above it"


def _bracket_hint(text: str, error: str, line: int, column: int) -> str:
    if not _BRACKET_SYMPTOM.search(error):
        return ""
    rows = text.splitlines()
    after = ([rows[line - 1][column:]] if line <= len(rows) else []) + rows[line:]
    if not "\n".join(r.split("#", 1)[0] for r in after).strip():
        # protobuf reached the end of the file (it points at the last token)
        stack = _open_brackets(text, len(rows) + 1, 1)
        if not stack:
            return ""
        bracket, opened = stack[-1]
        if bracket not in _CLOSING:
            return _closes_nothing(bracket, opened)
        return f"the '{bracket}' opened on line {opened} is never closed: add a '{_CLOSING[bracket]}'"
    stack = _open_brackets(text, line, column)
    got = re.search(r"got ([}\]])", error)
    if not stack and got:
        return _closes_nothing(got.group(1), line)
    if not stack:
        return ""
    bracket, opened = stack[-1]
    if bracket not in _CLOSING:
        return _closes_nothing(bracket, opened)
    if column <= 1 or not rows[line - 1][: column - 1].strip():
        where = _last_content_line(text, line)  # the error is at the start of a line
    else:
        where = line
    return (f"the '{bracket}' opened on line {opened} is not closed: a '{_CLOSING[bracket]}' is "
            f"probably missing at the end of line {where}")


def parse_error_hint(text: str, error: str, line: int = 0, column: int = 0) -> str:
    """A hint for protobuf's text-format ``error`` at (line, column) in ``text``, or ''."""
    m = _NO_FIELD.search(error)
    if m:
        desc = _message(m.group(1))
        if desc is not None:
            fields = sorted(desc.fields_by_name)
            suggestion = _did_you_mean(m.group(2), fields)
            return suggestion.rstrip() or f"the fields of {desc.name} are: {', '.join(fields)}"
    m = _NO_ENUM.search(error)
    if m:
        enum = _enum(m.group(1))
        if enum is not None:
            values = [v.name for v in enum.values]
            return f"{_did_you_mean(m.group(2), values)}valid values: {', '.join(values)}"
    if line > 0:
        return _bracket_hint(text, error, line, column)
    return ""
