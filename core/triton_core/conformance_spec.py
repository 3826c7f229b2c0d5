"""What a backend declares to the conformance suite (``triton conformance <backend>``).

A plugin implements the optional hook ``triton_conformance(backend_name)`` and
returns a :class:`ConformanceSpec` for each backend it provides: the
capabilities it claims and a function that writes its conformance models into
a temporary model repository. The suite (distribution ``triton-conformance``)
computes every expected output itself, with numpy; a backend never says what
the right answer is.

The models follow fixed interfaces, one per *role* (see ``ROLES``). Each role
has a reference ``config.pbtxt`` produced by :func:`role_config`, so a backend
only has to write its own model file next to it::

    @triton_core.hookimpl
    def triton_conformance(backend_name):
        if backend_name != "mybackend":
            return None
        return ConformanceSpec(
            backend="mybackend",
            capabilities=Capabilities(dtypes=("FP32", "INT32", "BYTES")),
            build_models=build,
        )

    def build(repo: Path) -> dict[str, ModelRole]:
        roles = standard_roles(Capabilities(...))
        for name, role in roles.items():
            write_config(repo, name, role_config(role, backend="mybackend", max_batch_size=8))
            (repo / name / "1").mkdir()
            (repo / name / "1" / "model.my").write_text(...)
        return roles

Nothing here imports the suite: the core stays free of test dependencies.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .dtypes import DataType

# Roles and their interfaces (input -> output). Names and shapes are the contract.
IDENTITY = "identity"
"""INPUT0 (the role's datatype, dims [-1]) -> OUTPUT0 = INPUT0 (same type and shape).
max_batch_size = the declared max_batch_size (0 without batching). BYTES: an echo."""
ADD_SUB = "add_sub"
"""INPUT0, INPUT1 (the role's datatype, FP32 by default; dims [16]) -> OUTPUT0 = INPUT0 + INPUT1,
OUTPUT1 = INPUT0 - INPUT1. With batching: max_batch_size as declared, dynamic_batching with a
20 ms queue delay (long enough for requests from a one-thread async client to meet), two CPU
instances."""
DECOUPLED_REPEAT = "decoupled_repeat"
"""Decoupled. IN (INT32, dims [-1]) -> one response per element i with OUT = [IN[i]]
(INT32, dims [1]) and IDX = [i] (UINT32, dims [1]), in order, then the FINAL flag (on an empty
last response or with the last one). An empty IN: no response but the FINAL flag."""
SEQUENCE_ACCUMULATE = "sequence_accumulate"
"""Stateful (sequence_batching, direct). INPUT0 (INT32, dims [1]) -> OUTPUT0 (INT32, dims [1]) =
the sum of INPUT0 over the sequence so far (START resets it)."""

ROLES = (IDENTITY, ADD_SUB, DECOUPLED_REPEAT, SEQUENCE_ACCUMULATE)

ALL_DTYPES = tuple(dt.value for dt in DataType)


@dataclass(frozen=True)
class ModelRole:
    """What a conformance model is for: a role of ``ROLES`` and, for identity /
    add_sub, the datatype of its tensors (v2 names: "FP32", "BYTES", ...)."""

    role: str
    datatype: str = ""

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown conformance role '{self.role}' (one of {', '.join(ROLES)})")


@dataclass(frozen=True)
class Capabilities:
    """What a backend claims. The suite skips, with the reason, what is not claimed."""

    dtypes: tuple[str, ...] = ("FP32",)
    """Datatypes the backend serves (v2 names); one identity model each."""
    batching: bool = True
    """Models may have max_batch_size > 0 and the dynamic batcher may hand several requests to
    one execute."""
    max_batch_size: int = 8
    """max_batch_size of the batching conformance models (the suite sends this many)."""
    variable_dims: bool = True
    """Dims of -1 take any size."""
    bytes_any: bool = True
    """BYTES elements may hold any bytes (not only UTF-8 text). When False, the suite checks
    that non-UTF-8 input is refused with INVALID_ARG instead."""
    identity: bool = True
    """The backend can serve the identity role (INPUT0 -> OUTPUT0 unchanged) for its datatypes.
    A fixed-function backend (one built-in computation, say) cannot: False skips, with the
    ``notes["identity"]`` reason, every test that needs an identity model."""
    add_sub: bool = True
    """The backend can serve the add_sub role; False skips the tests that need it (with
    ``notes["add_sub"]``)."""
    decoupled: bool = False
    """Decoupled models (zero or more responses per request): needs a decoupled_repeat model."""
    sequence: bool = False
    """Stateful models under the sequence batcher: needs a sequence_accumulate model."""
    gpu: bool = False
    """KIND_GPU instances."""
    multiple_instances: bool = True
    """More than one instance of a model in the process."""
    platforms: tuple[str, ...] = ()
    """sys.platform values the backend runs on ("linux", "darwin"); empty = any."""
    notes: Mapping[str, str] = field(default_factory=dict)
    """Why a capability is not claimed, by capability name (shown in skip reasons)."""

    def platform_reason(self) -> str | None:
        if self.platforms and not any(sys.platform.startswith(p) for p in self.platforms):
            return (f"the backend runs on {', '.join(self.platforms)} only; "
                    f"this is {sys.platform}")
        return None

    def problems(self) -> list[str]:
        out = []
        for d in self.dtypes:
            if d not in ALL_DTYPES:
                out.append(f"unknown datatype '{d}' in dtypes (use v2 names: {', '.join(ALL_DTYPES)})")
        if self.batching and self.max_batch_size < 1:
            out.append("batching needs max_batch_size >= 1")
        if not self.dtypes:
            out.append("dtypes is empty: a backend serves at least one datatype")
        return out


@dataclass(frozen=True)
class ConformanceSpec:
    """A backend's answer to the ``triton_conformance`` hook."""

    backend: str
    """The backend name (BackendSpec.name) this spec is for."""
    capabilities: Capabilities
    build_models: Callable[[Path], Mapping[str, ModelRole]]
    """Writes the conformance models into ``repo_dir`` (an empty folder); returns
    {model name: role}. Expected: one identity model per declared dtype (when identity), one
    add_sub model (when add_sub), a decoupled_repeat model when decoupled, a
    sequence_accumulate model when sequence. A package it needs that is missing (ImportError)
    is reported as "install X to build the conformance models"."""
    corrupt_model: Callable[[Path], None] | None = None
    """Damages a model folder so that loading it must fail (default: every file in the
    version folders is overwritten with bytes no model format accepts)."""
    gpu_available: Callable[[], str | None] | None = None
    """None when a GPU can be used here, else the reason (only asked when capabilities.gpu)."""


def standard_roles(caps: Capabilities) -> dict[str, ModelRole]:
    """The conventional model names for what ``caps`` claims."""
    roles = {f"identity_{d.lower()}": ModelRole(IDENTITY, d) for d in caps.dtypes} if caps.identity else {}
    add_dt = "FP32" if "FP32" in caps.dtypes else ("INT32" if "INT32" in caps.dtypes else caps.dtypes[0])
    if caps.add_sub:
        roles["add_sub"] = ModelRole(ADD_SUB, add_dt)
    if caps.decoupled:
        roles["repeat"] = ModelRole(DECOUPLED_REPEAT)
    if caps.sequence:
        roles["accumulate"] = ModelRole(SEQUENCE_ACCUMULATE)
    return roles


def _io(kind: str, name: str, dt: str, dims: str) -> str:
    return f'{kind} [{{ name: "{name}" data_type: {DataType(dt).config_name} dims: {dims} }}]\n'


def role_config(role: ModelRole, *, backend: str = "", platform: str = "", max_batch_size: int = 0,
                instance_count: int = 2, parameters: Mapping[str, str] | None = None) -> str:
    """The reference config.pbtxt text of a role (without ``name``: the folder names it)."""
    head = ""
    if backend:
        head += f'backend: "{backend}"\n'
    if platform:
        head += f'platform: "{platform}"\n'
    params = "".join(f'parameters {{ key: "{k}" value {{ string_value: "{v}" }} }}\n'
                     for k, v in (parameters or {}).items())
    if role.role == IDENTITY:
        dt = role.datatype or "FP32"
        return (head + f"max_batch_size: {max_batch_size}\n"
                + _io("input", "INPUT0", dt, "[-1]") + _io("output", "OUTPUT0", dt, "[-1]") + params)
    if role.role == ADD_SUB:
        dt = role.datatype or "FP32"
        text = (head + f"max_batch_size: {max_batch_size}\n"
                + f'input [{{ name: "INPUT0" data_type: {DataType(dt).config_name} dims: [16] }},\n'
                + f'       {{ name: "INPUT1" data_type: {DataType(dt).config_name} dims: [16] }}]\n'
                + f'output [{{ name: "OUTPUT0" data_type: {DataType(dt).config_name} dims: [16] }},\n'
                + f'        {{ name: "OUTPUT1" data_type: {DataType(dt).config_name} dims: [16] }}]\n')
        if max_batch_size > 0:
            text += "dynamic_batching { max_queue_delay_microseconds: 20000 }\n"
        text += f"instance_group [{{ kind: KIND_CPU count: {instance_count} }}]\n"
        return text + params
    if role.role == DECOUPLED_REPEAT:
        return (head + "max_batch_size: 0\n"
                + "model_transaction_policy { decoupled: true }\n"
                + _io("input", "IN", "INT32", "[-1]")
                + 'output [{ name: "OUT" data_type: TYPE_INT32 dims: [1] },\n'
                + '        { name: "IDX" data_type: TYPE_UINT32 dims: [1] }]\n' + params)
    # SEQUENCE_ACCUMULATE
    return (head + f"max_batch_size: {max_batch_size}\n"
            + "sequence_batching {\n"
            + "  max_sequence_idle_microseconds: 5000000\n"
            + '  control_input [{ name: "START" control [{ kind: CONTROL_SEQUENCE_START '
            + "int32_false_true: [0, 1] }] },\n"
            + '                 { name: "READY" control [{ kind: CONTROL_SEQUENCE_READY '
            + "int32_false_true: [0, 1] }] }]\n"
            + "}\n"
            + _io("input", "INPUT0", "INT32", "[1]") + _io("output", "OUTPUT0", "INT32", "[1]") + params)


def write_config(repo: Path, name: str, text: str) -> Path:
    """Create ``repo/name`` with its config.pbtxt; returns the model folder."""
    d = Path(repo) / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.pbtxt").write_text(text)
    return d


GARBAGE = b"\x00\xff\xfe this is not a model file \x00 {[( \xc3\x28\n"


def default_corrupt_model(model_dir: Path) -> None:
    """Overwrite every file of every version folder with bytes no model format accepts."""
    for vdir in Path(model_dir).iterdir():
        if vdir.is_dir() and vdir.name.isdigit():
            for f in vdir.rglob("*"):
                if f.is_file():
                    f.write_bytes(GARBAGE)
