"""How config inputs become the arguments of the model's method, by Triton's rules.

Triton's pytorch backend, for a method ``forward(self, a, b)``:
1. a single ``Dict[str, Tensor]`` argument: config input names are its keys;
2. else, when every config input name is an argument name: by name (FORWARD_ARGUMENT);
3. else, when every name is ``<name>__<index>``: the index is the position (NAMED_INDEX);
4. else: config order, with a warning (STRICT_CONFIG_ORDERING).
Triton wants exactly one config input per argument; here arguments with a default value
may be left out (the model's default is used).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from triton_core.dtypes import DataType
from triton_core.errors import ErrorCode, TritonError

from .outputs import NAMED_INDEX

log = logging.getLogger("triton_backend_torch")


class ArgKind(Enum):
    TENSOR = "Tensor"
    STRINGS = "List[str]"
    DICT = "Dict[str, Tensor]"
    OTHER = "other"


@dataclass(frozen=True)
class Argument:
    name: str
    kind: ArgKind
    type_text: str
    required: bool = True


class Convention(Enum):
    DICTIONARY = "DICTIONARY"
    FORWARD_ARGUMENT = "FORWARD_ARGUMENT"
    NAMED_INDEX = "NAMED_INDEX"
    STRICT_CONFIG_ORDERING = "STRICT_CONFIG_ORDERING"


@dataclass(frozen=True)
class InputBinding:
    convention: Convention
    position: dict[str, int]
    """Config input name -> argument position (not used for DICTIONARY)."""
    arg_names: tuple[str, ...]
    positional: bool
    """True: every position 0..n-1 is fed, so call positionally; else by keyword."""

    def call(self, fn: Callable, feeds: dict[str, object]) -> object:
        if self.convention is Convention.DICTIONARY:
            return fn(feeds)
        if self.positional and len(feeds) == len(self.position):  # else: an optional input is absent
            args: list[object] = [None] * len(feeds)
            for name, value in feeds.items():
                args[self.position[name]] = value
            return fn(*args)
        return fn(**{self.arg_names[self.position[n]]: v for n, v in feeds.items()})


def _fail(code: ErrorCode, msg: str) -> TritonError:
    return TritonError(code, msg)


def bind_inputs(names: Sequence[str], datatypes: dict[str, DataType], args: Sequence[Argument],
                model: str) -> InputBinding:
    """The binding of config inputs ``names`` to ``args``; load errors in Triton's words."""
    names = list(names)
    if len(args) == 1 and args[0].kind is ArgKind.DICT:
        for n in names:
            if datatypes[n] is DataType.BYTES:
                raise _fail(ErrorCode.INVALID_ARG,
                            f"configuration expects datatype TYPE_STRING for input '{n}', model "
                            f"'{model}' takes a Dict(str, Tensor): strings cannot be dict values")
        return InputBinding(Convention.DICTIONARY, {}, (args[0].name,), False)
    if sum(a.kind is ArgKind.DICT for a in args) > 1:
        raise _fail(ErrorCode.INTERNAL, "Multiple inputs of kind DictType were detected. Only a single "
                    "input of type Dict(str, Tensor) is supported.")
    for a in args:  # an argument of another type may keep its default
        if a.kind not in (ArgKind.TENSOR, ArgKind.STRINGS) and a.required:
            raise _fail(ErrorCode.INTERNAL,
                        f"An input of type '{a.type_text}' was detected in the model. Only a single "
                        "input of type Dict(str, Tensor) or input(s) of type Tensor are supported.")
    required = sum(a.required for a in args)
    if not required <= len(names) <= len(args) or (required == len(args) and len(names) != len(args)):
        expected = str(len(args)) if required == len(args) else f"{required} to {len(args)}"
        raise _fail(ErrorCode.INVALID_ARG,
                    f"unable to load model '{model}', configuration expects {len(names)} inputs, "
                    f"model provides {expected}")

    arg_names = tuple(a.name for a in args)
    if all(n in arg_names for n in names):
        convention = Convention.FORWARD_ARGUMENT
        position = {n: arg_names.index(n) for n in names}
    elif all(NAMED_INDEX.match(n) for n in names):
        convention = Convention.NAMED_INDEX
        position = {n: int(NAMED_INDEX.match(n).group(1)) for n in names}  # type: ignore[union-attr]
        seen: dict[int, str] = {}
        for n, i in position.items():
            if i >= len(args):
                raise _fail(ErrorCode.INVALID_ARG,
                            f"input '{n}' of model '{model}' names argument {i}, but the model's "
                            f"method takes {len(args)} argument(s)")
            if i in seen:
                raise _fail(ErrorCode.INVALID_ARG,
                            f"inputs '{seen[i]}' and '{n}' of model '{model}' both name argument {i}")
            seen[i] = n
    else:
        convention = Convention.STRICT_CONFIG_ORDERING
        position = {n: i for i, n in enumerate(names)}
        odd = next(n for n in names if n not in arg_names and not NAMED_INDEX.match(n))
        log.warning(
            "model '%s': input '%s' or previous input(s) are neither an input argument to the "
            "model nor do they follow the <name>__<index> naming convention. Falling back to "
            "enforcing strict ordering from model configuration.", model, odd)
    missing = [a.name for i, a in enumerate(args) if a.required and i not in position.values()]
    if missing:
        raise _fail(ErrorCode.INVALID_ARG,
                    f"unable to load model '{model}': argument(s) {', '.join(missing)} of the model's "
                    "method have no default and no config input")
    for n, i in position.items():
        want = datatypes[n]
        a = args[i]
        if a.kind not in (ArgKind.TENSOR, ArgKind.STRINGS):
            raise _fail(ErrorCode.INTERNAL,
                        f"An input of type '{a.type_text}' was detected in the model. Only a single "
                        "input of type Dict(str, Tensor) or input(s) of type Tensor are supported.")
        if a.kind is ArgKind.STRINGS and want is not DataType.BYTES:
            raise _fail(ErrorCode.INVALID_ARG,
                        f"configuration expects datatype {want.config_name} for input '{n}', "
                        f"model '{model}' provides TYPE_STRING (List[str] argument '{a.name}')")
        if a.kind is ArgKind.TENSOR and want is DataType.BYTES:
            raise _fail(ErrorCode.INVALID_ARG,
                        f"configuration expects datatype TYPE_STRING for input '{n}', model "
                        f"'{model}' provides a Tensor (argument '{a.name}'); strings are passed "
                        "as List[str]")
    positional = sorted(position.values()) == list(range(len(position)))
    return InputBinding(convention, position, arg_names, positional)
