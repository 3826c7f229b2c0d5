"""The signature of a kernel in Metal Shading Language source, read at load on any OS.

Only what binding needs is read: ``kernel void NAME(...)`` and each parameter's
address space, element type, pointer / reference, name, attribute and line.
Comments are blanked first (keeping line numbers); the parameter list is split
at top-level commas. Errors name the file and line, as a compiler would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from triton_core.dtypes import DataType

# MSL scalar types -> Triton types (the MSL spec's scalar types and their <cstdint> names).
SCALAR_TYPES: dict[str, DataType] = {
    "bool": DataType.BOOL,
    "char": DataType.INT8,
    "int8_t": DataType.INT8,
    "uchar": DataType.UINT8,
    "uint8_t": DataType.UINT8,
    "unsigned char": DataType.UINT8,
    "short": DataType.INT16,
    "int16_t": DataType.INT16,
    "ushort": DataType.UINT16,
    "uint16_t": DataType.UINT16,
    "unsigned short": DataType.UINT16,
    "int": DataType.INT32,
    "int32_t": DataType.INT32,
    "uint": DataType.UINT32,
    "uint32_t": DataType.UINT32,
    "unsigned int": DataType.UINT32,
    "long": DataType.INT64,
    "int64_t": DataType.INT64,
    "ulong": DataType.UINT64,
    "uint64_t": DataType.UINT64,
    "unsigned long": DataType.UINT64,
    "size_t": DataType.UINT64,
    "half": DataType.FP16,
    "float": DataType.FP32,
    "bfloat": DataType.BF16,
}
_VECTOR = re.compile(
    r"^(?:packed_)?(bool|char|uchar|short|ushort|int|uint|long|ulong|half|float|bfloat)([234])$"
)
ADDRESS_SPACES = ("device", "constant", "threadgroup", "thread")
_QUALIFIERS = {"const", "volatile", "restrict", "__restrict", "metal"}
_KERNEL = re.compile(r"(?:\bkernel\b|\[\[\s*kernel\s*\]\])\s+void\s+([A-Za-z_]\w*)\s*\(")
_ATTRIBUTE = re.compile(r"\[\[\s*(.*?)\s*\]\]", re.S)
_BUFFER = re.compile(r"^buffer\s*\(\s*(\d+)\s*\)$")


class MslError(ValueError):
    """The source does not declare what a kernel model needs; the message names the line."""


@dataclass(frozen=True)
class KernelParam:
    name: str
    type_name: str
    """The declared type without qualifiers: "float", "float4", "uint"."""
    address_space: str
    """device, constant, threadgroup, thread, or "" (a value parameter)."""
    const: bool
    indirection: str
    """"*" (pointer), "&" (reference) or "" (value)."""
    attribute: str
    """The [[...]] text: "buffer(0)", "thread_position_in_grid", or ""."""
    line: int
    declaration: str

    @property
    def buffer_index(self) -> int | None:
        m = _BUFFER.match(self.attribute)
        return int(m.group(1)) if m else None

    @property
    def element(self) -> tuple[DataType | None, int]:
        """(Triton type of one element, lanes): (FP32, 4) for float4; (None, 1) if unknown."""
        if self.type_name in SCALAR_TYPES:
            return SCALAR_TYPES[self.type_name], 1
        m = _VECTOR.match(self.type_name)
        if m:
            return SCALAR_TYPES[m.group(1)], int(m.group(2))
        return None, 1

    @property
    def writable(self) -> bool:
        return self.address_space == "device" and not self.const


@dataclass
class Kernel:
    name: str
    line: int
    params: list[KernelParam] = field(default_factory=list)

    def buffers(self) -> list[KernelParam]:
        """Parameters bound to a [[buffer(N)]], by N."""
        return sorted(
            (p for p in self.params if p.buffer_index is not None), key=lambda p: p.buffer_index or 0
        )


def strip_comments(source: str) -> str:
    """Comments replaced by spaces, newlines kept (so lines and columns stay)."""
    out = []
    i, n = 0, len(source)
    while i < n:
        if source.startswith("//", i):
            j = source.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif source.startswith("/*", i):
            j = source.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("".join(c if c == "\n" else " " for c in source[i:j]))
            i = j
        elif source[i] == '"':
            j = i + 1
            while j < n and source[j] != '"':
                j += 2 if source[j] == "\\" else 1
            out.append(source[i : j + 1])
            i = j + 1
        else:
            out.append(source[i])
            i += 1
    return "".join(out)


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _split_params(text: str, start: int, file: str) -> tuple[list[tuple[str, int]], int]:
    """The parameter texts (with their offsets) from just after '(' to the matching ')'."""
    depth = 0
    parts: list[tuple[str, int]] = []
    begin = start
    i = start
    closers = {")": "(", "]": "[", ">": "<"}
    stack: list[str] = []
    while i < len(text):
        c = text[i]
        if c in "([<":
            stack.append(c)
        elif c in ")]>":
            if c == ")" and not stack:
                parts.append((text[begin:i], begin))
                return [p for p in parts if p[0].strip()], i
            if stack and stack[-1] == closers[c]:
                stack.pop()
        elif c == "," and not stack:
            parts.append((text[begin:i], begin))
            begin = i + 1
        i += 1
        depth = len(stack)
    raise MslError(f"{file}:{_line(text, start)}: the parameter list is not closed (depth {depth})")


def _param(raw: str, offset: int, text: str, file: str) -> KernelParam:
    attrs = _ATTRIBUTE.findall(raw)
    body = _ATTRIBUTE.sub(" ", raw)
    body = re.sub(r"\b[A-Za-z_]\w*\s*::\s*", "", body)  # metal::float -> float
    decl = " ".join(raw.split())
    name_match = re.search(r"([A-Za-z_]\w*)\s*(?:\[[^\]]*\]\s*)?$", body.strip())
    if not name_match:
        line = _line(text, offset + len(raw) - len(raw.lstrip()))
        raise MslError(f"{file}:{line}: cannot read the parameter '{decl}'")
    name = name_match.group(1)
    head = body.strip()[: name_match.start()]
    indirection = "*" if "*" in head else ("&" if "&" in head else "")
    tokens = re.findall(r"[A-Za-z_]\w*", head)
    space = next((t for t in tokens if t in ADDRESS_SPACES), "")
    const = "const" in tokens
    type_tokens = [t for t in tokens if t not in ADDRESS_SPACES and t not in _QUALIFIERS]
    type_name = " ".join(type_tokens)
    cut = raw.find("[[")
    line = _line(text, offset + raw.rfind(name, 0, cut if cut >= 0 else len(raw)))
    return KernelParam(
        name=name,
        type_name=type_name,
        address_space=space,
        const=const,
        indirection=indirection,
        attribute=attrs[0].strip() if attrs else "",
        line=line,
        declaration=decl,
    )


def kernels(source: str, file: str = "model.metal") -> list[Kernel]:
    """Every ``kernel void`` function of the source, in order."""
    text = strip_comments(source)
    found = []
    for m in _KERNEL.finditer(text):
        parts, _ = _split_params(text, m.end(), file)
        k = Kernel(name=m.group(1), line=_line(text, m.start()))
        k.params = [_param(raw, off, text, file) for raw, off in parts]
        found.append(k)
    return found


def find_kernel(source: str, name: str | None, file: str = "model.metal") -> Kernel:
    """The kernel ``name`` (or the only kernel when ``name`` is None)."""
    found = kernels(source, file)
    if not found:
        raise MslError(f"{file}: no 'kernel void NAME(...)' function found")
    if name is None:
        if len(found) > 1:
            listed = ", ".join(f"'{k.name}' (line {k.line})" for k in found)
            raise MslError(f"{file}: {len(found)} kernels ({listed}): name one with the parameter 'kernel'")
        return found[0]
    for k in found:
        if k.name == name:
            return k
    listed = ", ".join(f"'{k.name}' (line {k.line})" for k in found)
    raise MslError(f"{file}: no kernel '{name}'; the file declares {listed}")
