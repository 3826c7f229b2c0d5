"""Native vs pure-Python BYTES codec: elements per second and the speedup.

    PYTHONPATH=core python bench/bench_bytes_codec.py [--repeat 5]

Needs the C layer built (cd core && python triton_core/memory/_native/build.py).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from triton_core.memory import _native, bytes_codec

CASES = [
    ("10k x 16 B", 10_000, 16),
    ("100k x 16 B", 100_000, 16),
    ("100k x 256 B", 100_000, 256),
    ("1k x 64 KiB", 1_000, 65_536),
]


def best_of(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    _native.require()
    rng = np.random.default_rng(0)
    print(
        f"{'case':<14} {'op':<12} {'python el/s':>14} {'native el/s':>14} {'speedup':>8}"
    )
    for label, n, size in CASES:
        blob = rng.integers(0, 256, n * size, dtype=np.uint8).tobytes()
        arr = np.empty(n, dtype=object)
        arr[:] = [blob[i * size : (i + 1) * size] for i in range(n)]
        wire = bytes_codec._serialize_py(arr)
        assert bytes_codec._serialize_native(arr) == wire
        assert list(bytes_codec._deserialize_native(wire, n)) == list(arr)
        pairs = [
            (
                "serialize",
                bytes_codec._serialize_py,
                bytes_codec._serialize_native,
                (arr,),
            ),
            (
                "deserialize",
                bytes_codec._deserialize_py,
                bytes_codec._deserialize_native,
                (wire, n),
            ),
        ]
        for op, py, nat, fargs in pairs:
            tp = best_of(lambda f=py, a=fargs: f(*a), args.repeat)
            tn = best_of(lambda f=nat, a=fargs: f(*a), args.repeat)
            print(
                f"{label:<14} {op:<12} {n / tp:>14,.0f} {n / tn:>14,.0f} {tp / tn:>7.1f}x"
            )


if __name__ == "__main__":
    main()
