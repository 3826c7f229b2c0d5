"""The same small CNN (cnn.py) through the coreml backend (compute units ALL and CPU_ONLY;
ALL in a worker process),
the onnxruntime backend (CoreML execution provider, and CPU only) and torch on MPS.

Run on a Mac with the backends installed (see README.md):

    python bench/coreml/bench_cnn.py --batch 1 8 --concurrency 1 4 --requests 300

Models go through triton-core's in-process Server (``Server.infer``: the scheduler, the
dynamic batcher and the backend, no front end), so the numbers compare the backends.
torch on MPS is timed as a direct module call (there is no torch backend plugin in this
repository yet): it is the framework's floor, not a served model. Every answer is checked
against a numpy reference first (FP16 on the Neural Engine: rtol 2e-2).
Results: a table on stdout and JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cnn  # noqa: E402

MODELS = ("cnn_coreml_all", "cnn_coreml_cpu", "cnn_coreml_worker", "cnn_onnx_coreml", "cnn_onnx_cpu")


def measure(call: Callable[[], object], requests: int, concurrency: int) -> dict[str, float]:
    """Latency percentiles (ms) and throughput (inferences/s) of ``requests`` calls from
    ``concurrency`` threads, after a warm-up."""
    for _ in range(5):
        call()
    lat: list[float] = []
    lock = threading.Lock()
    per_thread = max(1, requests // concurrency)

    def worker() -> None:
        mine = []
        for _ in range(per_thread):
            t0 = time.perf_counter()
            call()
            mine.append(time.perf_counter() - t0)
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat.sort()
    return {"p50_ms": 1e3 * statistics.median(lat), "p99_ms": 1e3 * lat[int(0.99 * (len(lat) - 1))],
            "calls_per_s": len(lat) / wall}


def serve_models(repo: Path):
    from triton_core.server import Server

    server = Server(model_repository=[repo], model_control_mode="explicit", exit_on_error=False)
    server.start()
    status: dict[str, str] = {}
    for name in MODELS:
        try:
            server.load_model(name)
            status[name] = "ok"
        except Exception as e:  # noqa: BLE001 - reported in the table
            status[name] = f"not loaded: {getattr(e, 'message', e)}"
    return server, status


def infer_fn(server, name: str, x: np.ndarray) -> Callable[[], np.ndarray]:
    from triton_core.request import InferenceRequest
    from triton_core.tensor import Tensor

    def call() -> np.ndarray:
        req = InferenceRequest(model_name=name, inputs={"x": Tensor.from_numpy("x", x)})
        return server.infer(req).output("y").as_numpy()

    return call


def torch_fn(w, x: np.ndarray) -> tuple[Callable[[], np.ndarray] | None, str]:
    try:
        import torch
    except ImportError:
        return None, "torch is not installed"
    if not torch.backends.mps.is_available():
        return None, "torch has no MPS device here"
    module = cnn.torch_module(w).to("mps")
    xt = torch.from_numpy(x)

    def call() -> np.ndarray:
        with torch.no_grad():
            return module(xt.to("mps")).cpu().numpy()

    return call, "ok"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--repo", type=Path, help="keep the model repository here (default: a temporary one)")
    args = ap.parse_args()

    tmp = None
    repo = args.repo
    if repo is None:
        tmp = tempfile.TemporaryDirectory(prefix="cnn-bench-")
        repo = Path(tmp.name)
    w = cnn.build(repo)
    server, status = serve_models(repo)
    rows = []
    try:
        for batch in args.batch:
            shape = (batch, 3, cnn.SIZE, cnn.SIZE)
            x = np.random.default_rng(batch).standard_normal(shape).astype(np.float32)
            ref = cnn.reference(x, w)
            fns: dict[str, tuple[Callable[[], np.ndarray] | None, str]] = {
                name: (infer_fn(server, name, x) if status[name] == "ok" else None, status[name])
                for name in MODELS}
            fns["torch_mps (direct)"] = torch_fn(w, x)
            for name, (fn, note) in fns.items():
                if fn is None:
                    rows.append({"model": name, "batch": batch, "note": note})
                    continue
                np.testing.assert_allclose(fn(), ref, rtol=2e-2, atol=2e-2, err_msg=name)
                for conc in args.concurrency:
                    r = measure(fn, args.requests, conc)
                    rows.append({"model": name, "batch": batch, "concurrency": conc, **r,
                                 "images_per_s": r["calls_per_s"] * batch})
    finally:
        server.stop()
        if tmp is not None:
            tmp.cleanup()

    print(f"| model | batch | concurrency | p50 ms | p99 ms | images/s |   ({platform.platform()})")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if "note" in r:
            print(f"| {r['model']} | {r['batch']} | - | - | - | {r['note']} |")
        else:
            print(f"| {r['model']} | {r['batch']} | {r['concurrency']} | {r['p50_ms']:.2f} | "
                  f"{r['p99_ms']:.2f} | {r['images_per_s']:.0f} |")
    out = Path(__file__).resolve().parents[1] / "results"
    out.mkdir(exist_ok=True)
    path = out / f"coreml-cnn-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps({"platform": platform.platform(), "machine": platform.machine(),
                                "rows": rows}, indent=1))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
