"""--http-header-forward-pattern / --grpc-header-forward-pattern: request headers whose
name matches a regular expression reach the backend as request parameters (strings), as
Triton forwards them.

The match is on the whole header name and ignores case, unless the pattern starts with
``(?-i)`` (Triton's RE2 spelling of a case-sensitive pattern). A parameter the request
already carries keeps its value. Names starting with ``triton_`` stay refused as for
every parameter (the server checks them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..errors import TritonError

_CASE_SENSITIVE = "(?-i)"


class HeaderForward:
    def __init__(self, pattern: str, flag: str) -> None:
        flags = re.IGNORECASE
        text = pattern
        if text.startswith(_CASE_SENSITIVE):
            text, flags = text[len(_CASE_SENSITIVE):], 0
        try:
            self.regex = re.compile(text, flags)
        except re.error as e:
            raise TritonError.invalid_arg(
                f"{flag}: invalid regular expression '{pattern}': {e}") from None

    def parameters(self, headers: Iterable[tuple[str, str]]) -> dict[str, str]:
        """The matching headers as parameters, by header name."""
        match = self.regex.fullmatch
        return {name: value for name, value in headers if match(name)}

    def forward(self, parameters: dict, headers: Iterable[tuple[str, str]]) -> dict:
        """``parameters`` with the matching headers added (a new dict when any match)."""
        found = self.parameters(headers)
        if not found:
            return parameters
        return {**found, **parameters}
