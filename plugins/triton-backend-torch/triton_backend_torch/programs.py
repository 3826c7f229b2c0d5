"""PyTorch 2 programs in ``model.pt2``: torch.export ExportedPrograms (torch.export.save) and
AOTInductor packages (aoti_compile_and_package).

Both carry a call spec: the pytree structure of the arguments ``(args, kwargs)`` and of the
result. Their tensors are named as Triton names .pt2 tensors:
- inputs: ``ARGS[0]``, ``ARGS[0][key]``, ``KWARGS[x]`` (paths), ``INPUT__<i>`` (the i-th
  leaf), or the forward() argument name of an argument that is one tensor;
- outputs: ``RESULT``, ``RESULT[0]``, ``RESULT[key][1]`` (paths), ``OUTPUT__<i>``, a key of a
  top-level dict result (see outputs.py).
An ExportedProgram also records each tensor's dtype and shape (dynamic dims as symbols):
its config is auto-completed and checked from them. An AOTI package records only the
structure: its config names the dtypes, and outputs are checked at run time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.utils._pytree as pytree
from torch.utils._sympy.numbers import int_oo  # torch's own "no upper bound"

from triton_core import batch_io
from triton_core.config import DynamicBatching, ModelConfig, ModelInput, ModelOutput
from triton_core.config.model_config import Reshape
from triton_core.dtypes import DataType
from triton_core.errors import TritonError

from . import dtypes
from .outputs import NAMED_INDEX, RESULT, leaves

log = logging.getLogger("triton_backend_torch")

DEFAULT_MAX_BATCH_SIZE = 4  # Triton's default-max-batch-size


@dataclass(frozen=True)
class Leaf:
    path: str
    name: str
    """The name auto-complete gives it."""
    datatype: DataType | None = None
    dims: tuple[int, ...] | None = None
    """-1 for a dynamic dim; None when unknown (AOTI)."""
    batch_bound: int | None = None
    """The first dim is dynamic: its upper bound (0 = unbounded); None = not dynamic or unknown."""


@dataclass
class ProgramSignature:
    in_spec: pytree.TreeSpec
    out_spec: pytree.TreeSpec | None
    inputs: list[Leaf]
    outputs: list[Leaf]
    typed: bool
    """dtypes and shapes known (ExportedProgram)."""

    # -------------------------------------------------------------- naming
    def input_index(self, names: list[str], model: str) -> dict[str, int]:
        """Config input name -> leaf index, by name, path, <name>__<index> or config order."""
        by_name: dict[str, int] = {}
        for i, leaf in enumerate(self.inputs):
            by_name[leaf.path] = i
            by_name.setdefault(leaf.name, i)
        if len(names) != len(self.inputs):
            raise TritonError.invalid_arg(
                f"unable to load model '{model}', configuration expects {len(names)} inputs, model "
                f"provides {len(self.inputs)}")
        def resolve(n: str) -> int | None:
            if n in by_name:
                return by_name[n]
            m = NAMED_INDEX.match(n)
            return int(m.group(1)) if m else None

        resolved = {n: resolve(n) for n in names}
        if all(i is not None for i in resolved.values()):
            index = {n: i for n, i in resolved.items() if i is not None}
        else:
            log.warning("model '%s': config inputs are neither the program's argument names, paths "
                        "(%s) nor <name>__<index>; taken in model configuration order",
                        model, ", ".join(leaf.path for leaf in self.inputs))
            index = {n: i for i, n in enumerate(names)}
        if sorted(index.values()) != list(range(len(self.inputs))):
            raise TritonError.invalid_arg(
                f"model '{model}': config inputs {names} do not name each of the program's inputs "
                f"({', '.join(leaf.path for leaf in self.inputs)}) once")
        return index

    def call(self, fn, index: dict[str, int], feeds: dict[str, object]) -> object:
        flat: list[object] = [None] * len(self.inputs)
        for name, value in feeds.items():
            flat[index[name]] = value
        args, kwargs = pytree.tree_unflatten(flat, self.in_spec)
        return fn(*args, **kwargs)

    # -------------------------------------------------------------- config
    def autocomplete(self, config: ModelConfig, model: str, default_mbs: int) -> ModelConfig:
        cfg = config.model_copy(deep=True)
        every = self.inputs + self.outputs
        bounds = [leaf.batch_bound for leaf in every]
        batchable = bool(every) and all(b is not None for b in bounds)
        if cfg.max_batch_size == 0 and batchable and not (cfg.input and cfg.output):
            finite = [b for b in bounds if b]
            cfg.max_batch_size = min(finite) if finite else default_mbs
            if cfg.max_batch_size > 1 and cfg.dynamic_batching is None and cfg.sequence_batching is None:
                cfg.dynamic_batching = DynamicBatching()
        skip = 1 if cfg.max_batch_size > 0 else 0
        # A tensor with no dims left (a batch of scalars) gets dims [1] and an empty reshape.
        def shape(leaf: Leaf) -> dict:
            dims = list(leaf.dims[skip:]) if leaf.dims is not None else []
            return {"dims": dims} if dims else {"dims": [1], "reshape": Reshape(shape=[])}

        known = [leaf for leaf in self.inputs if leaf.datatype is not None and leaf.dims is not None]
        if not cfg.input:
            cfg.input = [ModelInput(name=leaf.name, data_type=leaf.datatype.config_name, **shape(leaf))
                         for leaf in known]
        known = [leaf for leaf in self.outputs if leaf.datatype is not None and leaf.dims is not None]
        if not cfg.output:
            cfg.output = [ModelOutput(name=leaf.name, data_type=leaf.datatype.config_name, **shape(leaf))
                          for leaf in known]
        return cfg

    def validate(self, config: ModelConfig, model: str) -> dict[str, int]:
        """Check config inputs against the program (dtypes, ranks, fixed dims); the input index."""
        names = [i.name for i in config.input] + list(batch_io.batch_input_datatypes(config))
        index = self.input_index(names, model)
        if not self.typed:
            return index
        skip = 1 if config.max_batch_size > 0 else 0
        for io in config.input:
            leaf = self.inputs[index[io.name]]
            if io.allow_ragged_batch:  # the program takes the batch's elements as one 1-D tensor
                self._check_ragged(io.name, io.datatype, leaf, model)
                continue
            self._check(io.name, "input", io.datatype, io.dims, io.reshape, leaf, skip, model)
        for name, datatype in batch_io.batch_input_datatypes(config).items():
            self._check_ragged(name, datatype, self.inputs[index[name]], model)
        out_leaves = {leaf.path: leaf for leaf in self.outputs}
        for i, leaf in enumerate(self.outputs):
            out_leaves.setdefault(leaf.name, leaf)
            out_leaves.setdefault(f"OUTPUT__{i}", leaf)
        for io in config.output:
            leaf = out_leaves.get(io.name)
            m = NAMED_INDEX.match(io.name)
            if leaf is None and m and int(m.group(1)) < len(self.outputs):
                leaf = self.outputs[int(m.group(1))]
            if leaf is not None:
                self._check(io.name, "output", io.datatype, io.dims, io.reshape, leaf, skip, model)
        return index

    @staticmethod
    def _check_ragged(name: str, datatype: DataType, leaf: Leaf, model: str) -> None:
        """A ragged input or a batch input: the program takes one 1-D tensor of any length."""
        if leaf.datatype is not None and leaf.datatype is not datatype:
            raise TritonError.invalid_arg(
                f"unable to load model '{model}': configuration expects datatype "
                f"{datatype.config_name} for input '{name}', model provides {leaf.datatype.config_name}")
        if leaf.dims is not None and list(leaf.dims) != [-1]:
            raise TritonError.invalid_arg(
                f"unable to load model '{model}': input '{name}' is ragged or a batch input, so the "
                f"program must take it with shape [-1] (one dynamic dimension), model provides "
                f"{list(leaf.dims)}")

    @staticmethod
    def _check(name, kind, datatype, dims, reshape, leaf: Leaf, skip: int, model: str) -> None:
        if leaf.datatype is not None and leaf.datatype is not datatype:
            raise TritonError.invalid_arg(
                f"unable to load model '{model}': configuration expects datatype "
                f"{datatype.config_name} for {kind} '{name}', model provides {leaf.datatype.config_name}")
        if leaf.dims is None:
            return
        if skip and leaf.batch_bound is None:
            raise TritonError.invalid_arg(
                f"unable to load model '{model}': {kind} '{name}' has a fixed first dimension "
                f"({leaf.dims[0] if leaf.dims else 'a scalar'}) in the program, so max_batch_size must "
                "be 0 (export it with a torch.export.Dim for the batch to batch it)")
        want = list(reshape.shape) if reshape is not None else list(dims)
        have = list(leaf.dims[skip:])
        fits = len(want) == len(have) and all(
            a == b or a == -1 or b == -1 for a, b in zip(want, have, strict=True))
        if not fits and not (not have and want == [1]):
            raise TritonError.invalid_arg(
                f"unable to load model '{model}': configuration expects shape {want} for {kind} "
                f"'{name}' (without the batch dimension), model provides {have}")


def _dims(shape, ranges) -> tuple[tuple[int, ...], int | None]:
    out: list[int] = []
    bound: int | None = None
    for i, d in enumerate(shape):
        if isinstance(d, torch.SymInt):
            out.append(-1)
            if i == 0:
                r = ranges.get(d.node.expr)
                # torch's int_oo (a Dim without max) calls itself finite: test for it by name
                unbounded = r is None or r.upper is int_oo or not r.upper.is_finite
                bound = 0 if unbounded else int(r.upper)
        else:
            out.append(int(d))
    return tuple(out), bound


def _input_paths(in_spec: pytree.TreeSpec) -> list[str]:
    args, kwargs = pytree.tree_unflatten(list(range(in_spec.num_leaves)), in_spec)
    paths = [p for p, _ in leaves(tuple(args), "ARGS")] + [p for p, _ in leaves(dict(kwargs), "KWARGS")]
    return paths


def _input_names(paths: list[str], arg_names: list[str]) -> list[str]:
    names = []
    for i, p in enumerate(paths):
        m = p[len("ARGS["):-1] if p.startswith("ARGS[") and p.count("[") == 1 else None
        if m is not None and m.isdigit() and int(m) < len(arg_names):
            names.append(arg_names[int(m)])
        elif p.startswith("KWARGS[") and p.count("[") == 1:
            names.append(p[len("KWARGS["):-1])
        else:
            names.append(f"INPUT__{i}")
    return names


def _output_names(out_spec: pytree.TreeSpec) -> list[tuple[str, str]]:
    """(path, auto-complete name): a key of a top-level dict, OUTPUT__<i> for a lone tensor or
    an element of a flat tuple / list, the path for anything deeper."""
    result = pytree.tree_unflatten(list(range(out_spec.num_leaves)), out_spec)
    named = []
    for i, (path, _) in enumerate(leaves(result)):
        inner = path[len(RESULT):]
        if inner.count("[") > 1:
            named.append((path, path))
        elif isinstance(result, dict):
            named.append((path, inner[1:-1]))
        else:
            named.append((path, f"OUTPUT__{i}"))
    return named


def exported_signature(ep) -> ProgramSignature:
    ranges = ep.range_constraints
    placeholders = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    in_spec = ep.call_spec.in_spec
    paths = _input_paths(in_spec)
    arg_names = list(ep.module_call_graph[0].signature.forward_arg_names or [])
    names = _input_names(paths, arg_names)
    inputs = []
    for path, name, user in zip(paths, names, ep.graph_signature.user_inputs, strict=True):
        val = placeholders[user].meta.get("val")
        if not isinstance(val, torch.Tensor):
            inputs.append(Leaf(path, name))
            continue
        dims, bound = _dims(val.shape, ranges)
        inputs.append(Leaf(path, name, dtypes.from_torch(val.dtype), dims, bound))
    out_node = next(n for n in ep.graph.nodes if n.op == "output")
    n_user = len(ep.graph_signature.user_outputs)
    out_vals = list(out_node.args[0])[-n_user:] if n_user else []
    outputs = []
    for (path, name), node in zip(_output_names(ep.call_spec.out_spec), out_vals, strict=True):
        val = node.meta.get("val") if hasattr(node, "meta") else None
        if not isinstance(val, torch.Tensor):
            outputs.append(Leaf(path, name))
            continue
        dims, bound = _dims(val.shape, ranges)
        outputs.append(Leaf(path, name, dtypes.from_torch(val.dtype), dims, bound))
    return ProgramSignature(in_spec, ep.call_spec.out_spec, inputs, outputs, typed=True)


def aoti_signature(call_spec: list[str]) -> ProgramSignature:
    in_spec = pytree.treespec_loads(call_spec[0])
    out_spec = pytree.treespec_loads(call_spec[1])
    paths = _input_paths(in_spec)
    inputs = [Leaf(p, n) for p, n in zip(paths, _input_names(paths, []), strict=True)]
    outputs = [Leaf(p, n) for p, n in _output_names(out_spec)]
    return ProgramSignature(in_spec, out_spec, inputs, outputs, typed=False)


def load_exported(path: Path, model: str):
    try:
        return torch.export.load(str(path))
    except Exception as e:  # noqa: BLE001
        raise TritonError.invalid_arg(
            f"unable to load model '{model}': torch.export.load cannot read '{path.name}': "
            f"{type(e).__name__}: {e}") from None


def load_aoti(path: Path, device: torch.device | None, model: str):
    index = device.index if device is not None and device.type == "cuda" else -1
    try:
        return torch._inductor.aoti_load_package(str(path), device_index=index if index is not None else -1)
    except Exception as e:  # noqa: BLE001
        raise TritonError.invalid_arg(
            f"unable to load model '{model}': the AOTInductor package '{path.name}' cannot be loaded "
            f"here: {type(e).__name__}: {e}") from None
