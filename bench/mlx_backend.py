"""The mlx backend against MLX alone, in one process: rows per second of a small MLP.

    python bench/mlx_backend.py [--seconds 2] [--batches 1,8,64,256]

MLX alone: the imported function called on MLX's thread-owner (this script's MLX thread),
inputs from numpy, outputs evaluated and viewed as numpy. The backend: the same file served
by an in-process Server (make_server), one request of the whole batch at a time through
``server.model(name).infer``. Needs triton-backend-metal (and mlx[cpu] off macOS).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from triton_backend_metal import plugin
from triton_backend_metal.mlx import runtime
from triton_backend_metal.mlx.export import export_model
from triton_core.testing import make_server

IN, HIDDEN, OUT = 256, 512, 64


def _build(path: Path) -> None:
    import mlx.core as mx

    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((IN, HIDDEN)).astype(np.float32) / 16
    w2 = rng.standard_normal((HIDDEN, OUT)).astype(np.float32) / 16

    def mlp(x):
        h = mx.maximum(x @ mx.array(w1), 0)
        return (h @ mx.array(w2),)

    export_model(path, mlp, inputs={"X": np.zeros((1, IN), np.float32)}, outputs=["Y"])


def _rate(fn, seconds: float, rows: int) -> float:
    fn()  # warm
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n * rows / (time.perf_counter() - start)


def _alone(path: Path, x: np.ndarray, seconds: float) -> float:
    import mlx.core as mx

    def work():
        f = mx.import_function(str(path))

        def once():
            (y,) = f(mx.array(x))
            mx.eval(y)
            np.asarray(y)

        return _rate(once, seconds, x.shape[0])

    return runtime.run(work)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--batches", default="1,8,64,256")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        _build(repo / "mlp" / "1" / "model.mlxfn")
        (repo / "mlp" / "config.pbtxt").write_text('backend: "mlx"\nmax_batch_size: 1024\n')
        with make_server(repo, plugin) as server:
            model = server.model("mlp")
            print(f"{'batch':>6} {'MLX alone rows/s':>18} {'mlx backend rows/s':>20} {'ratio':>6}")
            for b in (int(v) for v in args.batches.split(",")):
                x = np.random.default_rng(b).standard_normal((b, IN)).astype(np.float32)
                alone = _alone(repo / "mlp" / "1" / "model.mlxfn", x, args.seconds)
                served = _rate(lambda x=x: model.infer({"X": x}), args.seconds, b)
                print(f"{b:>6} {alone:>18.0f} {served:>20.0f} {served / alone:>6.2f}")


if __name__ == "__main__":
    main()
