"""Request JSON nested deeper than Python's json module goes (its recursion guard, about a
thousand levels).

Triton parses JSON of any depth and then judges the values (a repository index body whose
'ready' is 250,000 nested arrays gets "Invalid value for 'ready': expected a boolean"). Such
a body is read here with ijson's event parser (yajl: an explicit stack, no recursion). It is
checked well-formed to its end; containers deeper than ``KEPT_DEPTH`` are kept as
``TOO_DEEP`` only, so the handlers refuse them as values of the wrong kind and no deep
structure is ever built.
"""

from __future__ import annotations

from typing import Any

from ...errors import TritonError

KEPT_DEPTH = 200  # past Triton's 100 levels of tensor data, so its own bound answers first


class _TooDeep:
    """A container nested past KEPT_DEPTH (its content was checked, not kept)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<JSON nested too deeply>"


TOO_DEEP = _TooDeep()
_OPEN = {"start_map": dict, "start_array": list}
_CLOSE = ("end_map", "end_array")


def parse_deep_json(body: bytes | memoryview) -> Any:
    """The JSON value of ``body`` (any depth), deep containers as TOO_DEEP; 400 when malformed."""
    import ijson  # here: only bodies too deep for the json module come (0.5 MB otherwise)

    stack: list[Any] = []
    root: list[Any] = []
    key: str | None = None
    skipping = 0  # depth inside a container kept as TOO_DEEP

    def add(value: Any) -> None:
        nonlocal key
        if not stack:
            root.append(value)
        elif isinstance(stack[-1], dict):
            stack[-1][key] = value
        else:
            stack[-1].append(value)

    try:
        for event, value in ijson.basic_parse(bytes(body), use_float=True):
            if skipping:
                skipping += 1 if event in _OPEN else -1 if event in _CLOSE else 0
            elif event in _OPEN:
                if len(stack) >= KEPT_DEPTH:
                    add(TOO_DEEP)
                    skipping = 1
                else:
                    container = _OPEN[event]()
                    add(container)
                    stack.append(container)
            elif event in _CLOSE:
                stack.pop()
            elif event == "map_key":
                key = value
            else:
                add(value)
    except ijson.JSONError as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise TritonError.invalid_arg(f"failed to parse the request JSON buffer: {msg}") from None
    if len(root) != 1:
        raise TritonError.invalid_arg("failed to parse the request JSON buffer: no JSON value")
    return root[0]
