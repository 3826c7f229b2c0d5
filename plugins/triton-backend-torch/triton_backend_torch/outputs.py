"""Which part of a model's result each config output is, by Triton's rules and past them.

Triton's pytorch backend takes a Tensor, a ``List[str]`` or a tuple of those, and names
outputs ``<name>__<index>`` (the tuple position) or else by config order. Here a result may
also be a dict, a list of tensors, or any nesting of tuples, lists and dicts; its leaves
(tensors and string lists) are numbered depth-first, in order, and each has a path:

- ``RESULT`` for a lone tensor, ``RESULT[0]`` for a tuple element, ``RESULT[logits]`` for a
  dict entry, ``RESULT[boxes][1]`` deeper down (the names Triton gives .pt2 outputs);
- a key of a top-level dict, as is (``logits``);
- ``<name>__<index>``: the index-th leaf (for a flat tuple, Triton's meaning);
- otherwise the config position (with a warning at load, as Triton).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import torch

from triton_core.errors import TritonError

log = logging.getLogger("triton_backend_torch")

NAMED_INDEX = re.compile(r"^.+__(\d+)$")
RESULT = "RESULT"


def leaves(result: object, prefix: str = RESULT) -> list[tuple[str, object]]:
    """(path, leaf) of a result in depth-first order; a leaf is a tensor, a list of str, or
    anything else (reported only if a config output selects it)."""
    out: list[tuple[str, object]] = []

    def walk(x: object, path: str) -> None:
        if isinstance(x, torch.Tensor):
            out.append((path, x))
        elif isinstance(x, list) and all(isinstance(s, str) for s in x):
            out.append((path, x))  # List[str] (an empty list counts as one)
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                walk(v, f"{path}[{i}]")
        elif isinstance(x, dict):
            for k, v in x.items():
                walk(v, f"{path}[{k}]")
        else:
            out.append((path, x))

    walk(result, prefix)
    return out


def _index(name: str) -> int | None:
    m = NAMED_INDEX.match(name)
    return int(m.group(1)) if m else None


class OutputSelector:
    """Config output names -> the leaves of a result."""

    def __init__(self, names: Sequence[str], model: str, keyed: bool = False) -> None:
        """``keyed``: the model is known to return a dict (its keys name the outputs)."""
        self.names = list(names)
        self.model = model
        positional = [n for n in self.names if not n.startswith(RESULT)]
        self.by_index = all(_index(n) is not None for n in positional)
        if positional and not self.by_index and not keyed:
            log.warning(
                "model '%s': output '%s' or previous output(s) do not follow the "
                "<name>__<index> naming convention; outputs are taken in model configuration order",
                model, next(n for n in positional if _index(n) is None))
        self.position = {n: (_index(n) if self.by_index else i) for i, n in enumerate(self.names)}

    def select(self, result: object, wanted: Sequence[str]) -> dict[str, object]:
        found = [(RESULT, result)] if isinstance(result, torch.Tensor) else leaves(result)
        by_path = dict(found)
        keyed = result if isinstance(result, dict) else None
        out: dict[str, object] = {}
        for name in wanted:
            if name in by_path:
                value = by_path[name]
            elif keyed is not None and (name in keyed or _index(name) is None):
                if name not in keyed:
                    raise TritonError.invalid_arg(
                        f"model '{self.model}' returned a dict without key '{name}' (keys: "
                        f"{', '.join(map(str, keyed))}); name outputs by key or by path "
                        f"(e.g. '{found[0][0] if found else RESULT}')")
                value = keyed[name]
            else:
                i = self.position[name] if keyed is None else _index(name)
                if i is None or i >= len(found):
                    raise TritonError.invalid_arg(
                        f"The output {name} in the model configuration refers to an output index "
                        f"which doesn't exist. This model has {len(found)} outputs")
                value = found[i][1]
            if not isinstance(value, torch.Tensor) and not (
                    isinstance(value, list) and all(isinstance(s, str) for s in value)):
                raise TritonError.invalid_arg(
                    f"output '{name}' of model '{self.model}' must be of type Tensor or List[str], "
                    f"received {type(value).__name__}")
            out[name] = value
        return out
