"""How a kernel model binds its buffers and sizes its grid: checked at load, used per call.

Buffers bind in this order (the kernel's ``[[buffer(N)]]`` indices, from 0, no gaps):
the config's inputs in config order, then its outputs in config order, then scalar
constants. A constant is a kernel parameter past the outputs (``constant uint& n
[[buffer(4)]]``) whose value is the model parameter of the same name: a number or
an expression over the tensors' shapes (``INPUT0.size``), evaluated per call and
stored as the parameter's declared type.

Model parameters read here (all optional):

| key | value | default |
|---|---|---|
| ``kernel`` | the kernel function's name | the file's only kernel |
| ``grid`` | threads: an expression, or a tuple of up to 3 | the element count of the first output |
| ``threadgroup_size`` | threads per threadgroup (expression or tuple) | chosen by Metal |
| ``output_shape.<OUTPUT>`` | the output's full shape (batch dimension included) | config dims; a -1 |
|   | | takes the first input's dimension at that axis |
| ``<constant name>`` | the constant's value | (required for each constant) |
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from triton_core.config import ModelConfig
from triton_core.dtypes import DataType
from triton_core.errors import TritonError

from .expr import Expression, ExpressionError, parse_param
from .msl import Kernel, KernelParam

RESERVED = ("kernel", "grid", "threadgroup_size")
OUTPUT_SHAPE = "output_shape."
MAX_GRID = 2**32 - 1


@dataclass(frozen=True)
class Binding:
    index: int
    role: str
    """"input", "output" or "constant"."""
    name: str
    datatype: DataType
    param: KernelParam


@dataclass
class LaunchPlan:
    kernel: Kernel
    bindings: list[Binding]
    grid: Expression | None
    threadgroup: Expression | None
    output_shapes: dict[str, Expression] = field(default_factory=dict)
    constants: dict[str, Expression] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    output_dims: dict[str, list[int]] = field(default_factory=dict)
    batching: bool = False

    def output_shape(self, name: str, shapes: Mapping[str, Sequence[int]]) -> tuple[int, ...]:
        """The full shape of output ``name`` for inputs of ``shapes``."""
        if name in self.output_shapes:
            shape = self._ints(self.output_shapes[name], shapes, f"output_shape.{name}", minimum=0)
            return shape
        first = shapes[self.inputs[0]] if self.inputs else ()
        dims = list(self.output_dims[name])
        if self.batching:
            dims = [-1, *dims]
        out = []
        for axis, d in enumerate(dims):
            if d == -1:
                if axis >= len(first):
                    raise TritonError.invalid_arg(
                        f"output '{name}': dimension {axis} is -1 and input '{self.inputs[0]}' has no "
                        f"dimension {axis} to take it from (set parameter 'output_shape.{name}')"
                    )
                d = first[axis]
            out.append(int(d))
        return tuple(out)

    def all_shapes(self, input_shapes: Mapping[str, Sequence[int]]) -> dict[str, tuple[int, ...]]:
        shapes = {k: tuple(v) for k, v in input_shapes.items()}
        for name in self.outputs:
            shapes[name] = self.output_shape(name, shapes)
        return shapes

    def grid_size(self, shapes: Mapping[str, Sequence[int]]) -> tuple[int, ...]:
        if self.grid is None:
            return (int(np.prod(shapes[self.outputs[0]])),)
        return self._ints(self.grid, shapes, "grid", minimum=0)

    def threadgroup_size(self, shapes: Mapping[str, Sequence[int]]) -> tuple[int, ...] | None:
        if self.threadgroup is None:
            return None
        return self._ints(self.threadgroup, shapes, "threadgroup_size", minimum=1)

    def constant_arrays(self, shapes: Mapping[str, Sequence[int]]) -> list[np.ndarray]:
        out = []
        for b in self.bindings:
            if b.role != "constant":
                continue
            try:
                (value,) = self.constants[b.name].evaluate(shapes)
            except ExpressionError as e:
                raise TritonError.invalid_arg(f"parameter '{b.name}': {e}") from None
            dt = b.datatype
            if dt not in (DataType.FP16, DataType.FP32, DataType.BF16) and value != int(value):
                raise TritonError.invalid_arg(
                    f"parameter '{b.name}' = {value} is not a whole number, but the kernel declares "
                    f"'{b.param.type_name}'"
                )
            if dt is DataType.BF16:
                bits = np.array([value], np.float32).view(np.uint32) >> 16
                out.append(bits.astype(np.uint16))
                continue
            try:
                arr = np.array([value], dtype=dt.numpy)
            except OverflowError:
                raise TritonError.invalid_arg(
                    f"parameter '{b.name}' = {value} does not fit '{b.param.type_name}'"
                ) from None
            if arr[0] != value and dt not in (DataType.FP16, DataType.FP32):
                raise TritonError.invalid_arg(
                    f"parameter '{b.name}' = {value} does not fit '{b.param.type_name}'"
                )
            out.append(arr)
        return out

    @staticmethod
    def _ints(
        expr: Expression, shapes: Mapping[str, Sequence[int]], key: str, minimum: int
    ) -> tuple[int, ...]:
        try:
            values = expr.evaluate(shapes)
        except ExpressionError as e:
            raise TritonError.invalid_arg(f"parameter '{key}': {e}") from None
        out = []
        for v in values:
            if v != int(v) or not minimum <= v <= MAX_GRID:
                raise TritonError.invalid_arg(
                    f"parameter '{key}' = '{expr.text}' gives {v}: expected a whole number from "
                    f"{minimum} to {MAX_GRID}"
                )
            out.append(int(v))
        return tuple(out)


def fill_datatypes(kernel: Kernel, cfg: ModelConfig) -> ModelConfig:
    """Auto-complete: a config input or output without ``data_type`` gets the element type of
    the kernel buffer it binds to (a copy; the argument is not changed)."""
    out = cfg.model_copy(deep=True)
    buffers = kernel.buffers()
    for pos, io in enumerate([*out.input, *out.output]):
        if io.data_type == "TYPE_INVALID" and pos < len(buffers):
            elem, _ = buffers[pos].element
            if elem is not None:
                io.data_type = elem.config_name
    return out


def _fail(model: str, file: str, line: int | None, msg: str) -> TritonError:
    where = f"{file}:{line}" if line else file
    return TritonError.invalid_arg(f"unable to load model '{model}': {where}: {msg}")


def plan(kernel: Kernel, cfg: ModelConfig, model: str, file: str = "model.metal") -> LaunchPlan:
    """Check ``kernel``'s signature against ``cfg`` and build the launch plan."""
    inputs = [i.name for i in cfg.input]
    outputs = [o.name for o in cfg.output]
    known = inputs + outputs
    buffers = kernel.buffers()
    for pos, p in enumerate(buffers):
        if p.buffer_index != pos:
            raise _fail(
                model,
                file,
                p.line,
                f"'{p.name}' is bound to [[buffer({p.buffer_index})]] but buffer({pos}) is "
                f"{'declared twice' if p.buffer_index < pos else 'missing'}: buffers bind "
                "from 0 without gaps (inputs, then outputs, then constants)",
            )
    for p in kernel.params:
        if p.buffer_index is None and not p.attribute:
            raise _fail(
                model,
                file,
                p.line,
                f"parameter '{p.name}' has no attribute: a kernel model binds only "
                "[[buffer(N)]] parameters and Metal's built-in values (e.g. "
                "[[thread_position_in_grid]])",
            )
        if p.buffer_index is None and p.attribute.startswith(("texture", "sampler")):
            raise _fail(model, file, p.line, f"parameter '{p.name}' is a {p.attribute}: only buffers bind")
    if len(buffers) < len(known):
        raise _fail(
            model,
            file,
            kernel.line,
            f"kernel '{kernel.name}' declares {len(buffers)} buffers but the configuration "
            f"binds {len(inputs)} inputs and {len(outputs)} outputs ({', '.join(known)}) to "
            f"buffer(0) .. buffer({len(known) - 1})",
        )
    bindings: list[Binding] = []
    for pos, p in enumerate(buffers):
        if pos < len(known):
            role = "input" if pos < len(inputs) else "output"
            io = cfg.input[pos] if role == "input" else cfg.output[pos - len(inputs)]
            dt = io.datatype
            elem, _ = p.element
            if dt is DataType.BYTES:
                raise _fail(
                    model, file, p.line, f"{role} '{io.name}' is TYPE_STRING: kernels take numbers only"
                )
            if p.indirection != "*" or p.address_space not in ("device", "constant"):
                raise _fail(
                    model,
                    file,
                    p.line,
                    f"buffer({pos}) '{p.name}' ('{p.declaration}') binds {role} '{io.name}': "
                    "it must be a device (or constant, for inputs) pointer",
                )
            if elem is None:
                raise _fail(
                    model,
                    file,
                    p.line,
                    f"buffer({pos}) '{p.name}' has element type '{p.type_name}', which has no "
                    f"Triton data type",
                )
            if elem is not dt:
                raise _fail(
                    model,
                    file,
                    p.line,
                    f"buffer({pos}) '{p.name}' is '{p.type_name}' ({elem.config_name}) but "
                    f"configuration {role} '{io.name}' is {io.data_type}",
                )
            if role == "output" and not p.writable:
                raise _fail(
                    model,
                    file,
                    p.line,
                    f"buffer({pos}) '{p.name}' binds output '{io.name}' but is not writable "
                    "(declare it 'device', without 'const')",
                )
            bindings.append(Binding(pos, role, io.name, dt, p))
        else:
            elem, lanes = p.element
            if p.name in RESERVED or p.name in known:
                raise _fail(
                    model,
                    file,
                    p.line,
                    f"constant buffer({pos}) '{p.name}' has the name of a "
                    f"{'launch parameter' if p.name in RESERVED else 'tensor'}: rename it",
                )
            if (
                elem is None
                or lanes != 1
                or p.indirection == ""
                or p.address_space not in ("constant", "device")
            ):
                raise _fail(
                    model,
                    file,
                    p.line,
                    f"buffer({pos}) '{p.name}' comes after the inputs and outputs, so it is a "
                    f"constant: declare it 'constant T& {p.name}' with a scalar type T",
                )
            if cfg.parameter(p.name) is None:
                raise _fail(
                    model,
                    file,
                    p.line,
                    f"constant buffer({pos}) '{p.name}' has no value: add parameters {{ key: "
                    f'"{p.name}" value {{ string_value: "..." }} }} to the configuration',
                )
            bindings.append(Binding(pos, "constant", p.name, elem, p))

    def param_expr(key: str) -> Expression | None:
        raw = cfg.parameter(key)
        return None if raw is None or not raw.strip() else parse_param(raw, known, model, key)

    grid = param_expr("grid")
    threadgroup = param_expr("threadgroup_size")
    if grid is not None and threadgroup is not None and grid.arity != threadgroup.arity:
        raise TritonError.invalid_arg(
            f"model '{model}': parameter 'grid' has {grid.arity} dimensions, 'threadgroup_size' "
            f"{threadgroup.arity}"
        )
    result = LaunchPlan(
        kernel=kernel,
        bindings=bindings,
        grid=grid,
        threadgroup=threadgroup,
        inputs=inputs,
        outputs=outputs,
        batching=cfg.max_batch_size > 0,
        output_dims={o.name: list(o.dims) for o in cfg.output},
    )
    for b in bindings:
        if b.role == "constant":
            result.constants[b.name] = parse_param(cfg.parameter(b.name) or "", known, model, b.name)
            if result.constants[b.name].arity != 1:
                raise TritonError.invalid_arg(
                    f"model '{model}', parameter '{b.name}': one value, not a tuple"
                )
    for key in cfg.parameters:
        if key.startswith(OUTPUT_SHAPE):
            name = key[len(OUTPUT_SHAPE) :]
            if name not in outputs:
                raise TritonError.invalid_arg(
                    f"model '{model}', parameter '{key}': no output '{name}' (outputs: {', '.join(outputs)})"
                )
            result.output_shapes[name] = parse_param(cfg.parameter(key) or "", inputs, model, key)
    if not result.outputs:
        raise TritonError.invalid_arg(f"model '{model}': a kernel model needs at least one output")
    return result
