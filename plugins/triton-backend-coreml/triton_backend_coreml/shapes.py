"""Core ML shape flexibility (fixed, enumerated shapes, ranges) and the per-request check.

A dimension that is not the same in every allowed shape is -1 in the config; the exact
rule is checked for each request, so a shape Core ML would refuse gets INVALID_ARG with
the allowed shapes, before the framework sees it.
"""

from __future__ import annotations

from dataclasses import dataclass

UNBOUNDED = -1


def _fmt(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


@dataclass(frozen=True)
class ShapeRule:
    """The shapes a multi-array feature accepts (batch dimension included, if it has one)."""

    default: tuple[int, ...]
    ranges: tuple[tuple[int, int], ...] | None = None
    """Per dimension (lower, upper); upper -1 = unbounded."""
    enumerated: tuple[tuple[int, ...], ...] | None = None

    @property
    def rank(self) -> int:
        return len(self.default)

    @property
    def dims(self) -> tuple[int, ...]:
        """The config view: -1 where the dimension may vary."""
        if self.enumerated:
            return tuple(
                d if all(s[i] == d for s in self.enumerated) else -1
                for i, d in enumerate(self.enumerated[0])
            )
        if self.ranges:
            return tuple(lo if lo == hi else -1 for lo, hi in self.ranges)
        return self.default

    def first_dim_sizes(self) -> tuple[int, int] | tuple[int, ...]:
        """Sizes the first dimension may take: (lo, hi) of a range, or the enumerated values."""
        if self.enumerated:
            return tuple(sorted({s[0] for s in self.enumerated}))
        if self.ranges:
            return self.ranges[0]
        return (self.default[0], self.default[0])

    def describe(self) -> str:
        if self.enumerated:
            return "one of " + ", ".join(_fmt(s) for s in self.enumerated)
        if self.ranges:
            parts = [str(lo) if lo == hi else f"{lo}..{'' if hi == UNBOUNDED else hi}"
                     for lo, hi in self.ranges]
            return "[" + ",".join(parts) + "]"
        return _fmt(self.default)

    def violation(self, shape: tuple[int, ...]) -> str | None:
        """None when Core ML accepts ``shape``, else what is wrong."""
        if len(shape) != self.rank:
            return f"rank {len(shape)} where the model takes rank {self.rank} ({self.describe()})"
        if self.enumerated:
            if tuple(shape) in self.enumerated:
                return None
            return f"shape {_fmt(shape)} is not {self.describe()}"
        if self.ranges:
            for i, (d, (lo, hi)) in enumerate(zip(shape, self.ranges, strict=True)):
                if d < lo or (hi != UNBOUNDED and d > hi):
                    return (f"dimension {i} is {d}, outside {lo}..{'' if hi == UNBOUNDED else hi} "
                            f"(the model takes {self.describe()})")
            return None
        if tuple(shape) != self.default:
            return f"shape {_fmt(shape)} is not {self.describe()}"
        return None

    def without_first(self) -> ShapeRule:
        """The rule of one batch row (the first dimension is the batch)."""
        return ShapeRule(
            default=self.default[1:],
            ranges=self.ranges[1:] if self.ranges else None,
            enumerated=tuple(sorted({s[1:] for s in self.enumerated})) if self.enumerated else None,
        )
